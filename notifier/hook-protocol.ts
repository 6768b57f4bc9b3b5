import type { AccountRef } from '../core/extension.ts';
import { MAX_FIELD_BYTES } from '../core/envelope.ts';

/**
 * The hook's wire format on the local socket. The password never becomes a JS string: the request
 * is one JSON header line without it, then exactly `passwordBytes` raw UTF-8 bytes.
 *
 *   {"v":1,"domain":…,"samAccountName":…,"objectGuid":…,"objectSid":…,"upn":…,"dn":…,
 *    "changeTime":<ms, optional>,"passwordBytes":N}\n  <N password bytes>
 *
 * The reply is one JSON line: {"ok":true,"changeId":"<hex>"} or {"ok":false,"error":"…"}.
 */
export const HOOK_PROTOCOL_VERSION = 1;
export const MAX_HEADER_BYTES = 32 * 1024;
export const MAX_PASSWORD_BYTES = 1024;
export const MAX_REPLY_BYTES = 4 * 1024;

/** What a hook reports about one password change, besides the password. */
export interface HookChange {
  account: AccountRef;
  /** When the DC committed the change (ms since the epoch); the notifier's clock when absent. */
  changeTime?: number;
}

export interface HookHeader extends HookChange {
  passwordBytes: number;
}

export type HookReply = { ok: true; changeId: string } | { ok: false; error: string };

const REQUIRED = ['domain', 'samAccountName'] as const;
const OPTIONAL = ['objectGuid', 'objectSid', 'upn', 'dn'] as const;
const KNOWN = new Set<string>(['v', ...REQUIRED, ...OPTIONAL, 'changeTime', 'passwordBytes']);

/** A header that cannot be accepted; the message says what is wrong and how to fix it. */
export class HookProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HookProtocolError';
  }
}

function fail(message: string): never {
  throw new HookProtocolError(message);
}

/** Parses and checks the header line (without its `\n`). Throws HookProtocolError. */
export function parseHookHeader(line: string): HookHeader {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    fail('the header line is not JSON: send one line {"v":1,"domain":…,"samAccountName":…,"passwordBytes":N} then the password bytes');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    fail('the header line must be a JSON object such as {"v":1,"domain":…,"samAccountName":…,"passwordBytes":N}');
  }
  const h = raw as Record<string, unknown>;
  const unknown = Object.keys(h).filter((k) => !KNOWN.has(k));
  if (unknown.length > 0) {
    fail(`the header has unknown field(s) ${unknown.join(', ')}; allowed: ${[...KNOWN].join(', ')} (the password goes after the header line, never inside it)`);
  }
  if (h.v !== HOOK_PROTOCOL_VERSION) {
    fail(`the header has protocol version ${JSON.stringify(h.v) ?? 'none'}; this notifier speaks "v":${HOOK_PROTOCOL_VERSION}`);
  }
  const missing = REQUIRED.filter((k) => typeof h[k] !== 'string' || h[k] === '');
  if (missing.length > 0) fail(`the header lacks ${missing.join(' and ')} (a non-empty string each)`);
  for (const k of OPTIONAL) {
    if (h[k] !== undefined && typeof h[k] !== 'string') fail(`the header field ${k} must be a string`);
  }
  for (const k of [...REQUIRED, ...OPTIONAL]) {
    const v = h[k];
    if (typeof v === 'string' && Buffer.byteLength(v, 'utf8') > MAX_FIELD_BYTES) {
      fail(`the header field ${k} is longer than ${MAX_FIELD_BYTES} bytes`);
    }
  }
  const changeTime = h.changeTime;
  if (changeTime !== undefined && (!Number.isSafeInteger(changeTime) || (changeTime as number) < 0)) {
    fail('the header field changeTime must be a whole number of ms since the epoch, or absent');
  }
  const n = h.passwordBytes;
  if (!Number.isSafeInteger(n) || (n as number) < 1 || (n as number) > MAX_PASSWORD_BYTES) {
    fail(`the header field passwordBytes must be the password's length in UTF-8 bytes, 1 to ${MAX_PASSWORD_BYTES}`);
  }
  const str = (k: string): string => (typeof h[k] === 'string' ? h[k] : '');
  return {
    account: {
      domain: str('domain'), samAccountName: str('samAccountName'), objectGuid: str('objectGuid'),
      objectSid: str('objectSid'), upn: str('upn'), dn: str('dn'),
    },
    ...(changeTime === undefined ? {} : { changeTime: changeTime as number }),
    passwordBytes: n as number,
  };
}

/** The header line a client sends, `\n` included. */
export function encodeHookHeader(change: HookChange, passwordBytes: number): Buffer {
  const a = change.account;
  const header: Record<string, unknown> = {
    v: HOOK_PROTOCOL_VERSION, domain: a.domain, samAccountName: a.samAccountName,
    objectGuid: a.objectGuid, objectSid: a.objectSid, upn: a.upn, dn: a.dn,
  };
  if (change.changeTime !== undefined) header.changeTime = change.changeTime;
  header.passwordBytes = passwordBytes;
  return Buffer.from(`${JSON.stringify(header)}\n`, 'utf8');
}

export function encodeHookReply(reply: HookReply): Buffer {
  return Buffer.from(`${JSON.stringify(reply)}\n`, 'utf8');
}

/** Parses the notifier's reply line; throws when it is not one. */
export function parseHookReply(line: string): HookReply {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new Error('the notifier answered something that is not JSON: is the socket a pwsync notifier?');
  }
  const r = raw as Partial<Record<string, unknown>> | null;
  if (r && r.ok === true && typeof r.changeId === 'string') return { ok: true, changeId: r.changeId };
  if (r && r.ok === false && typeof r.error === 'string') return { ok: false, error: r.error };
  throw new Error('the notifier answered an unexpected reply: is the socket a pwsync notifier?');
}
