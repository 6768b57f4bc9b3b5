import type { AccountRef } from '../core/extension.ts';
import { MAX_FIELD_BYTES } from '../core/envelope.ts';
import { controlCharacterIn } from '../core/identifiers.ts';

/**
 * The hook's wire format on the local socket (a Unix socket, or on Windows a named pipe): one request
 * per connection, then one reply. A request is one JSON header line (UTF-8, at most 32 KiB, ending in
 * `\n`), then exactly the number of raw bytes the header announces. Two kinds:
 *
 * **clear** (`pwsync hook`, scripts): the password itself, which never becomes a JS string.
 *
 *   {"v":1,"domain":…,"samAccountName":…,"objectGuid":…,"objectSid":…,"upn":…,"dn":…,
 *    "changeTime":<ms, optional>,"passwordBytes":N}\n  <N password bytes, UTF-8>
 *
 *   ("kind":"clear" may be given; it is the default.)
 *
 * **sealed** (the Samba capture script, the Windows filter DLL): no password, only envelopes the
 * capturer sealed itself (core/envelope.ts, suite 1), one per hub key, each bound to this very
 * header: changeId, changeTime, domain, account identifiers and the notifier's host
 * (notifier.host) as source host. A target whose key has no envelope refuses the whole change.
 *
 *   {"v":1,"kind":"sealed","domain":…,"samAccountName":…,"objectGuid":…,"objectSid":…,"upn":…,"dn":…,
 *    "changeTime":<ms, required>,"changeId":"<32 hex digits>",
 *    "version":{"objectGuid":…,"kvno":N},      optional: which password version this is
 *    "baseline":true,                          optional: record the version only, send nothing
 *    "envelopeBytes":[n1,n2,…]}\n  <n1 bytes of envelope 1><n2 bytes of envelope 2>…
 *
 *   - `changeId` must be the same on a replay of the same change (Samba: derived from objectGUID
 *     and msDS-KeyVersionNumber), so the hub and the notifier's queues store it once.
 *   - `version`: the notifier remembers the newest kvno per objectGUID and drops a change whose
 *     kvno is not newer (a replay after a crash, or a change of another attribute).
 *   - `baseline`: the first run after the capturer was set up reports every account's current
 *     version so that old passwords are not sent; `envelopeBytes` may then be `[]`.
 *   - 1 to 16 envelopes (0 only with `baseline`), each at most 64 KiB.
 *
 * Identifiers (domain, samAccountName, objectGuid, objectSid, upn, dn, version.objectGuid) may not
 * hold control characters (U+0000–U+001F, U+007F): such a request is refused (event 6979).
 *
 * The reply is one JSON line: {"ok":true,"changeId":"<hex>"} once the change is durable for every
 * target (or recorded, for a baseline), or {"ok":false,"error":"…"}: nothing was queued.
 */
export const HOOK_PROTOCOL_VERSION = 1;
export const MAX_HEADER_BYTES = 32 * 1024;
export const MAX_PASSWORD_BYTES = 1024;
export const MAX_REPLY_BYTES = 4 * 1024;
export const MAX_ENVELOPES = 16;
export const MAX_ENVELOPE_BYTES = 64 * 1024;

/** What a hook reports about one password change, besides the password. */
export interface HookChange {
  account: AccountRef;
  /** When the DC committed the change (ms since the epoch); the notifier's clock when absent. */
  changeTime?: number;
}

export interface HookHeader extends HookChange {
  passwordBytes: number;
}

/** A change sealed by its capturer: no password, one envelope per hub key. */
export interface SealedCapture {
  account: AccountRef;
  changeTime: number;
  /** 16 bytes, bound into every envelope. */
  changeId: Buffer;
  /**
   * Which version of the account's password this is (Samba: objectGUID + msDS-KeyVersionNumber).
   * A version not newer than one already captured is a replay or not a password change: dropped.
   */
  version?: { objectGuid: string; kvno: number };
  /** Remember the version only, send nothing (the first run's baseline). */
  baseline?: boolean;
  envelopes: Buffer[];
}

/** A sealed request's header: the change without its envelopes, and their sizes in order. */
export interface SealedHookHeader extends Omit<SealedCapture, 'envelopes'> {
  envelopeBytes: number[];
}

export type HookRequest = { kind: 'clear'; header: HookHeader } | { kind: 'sealed'; header: SealedHookHeader };

export type HookReply = { ok: true; changeId: string } | { ok: false; error: string };

const REQUIRED = ['domain', 'samAccountName'] as const;
const OPTIONAL = ['objectGuid', 'objectSid', 'upn', 'dn'] as const;
const KNOWN_CLEAR = new Set<string>(['v', 'kind', ...REQUIRED, ...OPTIONAL, 'changeTime', 'passwordBytes']);
const KNOWN_SEALED = new Set<string>(['v', 'kind', ...REQUIRED, ...OPTIONAL, 'changeTime', 'changeId', 'version', 'baseline', 'envelopeBytes']);

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

const isCount = (n: unknown, min: number, max: number): n is number => Number.isSafeInteger(n) && (n as number) >= min && (n as number) <= max;

