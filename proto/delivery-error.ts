import type { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { EventId } from '../core/events.ts';

/** A gRPC status by name ('UNAVAILABLE', ...): what the notifier compares, without importing gRPC. */
export type DeliveryCode = keyof typeof grpc.status;

/**
 * Whether the notifier retries a failed call by itself. Either way nothing in the batch was
 * acknowledged, so the changes stay queued; a non-retryable failure needs an admin's fix first.
 * RESOURCE_EXHAUSTED is retryable (a busy hub recovers); a batch too large for the hub's limit
 * also answers it, so the notifier should send a smaller batch on the next attempt.
 */
const RETRYABLE: Record<DeliveryCode, boolean> = {
  OK: false,
  CANCELLED: true,
  UNKNOWN: true,
  INVALID_ARGUMENT: false,
  DEADLINE_EXCEEDED: true,
  NOT_FOUND: false,
  ALREADY_EXISTS: false,
  PERMISSION_DENIED: false,
  RESOURCE_EXHAUSTED: true,
  FAILED_PRECONDITION: false,
  ABORTED: true,
  OUT_OF_RANGE: false,
  UNIMPLEMENTED: false,
  INTERNAL: true,
  UNAVAILABLE: true,
  DATA_LOSS: false,
  UNAUTHENTICATED: false,
};

export class DeliveryError extends Error {
  readonly code: DeliveryCode;
  readonly retryable: boolean;
  /** The event the notifier logs the failure as, when it is more telling than "delivery failed" (6943). */
  readonly eventId: EventId | undefined;

  constructor(code: DeliveryCode, message: string, options?: { cause?: unknown; retryable?: boolean; eventId?: EventId }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DeliveryError';
    this.code = code;
    this.retryable = options?.retryable ?? RETRYABLE[code];
    this.eventId = options?.eventId;
  }
}

export interface DeliveryTarget {
  address: string;
  serverName?: string;
  timeoutMs: number;
  /** This DC's client certificate, when it has one: named when the hub refuses it. */
  clientCertificate?: X509Certificate;
}

const NOT_TRUSTED = /self[- ]signed|unable to (verify|get (local )?issuer)|certificate signature failure|unknown ca|certificate verify failed|UNABLE_TO_VERIFY|DEPTH_ZERO|SELF_SIGNED/i;
const WRONG_NAME = /does not match certificate|altnames|ERR_TLS_CERT_ALTNAME/i;
const EXPIRED = /certificate has expired|CERT_HAS_EXPIRED|not yet valid|CERT_NOT_YET_VALID/i;

function hostOf(address: string): string {
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(address) ?? /^([^:]+)(?::\d+)?$/.exec(address);
  return m?.[1] ?? address;
}

/** A TLS alert from the hub: the hub refused something of ours in the handshake (our certificate). */
const HUB_ALERT = /alert (certificate required|unknown ca|bad certificate|certificate expired|certificate unknown|certificate revoked|unsupported certificate|decrypt error|handshake failure|access denied)/i;
const NO_CLIENT_CERTIFICATE = /alert certificate required/i;
const ISSUE = '`pwsync tls client --ca-dir DIR --dc HOST --out DIR`';

/**
 * The hub refused this DC in the TLS handshake, or closed it there (Node's TLS 1.3 server sends
 * no reason the client can read, hence "Failed to connect" when a certificate was sent).
 */
function clientCertificateRefusal(details: string, t: DeliveryTarget): string | undefined {
  const at = `the hub at ${t.address}`;
  const own = t.clientCertificate;
  if (!own) {
    if (!NO_CLIENT_CERTIFICATE.test(details)) return undefined;
    return `${at} requires a TLS client certificate (hub.tls.clientCa) and this notifier sent none: issue this DC one with ${ISSUE} and set targets[].tls.cert and targets[].tls.key (${details})`;
  }
  if (!HUB_ALERT.test(details) && !/^Failed to connect\b|Last error: Failed to connect\b/.test(details)) return undefined;
  const mine = `this DC's client certificate (targets[].tls.cert: ${own.subject.replace(/\n/g, ', ')}, issued by ${own.issuer.replace(/\n/g, ', ')}, valid ${own.validFrom} to ${own.validTo})`;
  const now = Date.now();
  if (Date.parse(own.validTo) < now) return `${at} refused ${mine}: it has expired; renew it with ${ISSUE} --force (${details})`;
  if (Date.parse(own.validFrom) > now) return `${at} refused ${mine}: it is not valid yet; check this DC's clock (${details})`;
  return `${at} refused ${mine} in the TLS handshake: it must be issued by the CA the hub names in hub.tls.clientCa; issue it again from that CA with ${ISSUE} (${details})`;
}

/** Why a connection could not be made, said so an admin knows what to change. */
function unavailable(details: string, t: DeliveryTarget): string {
  const at = `the hub at ${t.address}`;
  const name = t.serverName ?? hostOf(t.address);
  if (NOT_TRUSTED.test(details)) return `${at}: the hub's certificate is not signed by the CA in targets[].tls.ca (${details})`;
  if (WRONG_NAME.test(details)) {
    return `${at}: the hub's certificate does not name "${name}": set targets[].tls.serverName to a name it holds, or reissue it with \`pwsync tls generate --host ${name}\` (${details})`;
  }
  if (EXPIRED.test(details)) return `${at}: the hub's certificate is expired or not yet valid: reissue it, or check the clocks (${details})`;
  if (/ECONNREFUSED/.test(details)) return `${at} refused the connection: is the hub running at ${t.address}? (${details})`;
  if (/ENOTFOUND|EAI_AGAIN|Name resolution failed|DNS resolution failed/i.test(details)) {
    return `cannot resolve the host of ${t.address}: check targets[].address and DNS (${details})`;
  }
  if (/ETIMEDOUT|EHOSTUNREACH|ENETUNREACH/.test(details)) return `${at} is unreachable: check the network path and firewall (${details})`;
  return `${at} is unavailable: ${details}`;
}

/** A failed call, as the notifier reads it. */
export function deliveryErrorOf(err: grpc.ServiceError, t: DeliveryTarget): DeliveryError {
  const code = (grpc.status[err.code] ?? 'UNKNOWN') as DeliveryCode;
  const details = err.details || err.message;
  const at = `the hub at ${t.address}`;
  const refused = code === 'UNAVAILABLE' ? clientCertificateRefusal(details, t) : undefined;
  if (refused) return new DeliveryError(code, refused, { cause: err, eventId: 6977 });
  let message: string;
  switch (code) {
    case 'UNAVAILABLE': message = unavailable(details, t); break;
    case 'DEADLINE_EXCEEDED': message = `${at} did not answer within ${t.timeoutMs} ms (targets[].timeout); nothing in the batch is taken as delivered`; break;
    case 'RESOURCE_EXHAUSTED': message = `${at} refused the batch as too large or too busy: lower targets[].batchSize or raise hub.maxMessageBytes (${details})`; break;
    case 'UNAUTHENTICATED': message = `${at} did not accept this notifier's credentials: ${details}`; break;
    case 'PERMISSION_DENIED': message = `${at} refused this notifier: ${details}`; break;
    case 'INVALID_ARGUMENT': message = `${at} could not read the request: ${details}`; break;
    case 'UNIMPLEMENTED': message = `the service at ${t.address} does not serve pwsync.v1.PasswordSync: is it a pwsync hub of a matching version? (${details})`; break;
    case 'INTERNAL': message = `${at} failed: ${details}`; break;
    default: message = `${at}: ${code}: ${details}`;
  }
  return new DeliveryError(code, message, { cause: err });
}
