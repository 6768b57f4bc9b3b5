import { createRequire } from 'node:module';
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../core/log.ts';
import type { CallerIdentity, ServerAuthenticator } from './auth.ts';
import type { ChangeAck } from './generated/pwsync/v1/ChangeAck.ts';
import type { PingResponse } from './generated/pwsync/v1/PingResponse.ts';
import type { ReportRequest__Output } from './generated/pwsync/v1/ReportRequest.ts';
import type { ReportResponse } from './generated/pwsync/v1/ReportResponse.ts';
import type { SubmitRequest__Output } from './generated/pwsync/v1/SubmitRequest.ts';
import type { SubmitResponse } from './generated/pwsync/v1/SubmitResponse.ts';
import { HubRefusal, statusOf } from './refusal.ts';
import { pwsyncV1 } from './service.ts';

const VERSION: string = createRequire(import.meta.url)('../package.json').version;

export interface HubServerOptions {
  /** host:port; port 0 binds a free port (returned). IPv6 hosts in brackets: [::1]:7443. */
  listen: string;
  tlsCert: Buffer;
  tlsKey: Buffer;
  /** The CA of the callers' client certificates: a caller without one it verifies fails the TLS handshake. */
  clientCa?: Buffer;
  /** Larger requests are refused with RESOURCE_EXHAUSTED before any handler runs. */
  maxMessageBytes: number;
  auth: ServerAuthenticator;
  /** Stores the batch durably and answers one acknowledgement per change, in request order. */
  submit: (req: SubmitRequest__Output, caller: CallerIdentity) => Promise<ChangeAck[]>;
  /** Records a notifier's report (liveness, capture state, out-of-scope notices); UNIMPLEMENTED when absent. */
  report?: (req: ReportRequest__Output, caller: CallerIdentity) => Promise<ReportResponse>;
  hubId: string;
  /** Where handler failures the caller cannot fix (INTERNAL) are logged. */
  log?: Logger;
}

export interface HubServer {
  port: number;
  /** Stops accepting calls, lets running ones finish for up to `graceMs`, then cuts them. */
  close(graceMs: number): Promise<void>;
}

/** A request body that protobuf could not decode: answered INVALID_ARGUMENT by the handler
 *  (grpc-js would otherwise answer a bare INTERNAL "Error deserializing request"). */
class Malformed {
  constructor(readonly reason: string) {}
}

function tolerant<T>(deserialize: (bytes: Buffer) => T): (bytes: Buffer) => T | Malformed {
  return (bytes) => {
    try {
      return deserialize(bytes);
    } catch (e) {
      return new Malformed(e instanceof Error ? e.message : 'undecodable');
    }
  };
}

function malformed(what: string, reason: string): HubRefusal {
  return new HubRefusal('malformed', `the request is not a valid ${what} (${reason}): the caller must be built from the same proto/pwsync.proto as the hub`);
}

async function authenticate(auth: ServerAuthenticator, call: grpc.ServerUnaryCall<unknown, unknown>): Promise<CallerIdentity> {
  try {
    return await auth.authenticate(call.metadata, call.getPeer(), call.getAuthContext()?.sslPeerCertificate);
  } catch (e) {
    if (e instanceof HubRefusal) throw e;
    throw new HubRefusal('unauthenticated', `the caller could not be authenticated: ${e instanceof Error ? e.message : 'unknown reason'}`, { cause: e });
  }
}

/** Runs `handle` for an authenticated caller and answers its value, or the status its failure maps to. */
function unary<Req, Res>(
  opts: HubServerOptions, what: string, handle: (req: Req, caller: CallerIdentity) => Promise<Res>,
): grpc.handleUnaryCall<Req | Malformed, Res> {
  return (call, callback) => {
    (async () => {
      const caller = await authenticate(opts.auth, call);
      if (call.request instanceof Malformed) throw malformed(what, call.request.reason);
      const value = await handle(call.request, caller);
      const reply = opts.auth.replyMetadata?.(caller);
      if (reply) call.sendMetadata(reply);
      return value;
    })().then(
      (value) => callback(null, value),
      (e: unknown) => {
        const status = statusOf(e);
        if (status.code === grpc.status.INTERNAL) opts.log?.error({ method: what, peer: call.getPeer(), error: status.details }, 'call failed');
        callback(status);
      },
    );
  };
}