/** Parses and checks a header line (without its `\n`) of either kind. Throws HookProtocolError. */
export function parseHookRequest(line: string): HookRequest {
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
  if (h.kind !== undefined && h.kind !== 'clear' && h.kind !== 'sealed') {
    fail(`the header field kind is ${JSON.stringify(h.kind)}; it must be "clear" (a password follows) or "sealed" (envelopes follow)`);
  }
  const sealed = h.kind === 'sealed';
  const known = sealed ? KNOWN_SEALED : KNOWN_CLEAR;
  const unknown = Object.keys(h).filter((k) => !known.has(k));
  if (unknown.length > 0) {
    fail(`the header has unknown field(s) ${unknown.join(', ')}; allowed: ${[...known].join(', ')} (the password goes after the header line, never inside it)`);
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
  const control = controlCharacterIn(Object.fromEntries([...REQUIRED, ...OPTIONAL].map((k) => [`the header field ${k}`, h[k] as string | undefined])));
  if (control) fail(`${control} (event 6979)`);
  const changeTime = h.changeTime;
  if (changeTime !== undefined && !isCount(changeTime, 0, Number.MAX_SAFE_INTEGER)) {
    fail('the header field changeTime must be a whole number of ms since the epoch, or absent');
  }
  const str = (k: string): string => (typeof h[k] === 'string' ? h[k] : '');
  const account = {
    domain: str('domain'), samAccountName: str('samAccountName'), objectGuid: str('objectGuid'),
    objectSid: str('objectSid'), upn: str('upn'), dn: str('dn'),
  };
  if (sealed) return { kind: 'sealed', header: parseSealed(h, account) };
  const n = h.passwordBytes;
  if (!isCount(n, 1, MAX_PASSWORD_BYTES)) {
    fail(`the header field passwordBytes must be the password's length in UTF-8 bytes, 1 to ${MAX_PASSWORD_BYTES}`);
  }
  return {
    kind: 'clear',
    header: { account, ...(changeTime === undefined ? {} : { changeTime: changeTime as number }), passwordBytes: n },
  };
}

function parseSealed(h: Record<string, unknown>, account: AccountRef): SealedHookHeader {
  if (h.changeTime === undefined) fail('a sealed change needs changeTime (ms since the epoch): it is bound into its envelopes');
  if (typeof h.changeId !== 'string' || !/^[0-9a-fA-F]{32}$/.test(h.changeId)) {
    fail('the header field changeId must be 32 hex digits (the 16-byte change id bound into the envelopes)');
  }
  let version: SealedCapture['version'];
  if (h.version !== undefined) {
    const v = h.version as Record<string, unknown> | null;
    if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.keys(v).some((k) => k !== 'objectGuid' && k !== 'kvno')
      || typeof v.objectGuid !== 'string' || v.objectGuid === '' || !isCount(v.kvno, 0, 2 ** 32)) {
      fail('the header field version must be {"objectGuid":"…","kvno":N} (msDS-KeyVersionNumber, a whole number)');
    }
    const control = controlCharacterIn({ 'the header field version.objectGuid': v.objectGuid as string });
    if (control) fail(`${control} (event 6979)`);
    version = { objectGuid: v.objectGuid as string, kvno: v.kvno as number };
  }
  if (h.baseline !== undefined && typeof h.baseline !== 'boolean') fail('the header field baseline must be true or false');
  const baseline = h.baseline === true;
  const sizes = h.envelopeBytes;
  if (!Array.isArray(sizes) || sizes.length > MAX_ENVELOPES || !sizes.every((n) => isCount(n, 1, MAX_ENVELOPE_BYTES))) {
    fail(`the header field envelopeBytes must list each envelope's length in bytes (1 to ${MAX_ENVELOPE_BYTES}), at most ${MAX_ENVELOPES} envelopes`);
  }
  if (sizes.length === 0 && !baseline) fail('a sealed change needs at least one envelope (one per hub key); only a baseline may have none');
  return {
    account, changeTime: h.changeTime as number, changeId: Buffer.from(h.changeId, 'hex'),
    ...(version ? { version } : {}), ...(baseline ? { baseline } : {}), envelopeBytes: sizes as number[],
  };
}

/** Parses and checks a clear request's header line (without its `\n`). Throws HookProtocolError. */
export function parseHookHeader(line: string): HookHeader {
  const r = parseHookRequest(line);
  if (r.kind !== 'clear') fail('expected a clear request (a password after the header), not a sealed one');
  return r.header;
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

/** A sealed request: the header line, `\n` included, then the envelopes. */
export function encodeSealedRequest(change: SealedCapture): Buffer {
  if (change.changeId.length !== 16) throw new Error('changeId must be 16 bytes');
  const a = change.account;
  const header: Record<string, unknown> = {
    v: HOOK_PROTOCOL_VERSION, kind: 'sealed', domain: a.domain, samAccountName: a.samAccountName,
    objectGuid: a.objectGuid, objectSid: a.objectSid, upn: a.upn, dn: a.dn,
    changeTime: change.changeTime, changeId: change.changeId.toString('hex'),
  };
  if (change.version) header.version = { objectGuid: change.version.objectGuid, kvno: change.version.kvno };
  if (change.baseline) header.baseline = true;
  header.envelopeBytes = change.envelopes.map((e) => e.length);
  return Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`, 'utf8'), ...change.envelopes]);
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
