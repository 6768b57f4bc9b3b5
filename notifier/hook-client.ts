import { createConnection, type Socket } from 'node:net';
import type { Secret } from '../core/secret.ts';
import type { SealedCapture } from './hook-protocol.ts';
import { encodeHookHeader, encodeSealedRequest, MAX_PASSWORD_BYTES, MAX_REPLY_BYTES, parseHookReply } from './hook-protocol.ts';

/**
 * The hook's side of the local socket: what `pwsync hook`, the demo and tests use, and what a
 * Windows filter DLL or Samba's password hook does in its own language.
 */

/** The account a password change belongs to; empty identifiers are sent as ''. */
export interface HookAccount {
  domain: string;
  samAccountName: string;
  objectGuid?: string;
  objectSid?: string;
  upn?: string;
  dn?: string;
  /** When the DC committed the change, ms since the epoch; the notifier's clock when absent. */
  changeTime?: number;
}

/** Resolves once the notifier has made the change durable for every enabled target. */
export async function sendHookChange(
  socketPath: string, account: HookAccount, password: Secret, timeoutMs: number,
): Promise<{ changeId: string }> {
  if (password.length < 1 || password.length > MAX_PASSWORD_BYTES) {
    throw new Error(`the password must be 1 to ${MAX_PASSWORD_BYTES} bytes of UTF-8; it is ${password.length}`);
  }
  const header = encodeHookHeader({
    account: {
      domain: account.domain, samAccountName: account.samAccountName, objectGuid: account.objectGuid ?? '',
      objectSid: account.objectSid ?? '', upn: account.upn ?? '', dn: account.dn ?? '',
    },
    ...(account.changeTime === undefined ? {} : { changeTime: account.changeTime }),
  }, password.length);
  // One buffer holds header and password until the kernel has it; then it is zero-filled.
  const line = await exchange(socketPath, timeoutMs, (socket) => password.use((bytes) => new Promise<void>((done) => {
    const request = Buffer.concat([header, bytes]);
    const wipe = (): void => {
      request.fill(0);
      done();
    };
    socket.end(request, wipe);
    socket.once('close', wipe);
  })));
  return { changeId: answer(line) };
}

/**
 * Hands a change the capturer sealed itself (one envelope per hub key) to the notifier. Resolves
 * once it is durable for every target, or recorded when it is a baseline.
 */
export async function sendSealedChange(socketPath: string, change: SealedCapture, timeoutMs: number): Promise<{ changeId: string }> {
  const request = encodeSealedRequest(change);
  const line = await exchange(socketPath, timeoutMs, (socket) => {
    socket.end(request);
  });
  return { changeId: answer(line) };
}

function answer(line: string): string {
  const reply = parseHookReply(line);
  if (!reply.ok) throw new Error(`the notifier refused the change: ${reply.error}`);
  return reply.changeId;
}

function exchange(socketPath: string, timeoutMs: number, send: (socket: Socket) => unknown): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    const received: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (error: Error | undefined, line?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(line!);
    };
    const timer = setTimeout(() => finish(new Error(`the notifier did not answer within ${timeoutMs} ms on ${socketPath}`)), timeoutMs);
    socket.once('connect', () => {
      void send(socket);
    });
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      size += chunk.length;
      const all = Buffer.concat(received);
      const nl = all.indexOf(0x0a);
      if (nl !== -1) finish(undefined, all.toString('utf8', 0, nl));
      else if (size > MAX_REPLY_BYTES) finish(new Error(`the notifier's reply on ${socketPath} is longer than ${MAX_REPLY_BYTES} bytes: is it a pwsync notifier?`));
    });
    socket.once('end', () => finish(new Error(`the notifier on ${socketPath} closed the connection without answering`)));
    socket.once('error', (e: NodeJS.ErrnoException) => finish(new Error(connectionProblem(socketPath, e))));
  });
}

function connectionProblem(socketPath: string, e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
      return `no notifier is listening on ${socketPath}: start it with \`pwsync notifier --config FILE\` or check hook.socket`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied on ${socketPath}: run the hook as the notifier's user, or widen hook.mode`;
    default:
      return `cannot talk to the notifier on ${socketPath}: ${e.message}`;
  }
}