/**
 * TLS only, and checked up front so a wrong file says so instead of failing at bind. With a client
 * CA, the handshake requires a client certificate it verifies (chain, validity, clientAuth use):
 * a caller without one never reaches a handler.
 */
function serverCredentials(opts: HubServerOptions): grpc.ServerCredentials {
  try {
    createSecureContext({ cert: opts.tlsCert, key: opts.tlsKey });
  } catch (e) {
    throw new Error(`the hub's TLS certificate and key cannot be used together (hub.tls.cert, hub.tls.key): ${e instanceof Error ? e.message : 'unreadable'}`, { cause: e });
  }
  if (opts.clientCa) {
    try {
      if (!opts.clientCa.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it');
      createSecureContext({ ca: opts.clientCa });
    } catch (e) {
      throw new Error(`hub.tls.clientCa cannot be used (${e instanceof Error ? e.message : 'unreadable'}): point it at the ca.pem that \`pwsync tls generate\` wrote`, { cause: e });
    }
  }
  const pair = [{ cert_chain: opts.tlsCert, private_key: opts.tlsKey }];
  return opts.clientCa ? grpc.ServerCredentials.createSsl(opts.clientCa, pair, true) : grpc.ServerCredentials.createSsl(null, pair, false);
}

export async function createHubServer(opts: HubServerOptions): Promise<HubServer> {
  const v1 = pwsyncV1();
  const server = new grpc.Server({ 'grpc.max_receive_message_length': opts.maxMessageBytes });

  const sync = v1.PasswordSync.service;
  server.addService(
    {
      ...sync,
      Submit: { ...sync.Submit, requestDeserialize: tolerant(sync.Submit.requestDeserialize) },
      Report: { ...sync.Report, requestDeserialize: tolerant(sync.Report.requestDeserialize) },
    },
    {
      Report: unary<ReportRequest__Output, ReportResponse>(opts, 'pwsync.v1.ReportRequest', async (req, caller) => {
        if (!opts.report) throw new HubRefusal('unimplemented', 'this hub does not take reports: upgrade the hub to the notifier\'s version');
        return opts.report(req, caller);
      }),
      Submit: unary<SubmitRequest__Output, SubmitResponse>(opts, 'pwsync.v1.SubmitRequest', async (req, caller) => {
        const acks = await opts.submit(req, caller);
        if (acks.length !== req.changes.length) {
          throw new Error(`the hub produced ${acks.length} acknowledgements for ${req.changes.length} changes`);
        }
        return { acks };
      }),
    },
  );
  const admin = v1.Admin.service;
  server.addService(
    { ...admin, Ping: { ...admin.Ping, requestDeserialize: tolerant(admin.Ping.requestDeserialize) } },
    {
      Ping: unary<unknown, PingResponse>(opts, 'pwsync.v1.PingRequest', async () => ({ hubId: opts.hubId, version: VERSION })),
    },
  );

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(opts.listen, serverCredentials(opts), (err, bound) => {
      if (!err) resolve(bound);
      else if (/EADDRINUSE/.test(err.message)) reject(new Error(`cannot listen on ${opts.listen}: another process uses it (stop it, or change hub.listen)`, { cause: err }));
      else reject(new Error(`cannot listen on ${opts.listen}: ${err.message} (check hub.listen: host:port)`, { cause: err }));
    });
  }).catch((e: unknown) => {
    server.forceShutdown();
    throw e;
  });

  return {
    port,
    close: (graceMs) => new Promise<void>((resolve) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        server.forceShutdown();
        finish();
      }, graceMs);
      server.tryShutdown(finish);
    }),
  };
}
