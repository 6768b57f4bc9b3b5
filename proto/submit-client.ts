import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { describeError } from '../core/errors.ts';
import type { ClientAuthenticator, ClientCallAuth } from './auth.ts';
import { DeliveryError, deliveryErrorOf, type DeliveryTarget } from './delivery-error.ts';
import type { ChangeAck__Output } from './generated/pwsync/v1/ChangeAck.ts';
import type { PingResponse__Output } from './generated/pwsync/v1/PingResponse.ts';
import type { ReportRequest } from './generated/pwsync/v1/ReportRequest.ts';
import type { ReportResponse__Output } from './generated/pwsync/v1/ReportResponse.ts';
import type { SubmitRequest } from './generated/pwsync/v1/SubmitRequest.ts';
import type { SubmitResponse__Output } from './generated/pwsync/v1/SubmitResponse.ts';
import { pwsyncV1 } from './service.ts';

export interface SubmitClientOptions {
  /** host:port of the hub. */
  address: string;
  /** The only CA the hub's certificate is checked against (never the system's store). */
  ca: Buffer;
  /** The name to check in the hub's certificate when it is not the host in `address`. */
  serverName?: string;
  /** This DC's TLS client certificate and key (PEM), for a hub that requires one (hub.tls.clientCa). */
  clientCertificate?: { cert: Buffer; key: Buffer };
  auth: ClientAuthenticator;
  /** Deadline of each call. */
  timeoutMs: number;
  /** Largest request sent and answer received; unset sends any size (the hub enforces its own limit). */
  maxMessageBytes?: number;
}

export interface SubmitClient {
  /** One acknowledgement per change, in request order; rejects with a DeliveryError. */
  submit(req: SubmitRequest): Promise<ChangeAck__Output[]>;
  /** Tells the hub this DC is alive, its capture state and its out-of-scope notices. */
  report(req: ReportRequest): Promise<ReportResponse__Output>;
  /** The hub's id and version: proves address, TLS and authentication work. */
  ping(): Promise<{ hubId: string; version: string }>;
  close(): void;
}

const DEFAULT_MAX_RECEIVE = 4 * 1024 * 1024;

function bytesOf(id: Buffer | Uint8Array | string | undefined): Buffer {
  if (id === undefined) return Buffer.alloc(0);
  return typeof id === 'string' ? Buffer.from(id, 'base64') : Buffer.from(id);
}

/** Checked up front (a key that does not fit would fail every handshake with a vague message); read once for messages. */
function clientCertificateOf(own: { cert: Buffer; key: Buffer }): X509Certificate {
  try {
    createSecureContext({ cert: own.cert, key: own.key });
    return new X509Certificate(own.cert);
  } catch (e) {
    throw new Error(`this DC's client certificate and key cannot be used together (targets[].tls.cert, targets[].tls.key): ${describeError(e)}; issue them again with \`pwsync tls client --dc HOST\``, { cause: e });
  }
}

export function createSubmitClient(opts: SubmitClientOptions): SubmitClient {
  if (!opts.ca.includes('-----BEGIN CERTIFICATE-----')) {
    throw new Error(`the CA for ${opts.address} holds no PEM certificate: point targets[].tls.ca at the hub's ca.pem`);
  }
  const v1 = pwsyncV1();
  const own = opts.clientCertificate;
  const clientCertificate = own ? clientCertificateOf(own) : undefined;
  const credentials = own ? grpc.credentials.createSsl(opts.ca, own.key, own.cert) : grpc.credentials.createSsl(opts.ca);
  const options: grpc.ChannelOptions = { 'grpc.max_receive_message_length': opts.maxMessageBytes ?? DEFAULT_MAX_RECEIVE };
  if (opts.maxMessageBytes !== undefined) options['grpc.max_send_message_length'] = opts.maxMessageBytes;
  if (opts.serverName) options['grpc.ssl_target_name_override'] = opts.serverName;
  const sync = new v1.PasswordSync(opts.address, credentials, options);
  const admin = new v1.Admin(opts.address, credentials, { ...options, channelOverride: sync.getChannel() });
  const target: DeliveryTarget = {
    address: opts.address, serverName: opts.serverName, timeoutMs: opts.timeoutMs,
    ...(clientCertificate ? { clientCertificate } : {}),
  };

  async function startAuth(): Promise<ClientCallAuth> {
    try {
      return await opts.auth.start();
    } catch (e) {
      if (e instanceof DeliveryError) throw e;
      throw new DeliveryError('UNAUTHENTICATED', `cannot obtain credentials for the hub at ${opts.address}: ${describeError(e)}`, { cause: e, retryable: true });
    }
  }

  /** Makes one call; its answer counts only once the hub's initial metadata passed verifyReply. */
  function call<T>(start: (md: grpc.Metadata, options: grpc.CallOptions, cb: grpc.requestCallback<T>) => grpc.ClientUnaryCall, auth: ClientCallAuth): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let reply: grpc.Metadata | undefined;
      const unary = start(auth.metadata, { deadline: Date.now() + opts.timeoutMs }, (err, value) => {
        if (err) {
          reject(deliveryErrorOf(err, target));
          return;
        }
        auth.verifyReply(reply ?? new grpc.Metadata()).then(
          () => resolve(value as T),
          (e: unknown) => reject(new DeliveryError('UNAUTHENTICATED',
            `the answer from ${opts.address} did not prove the hub's identity (${describeError(e)}): nothing in the batch is taken as delivered`,
            { cause: e })),
        );
      });
      unary.on('metadata', (m: grpc.Metadata) => { reply = m; });
    });
  }

  return {
    async submit(req) {
      const res = await call<SubmitResponse__Output>((m, o, cb) => sync.submit(req, m, o, cb), await startAuth());
      const sent = req.changes ?? [];
      const acks = res.acks;
      const mismatch = acks.length !== sent.length
        ? `${acks.length} acknowledgements for ${sent.length} changes`
        : acks.findIndex((a, i) => !a.changeId.equals(bytesOf(sent[i]!.changeId))) >= 0 ? 'acknowledgements for other change ids' : undefined;
      if (mismatch) {
        throw new DeliveryError('INTERNAL', `the hub at ${opts.address} answered ${mismatch}: nothing in the batch is taken as delivered`);
      }
      return acks;
    },
    async report(req) {
      return call<ReportResponse__Output>((m, o, cb) => sync.report(req, m, o, cb), await startAuth());
    },
    async ping() {
      const res = await call<PingResponse__Output>((m, o, cb) => admin.ping({}, m, o, cb), await startAuth());
      return { hubId: res.hubId, version: res.version };
    },
    close() {
      admin.close();
      sync.close();
    },
  };
}
