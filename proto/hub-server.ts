import { createRequire } from 'node:module';
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { EVENTS } from '../core/events.ts';
import type { Logger } from '../core/log.ts';
import type { CallerIdentity, ServerAuthenticator } from './auth.ts';
import type { ChangeAck } from './generated/pwsync/v1/ChangeAck.ts';
import type { PingResponse } from './generated/pwsync/v1/PingResponse.ts';
import type { ReportRequest__Output } from './generated/pwsync/v1/ReportRequest.ts';
import type { ReportResponse } from './generated/pwsync/v1/ReportResponse.ts';
import type { SubmitRequest__Output } from './generated/pwsync/v1/SubmitRequest.ts';
import type { SubmitResponse } from './generated/pwsync/v1/SubmitResponse.ts';
import { HubRefusal, statusOf } from './refusal.ts';
import { MAX_REPORT_NOTICES, PACKAGE, pwsyncV1, utf8Checker } from './service.ts';
import type { InvalidUtf8 } from './strict-utf8.ts';

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
  /**
   * Stores the batch durably and answers one acknowledgement per change, in request order.
   * `signal` aborts when the caller has gone (cancelled, past its deadline): stop storing.
   */
  submit: (req: SubmitRequest__Output, caller: CallerIdentity, signal: AbortSignal) => Promise<ChangeAck[]>;
  /**
   * Records a notifier's report (liveness, capture state, out-of-scope notices); UNIMPLEMENTED when
   * absent. It gets at most MAX_REPORT_NOTICES notices; `signal` as for submit.
   */
  report?: (req: ReportRequest__Output, caller: CallerIdentity, signal: AbortSignal) => Promise<ReportResponse>;
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

/** A decoded request, and its string fields whose bytes are not valid UTF-8 (see strict-utf8.ts). */
interface Decoded<T> {
  request: T;
  invalidUtf8: InvalidUtf8[];
}

function strict<T>(deserialize: (bytes: Buffer) => T, typeName: string): (bytes: Buffer) => Decoded<T> | Malformed {
  const checker = utf8Checker();
  return (bytes) => {
    let request: T;
    try {
      request = deserialize(bytes);
    } catch (e) {
      return new Malformed(e instanceof Error ? e.message : 'undecodable');
    }
    return { request, invalidUtf8: checker.check(bytes, `${PACKAGE}.${typeName}`) };
  };
}

function malformed(what: string, reason: string): HubRefusal {
  return new HubRefusal('malformed', `the request is not a valid ${what} (${reason}): the caller must be built from the same proto/pwsync.proto as the hub`);
}

const notUtf8 = (path: string): string => `${path} is not valid UTF-8 (event 6979): every string of a request must be UTF-8, a name the UTF-8 bytes of the text the directory holds`;

/** Refuses the whole call when a string outside the per-item fields (`items`) is not UTF-8. */
function refuseInvalidUtf8(invalid: readonly InvalidUtf8[], items?: string): void {
  const whole = invalid.find((i) => i.top !== items || i.item === undefined);
  if (whole) throw new HubRefusal('malformed', notUtf8(whole.path));
}

async function authenticate(auth: ServerAuthenticator, call: grpc.ServerUnaryCall<unknown, unknown>): Promise<CallerIdentity> {
  try {
    return await auth.authenticate(call.metadata, call.getPeer(), call.getAuthContext()?.sslPeerCertificate);
  } catch (e) {
    if (e instanceof HubRefusal) throw e;
    throw new HubRefusal('unauthenticated', `the caller could not be authenticated: ${e instanceof Error ? e.message : 'unknown reason'}`, { cause: e });
  }
}

/**
 * Runs `handle` for an authenticated caller and answers its value, or the status its failure maps
 * to. The signal handed to `handle` aborts when the caller goes away before the answer (grpc-js
 * emits 'cancelled' on cancellation and at the deadline): the handler stops, 6980 is logged.
 */
