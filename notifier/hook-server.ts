import { isUtf8 } from 'node:buffer';
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from '../core/log.ts';
import { describeError } from '../core/errors.ts';
import { Secret } from '../core/secret.ts';
import type { SealedCapture } from './hook-protocol.ts';
import {
  encodeHookReply, HookProtocolError, MAX_HEADER_BYTES, parseHookRequest,
  type HookChange, type HookReply, type HookRequest,
} from './hook-protocol.ts';

/**
 * The local endpoint a password hook writes to: a Unix socket (mode 0600 by default, so only the
 * notifier's user can open it) or, on Windows, a named pipe `\\.\pipe\NAME`. One request per
 * connection, clear or sealed (hook-protocol.ts). A clear request's password is read into a Buffer
 * and adopted into a Secret at once; every chunk that carried it is zero-filled. The hook is
 * answered `ok` only when the handler has made the change durable.
 */

/**
 * Queues one change; resolves with its change id (hex) once it is durable. Owns `password`.
 * A HookProtocolError is a refusal the hook can fix; anything else is the notifier's failure.
 */
export type ChangeHandler = (change: HookChange, password: Secret) => Promise<string>;

/** Queues (or, for a baseline, records) one change sealed by its capturer; resolves with its change id (hex). */
export type SealedChangeHandler = (change: SealedCapture) => Promise<string>;

export interface HookServerOptions {
  path: string;
  /** File mode of the socket (ignored for a Windows named pipe). */
  mode: number;
  /** The whole request, from connect to reply, must fit in this. */
  timeoutMs: number;
  log: Logger;
  onChange: ChangeHandler;
  /** Without it, sealed requests are refused. */
  onSealed?: SealedChangeHandler;
}

export interface HookServer {
  readonly path: string;
  /** Refuses new connections and resolves when the requests in flight have been answered. */
  close(): Promise<void>;
}

/** Linux sockaddr_un holds 108 bytes including the terminating NUL. */
const MAX_UNIX_PATH = 107;
/** After a timeout reply, how long the peer has to read it before the connection is cut. */
const REPLY_GRACE_MS = 500;

export function isWindowsPipe(path: string): boolean {
  return /^\\\\[.?]\\pipe\\/i.test(path);
}

