import { PwsyncError } from './errors.ts';

/**
 * What a NATS failure means for the caller, as a PwsyncError: 6970 (retryable) when the servers
 * cannot be reached, time out, or have no stream leader (nats-server 2.9 answers "no responders"
 * during an election, which the v3 client reports as JetStreamNotEnabled); 6971 (not retryable)
 * when NATS refuses the credentials or a permission, naming what to fix.
 *
 * Classified by the client's error class names (and the server's API error codes), never by the
 * text: the classes are what @nats-io/* documents.
 */

const RETRYABLE = new Set([
  'TimeoutError', 'NoRespondersError', 'JetStreamNotEnabled', 'ConnectionError', 'RequestError',
  'ClosedConnectionError', 'DrainingConnectionError', 'ProtocolError',
]);

/** JetStream API codes that are a cluster's transient state, not a refusal. */
const TRANSIENT_API_CODES = new Set([
  10008, // JetStream system temporarily unavailable (no quorum)
  10009, // this server cannot handle the request now (not the leader)
  10076, // JetStream not enabled (for the moment: a node restarting)
]);

/** Sorts errors that are not ours into PwsyncError. `what` says what was being done, for the message. */
export function natsError(e: unknown, what: string, servers: readonly string[]): Error {
  if (e instanceof PwsyncError) return e;
  const chain = causes(e);
  const has = (n: string): boolean => chain.some((c) => c.name === n);
  const name = errorName(e);
  const detail = e instanceof Error ? e.message : String(e);
  const where = servers.join(', ');
  if (has('AuthorizationError') || has('UserAuthenticationExpiredError')) {
    return new PwsyncError(6971, `${what}: NATS at ${where} refused the credentials (${detail}); ` +
      'check broker.user and broker.credentials against the NATS server\'s users', { cause: e, retryable: false });
  }
  if (has('PermissionViolationError')) {
    return new PwsyncError(6971, `${what}: NATS denied a permission (${detail}); ` +
      'grant this NATS user publish/subscribe rights on the subjects named, or use the hub\'s own user', { cause: e, retryable: false });
  }
  const code = apiCode(e);
  if (code !== undefined && TRANSIENT_API_CODES.has(code)) {
    return new PwsyncError(6970, `${what}: JetStream at ${where} is not ready (${detail}); it works again once a majority of the NATS servers is up`, { cause: e, retryable: true });
  }
  if (name !== undefined && RETRYABLE.has(name)) {
    return new PwsyncError(6970, `${what}: NATS at ${where} did not answer in time or has no JetStream leader now ` +
      `(${name}: ${detail}); it works again once the cluster is reachable and has elected a leader`, { cause: e, retryable: true });
  }
  if (isSocketError(e)) {
    return new PwsyncError(6970, `${what}: cannot reach NATS at ${where} (${detail}); ` +
      'check that the servers run and listen there', { cause: e, retryable: true });
  }
  return e instanceof Error ? e : new Error(`${what}: ${detail}`);
}

/** The JetStream API error code (`err_code`), when the server answered with one. */
export function apiCode(e: unknown): number | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const c = (e as { code?: unknown }).code;
  return typeof c === 'number' ? c : undefined;
}

/** The error and its causes (the v3 client wraps, e.g. RequestError caused by PermissionViolationError). */
function causes(e: unknown): Error[] {
  const out: Error[] = [];
  for (let c = e; c instanceof Error && out.length < 5; c = c.cause) out.push(c);
  return out;
}

function errorName(e: unknown): string | undefined {
  return e instanceof Error ? e.name : undefined;
}

function isSocketError(e: unknown): boolean {
  const code = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
  return typeof code === 'string' && /^(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN)$/.test(code);
}