function unary<Req, Res>(
  opts: HubServerOptions, what: string, handle: (req: Decoded<Req>, caller: CallerIdentity, signal: AbortSignal) => Promise<Res>,
): grpc.handleUnaryCall<Decoded<Req> | Malformed, Res> {
  return (call, callback) => {
    const gone = new AbortController();
    let answered = false;
    // grpc-js also emits 'cancelled' when the stream closes after an answer: only a call in flight is abandoned.
    call.on('cancelled', () => {
      if (answered) return;
      opts.log?.debug({ method: what, peer: call.getPeer() }, 'the caller went away; the call\'s remaining work stops');
      gone.abort();
    });
    (async () => {
      const caller = await authenticate(opts.auth, call);
      if (call.request instanceof Malformed) throw malformed(what, call.request.reason);
      const value = await handle(call.request, caller, gone.signal);
      const reply = opts.auth.replyMetadata?.(caller);
      if (reply) call.sendMetadata(reply);
      return value;
    })().then(
      (value) => {
        answered = true;
        callback(null, value);
      },
      (e: unknown) => {
        answered = true;
        if (gone.signal.aborted) {
          opts.log?.warn({ eventId: 6980, method: what, peer: call.getPeer() }, EVENTS[6980].text);
          return;
        }
        const status = statusOf(e);
        if (status.code === grpc.status.INTERNAL) opts.log?.error({ method: what, peer: call.getPeer(), error: status.details }, 'call failed');
        callback(status);
      },
    );
  };
}

/**
 * A Submit: a change with a string field that is not UTF-8 is answered REJECTED (6979) here and
 * the others go to the hub's submit; any other such field refuses the call.
 */
async function submit(opts: HubServerOptions, decoded: Decoded<SubmitRequest__Output>, caller: CallerIdentity, signal: AbortSignal): Promise<SubmitResponse> {
  const { request: req, invalidUtf8 } = decoded;
  refuseInvalidUtf8(invalidUtf8, 'changes');
  const bad = new Map<number, string>();
  for (const i of invalidUtf8) if (!bad.has(i.item!)) bad.set(i.item!, i.path);
  const good = req.changes.filter((_, i) => !bad.has(i));
  const acks = await opts.submit({ ...req, changes: good }, caller, signal);
  if (acks.length !== good.length) {
    throw new Error(`the hub produced ${acks.length} acknowledgements for ${good.length} changes`);
  }
  let next = 0;
  return {
    acks: req.changes.map((c, i) => {
      const path = bad.get(i);
      if (path === undefined) return acks[next++]!;
      opts.log?.warn({ eventId: 6979, changeId: c.changeId.toString('hex'), caller: caller.principal, field: path }, 'change rejected');
      return { changeId: c.changeId, status: 'REJECTED', reason: notUtf8(path) };
    }),
  };
}

/**
 * A Report: at most MAX_REPORT_NOTICES notices; a notice with a string field that is not UTF-8 is
 * left out (not stored, so the notifier keeps it and gives up on it in time), any other such field
 * refuses the call.
 */
async function report(opts: HubServerOptions, decoded: Decoded<ReportRequest__Output>, caller: CallerIdentity, signal: AbortSignal): Promise<ReportResponse> {
  if (!opts.report) throw new HubRefusal('unimplemented', 'this hub does not take reports: upgrade the hub to the notifier\'s version');
  const { request: req, invalidUtf8 } = decoded;
  if (req.notices.length > MAX_REPORT_NOTICES) {
    throw new HubRefusal('malformed', `a report may carry at most ${MAX_REPORT_NOTICES} notices, this one has ${req.notices.length}: send them in several reports (a notifier of this version does)`);
  }
  refuseInvalidUtf8(invalidUtf8, 'notices');
  const bad = new Set(invalidUtf8.map((i) => i.item!));
  for (const i of invalidUtf8) {
    opts.log?.warn({ eventId: 6979, caller: caller.principal, field: i.path }, 'a notice in a report is not valid UTF-8; not stored');
  }
  return opts.report({ ...req, notices: req.notices.filter((_, i) => !bad.has(i)) }, caller, signal);
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
      Submit: { ...sync.Submit, requestDeserialize: strict(sync.Submit.requestDeserialize, 'SubmitRequest') },
      Report: { ...sync.Report, requestDeserialize: strict(sync.Report.requestDeserialize, 'ReportRequest') },
    },
    {
      Report: unary<ReportRequest__Output, ReportResponse>(opts, 'pwsync.v1.ReportRequest', (req, caller, signal) => report(opts, req, caller, signal)),
      Submit: unary<SubmitRequest__Output, SubmitResponse>(opts, 'pwsync.v1.SubmitRequest', (req, caller, signal) => submit(opts, req, caller, signal)),
    },
  );
  const admin = v1.Admin.service;
  server.addService(
    { ...admin, Ping: { ...admin.Ping, requestDeserialize: strict(admin.Ping.requestDeserialize, 'PingRequest') } },
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