export async function startHookServer(opts: HookServerOptions): Promise<HookServer> {
  const pipe = isWindowsPipe(opts.path);
  if (!pipe) await prepareSocketPath(opts.path);
  const server = createServer({ allowHalfOpen: true }, (socket) => serveConnection(socket, opts));
  await listen(server, opts.path, pipe);
  if (!pipe) chmodSync(opts.path, opts.mode);
  opts.log.info({ socket: opts.path }, 'hook endpoint listening');
  return {
    path: opts.path,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function prepareSocketPath(path: string): Promise<void> {
  if (Buffer.byteLength(path) > MAX_UNIX_PATH) {
    throw new Error(`hook socket path ${path} is ${Buffer.byteLength(path)} bytes; a Unix socket path may have at most ${MAX_UNIX_PATH}: choose a shorter hook.socket`);
  }
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    mkdirSync(dirname(path), { recursive: true });
    return;
  }
  if (!isSocket) throw new Error(`hook socket path ${path} exists and is not a socket: remove it or choose another hook.socket`);
  if (await answers(path)) {
    throw new Error(`another process is listening on the hook socket ${path}: stop the other notifier first, or choose another hook.socket`);
  }
  unlinkSync(path);
}

/** True when something accepts connections on `path`; false when the socket file is stale. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = createConnection(path);
    const done = (result: boolean | Error): void => {
      clearTimeout(timer);
      probe.destroy();
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    const timer = setTimeout(() => done(true), 2000);
    probe.once('connect', () => done(true));
    probe.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') done(false);
      else done(new Error(`cannot check whether the hook socket ${path} is in use: ${e.message}`));
    });
  });
}

function listen(server: Server, path: string, pipe: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve();
    });
    // The socket file is created inside listen(); a tight umask keeps it private until chmod.
    const previous = pipe ? undefined : process.umask(0o177);
    try {
      server.listen(path);
    } finally {
      if (previous !== undefined) process.umask(previous);
    }
  });
}

type Phase = 'header' | 'body' | 'processing' | 'done';

function serveConnection(socket: Socket, opts: HookServerOptions): void {
  const { log } = opts;
  const head = Buffer.alloc(MAX_HEADER_BYTES);
  let headLen = 0;
  let request: HookRequest | undefined;
  /** The bytes after the header: the password (clear) or the envelopes (sealed). */
  let body: Buffer | undefined;
  let bodyLen = 0;
  let phase: Phase = 'header';

  const wipe = (): void => {
    head.fill(0);
    body?.fill(0);
    body = undefined;
  };
  const account = (): string | undefined => request?.header.account.samAccountName;
  const reply = (r: HookReply): void => {
    phase = 'done';
    wipe();
    if (!socket.destroyed && socket.writable) socket.end(encodeHookReply(r));
  };
  const refuse = (error: string): void => {
    if (phase === 'done') return;
    log.warn({ error, account: account() }, 'hook request refused; nothing queued');
    reply({ ok: false, error });
  };

  // Bounds everything: a slow or silent peer, and the wait for the peer to close after the reply.
  const onTimeout = (): void => {
    if (phase === 'done') {
      socket.destroy();
      return;
    }
    if (phase === 'processing') {
      log.warn({ account: account(), timeoutMs: opts.timeoutMs }, 'hook request not confirmed durable in time');
      reply({ ok: false, error: `the change was not confirmed durable within ${opts.timeoutMs} ms (hook.timeout); it may still be delivered` });
    } else {
      refuse(`the request was not complete within ${opts.timeoutMs} ms (hook.timeout): send the header line and the bytes it announces at once`);
    }
    timer = setTimeout(() => socket.destroy(), REPLY_GRACE_MS);
  };
  let timer = setTimeout(onTimeout, opts.timeoutMs);

  const settle = (pending: Promise<string>, who: string): void => {
    pending.then(
      (changeId) => {
        if (phase !== 'done') reply({ ok: true, changeId });
      },
      (e: unknown) => {
        if (e instanceof HookProtocolError) {
          refuse(e.message);
          return;
        }
        log.error({ error: describeError(e), account: who }, 'hook request failed; the change was not queued');
        if (phase !== 'done') reply({ ok: false, error: `the change could not be queued: ${describeError(e)}` });
      },
    );
  };

  const call = (fn: () => Promise<string>): Promise<string> => {
    try {
      return fn();
    } catch (e) {
      return Promise.reject(e);
    }
  };

  const accept = (): void => {
    phase = 'processing';
    const bytes = body!;
    body = undefined;
    const r = request!;
    if (r.kind === 'sealed') {
      const { envelopeBytes, ...rest } = r.header;
      const envelopes: Buffer[] = [];
      let at = 0;
      for (const n of envelopeBytes) {
        envelopes.push(Buffer.from(bytes.subarray(at, at + n)));
        at += n;
      }
      const onSealed = opts.onSealed!;
      settle(call(() => onSealed({ ...rest, envelopes })), r.header.account.samAccountName);
      return;
    }
    if (!isUtf8(bytes)) {
      bytes.fill(0);
      refuse('the password is not valid UTF-8: the hook must send it encoded as UTF-8 (Windows: WideCharToMultiByte with CP_UTF8)');
      return;
    }
    const h = r.header;
    const change: HookChange = { account: h.account, ...(h.changeTime === undefined ? {} : { changeTime: h.changeTime }) };
    settle(call(() => opts.onChange(change, Secret.adopt(bytes))), h.account.samAccountName);
  };

  const expected = (): string => (request!.kind === 'clear'
    ? `passwordBytes (${request!.header.passwordBytes}) says: passwordBytes must be the password's exact length in UTF-8 bytes`
    : `envelopeBytes (${request!.header.envelopeBytes.join('+')}) says: envelopeBytes must list each envelope's exact length`);

  const consume = (chunk: Buffer): void => {
    let at = 0;
    if (phase === 'header') {
      const nl = chunk.indexOf(0x0a);
      const end = nl === -1 ? chunk.length : nl;
      if (headLen + end > MAX_HEADER_BYTES) {
        refuse(`the header line is longer than ${MAX_HEADER_BYTES} bytes: send one short JSON line ending in \\n, then the bytes it announces`);
        return;
      }
      chunk.copy(head, headLen, 0, end);
      headLen += end;
      if (nl === -1) return;
      at = nl + 1;
      const line = head.subarray(0, headLen);
      if (!isUtf8(line)) {
        refuse('the header line is not UTF-8 JSON');
        return;
      }
      try {
        request = parseHookRequest(line.toString('utf8'));
      } catch (e) {
        refuse(e instanceof HookProtocolError ? e.message : describeError(e));
        return;
      }
      if (request.kind === 'sealed' && !opts.onSealed) {
        refuse('this endpoint takes clear requests only (no sealed-change handler)');
        return;
      }
      const size = request.kind === 'clear' ? request.header.passwordBytes : request.header.envelopeBytes.reduce((a, b) => a + b, 0);
      body = Buffer.allocUnsafeSlow(size);
      phase = 'body';
    }
    if (phase === 'body') {
      const take = Math.min(chunk.length - at, body!.length - bodyLen);
      chunk.copy(body!, bodyLen, at, at + take);
      bodyLen += take;
      at += take;
      if (at < chunk.length) {
        refuse(`more bytes came after the header than ${expected()}`);
        return;
      }
      if (bodyLen === body!.length) accept();
    }
  };

  socket.on('data', (chunk: Buffer) => {
    try {
      consume(chunk);
    } finally {
      chunk.fill(0);
    }
  });
  socket.on('end', () => {
    if (phase === 'header') {
      refuse(headLen === 0
        ? 'the connection was closed before a header line came'
        : 'the connection was closed before the header line ended: end the JSON header with \\n');
    } else if (phase === 'body') {
      const what = request!.kind === 'clear' ? 'password bytes' : 'envelope bytes';
      refuse(`the connection was closed after ${bodyLen} of ${body!.length} ${what}, fewer than ${expected()}`);
    } else if (phase === 'done') {
      socket.end();
    }
  });
  socket.on('error', (e) => {
    log.debug({ error: e.message }, 'hook connection error');
  });
  socket.on('close', () => {
    clearTimeout(timer);
    if (phase === 'header' || phase === 'body') refuse('the connection was closed before the request was complete');
    wipe();
  });
}
