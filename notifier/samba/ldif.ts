import { Secret } from '../../core/secret.ts';

/**
 * The one object `samba-tool user syncpasswords` writes to its script's stdin, as LDIF (ldb's
 * writer: `attr: value`, or `attr:: base64` for values that are not plain text; long lines folded
 * with a leading space). The password attribute is read straight from the bytes into a Secret:
 * neither its value nor its base64 form ever becomes a JS string.
 */
export interface SyncObject {
  dn: string;
  /** Attribute names in lower case → the first value, decoded as UTF-8. */
  attrs: Map<string, string>;
  /** The cleartext password (virtualClearTextUTF8), when the object carries one. */
  password?: Secret;
}

export const PASSWORD_ATTRIBUTE = 'virtualcleartextutf8';

const NL = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const COLON = 0x3a;
const HASH = 0x23;
const LT = 0x3c;

/** A logical line: the byte ranges of its physical lines, fold markers removed. */
type Segments = Array<[number, number]>;

function logicalLines(buf: Buffer): Segments[] {
  const lines: Segments[] = [];
  let at = 0;
  while (at < buf.length) {
    let end = buf.indexOf(NL, at);
    if (end === -1) end = buf.length;
    let stop = end;
    if (stop > at && buf[stop - 1] === CR) stop--;
    if (buf[at] === SPACE && lines.length > 0) lines[lines.length - 1]!.push([at + 1, stop]);
    else lines.push([[at, stop]]);
    at = end + 1;
  }
  return lines;
}

/** The logical line's bytes in a new buffer (the caller wipes it when it held the password). */
function join(buf: Buffer, segments: Segments): Buffer {
  const out = Buffer.allocUnsafeSlow(segments.reduce((n, [s, e]) => n + e - s, 0));
  let o = 0;
  for (const [s, e] of segments) o += buf.copy(out, o, s, e);
  return out;
}

const B64 = new Int16Array(256).fill(-1);
'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.split('').forEach((c, i) => { B64[c.charCodeAt(0)] = i; });

/** Base64 → bytes without a string in between. Throws on anything but the standard alphabet and '=' padding. */
export function decodeBase64Bytes(text: Buffer): Buffer {
  let len = text.length;
  while (len > 0 && text[len - 1] === 0x3d) len--;
  if (text.length - len > 2 || (text.length !== len && text.length % 4 !== 0) || len % 4 === 1) throw new Error('bad base64 length or padding');
  const out = Buffer.allocUnsafeSlow(Math.floor((len * 3) / 4));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < len; i++) {
    const v = B64[text[i]!]!;
    if (v < 0) {
      out.fill(0);
      throw new Error('a character outside the base64 alphabet');
    }
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

/** Parses the object; `buf` is zero-filled before returning (it held the password). */
export function parseSyncLdif(buf: Buffer): SyncObject {
  const attrs = new Map<string, string>();
  let dn: string | undefined;
  let password: Secret | undefined;
  try {
    for (const segments of logicalLines(buf)) {
      const line = join(buf, segments);
      try {
        if (line.length === 0) {
          if (dn !== undefined) break;
          continue;
        }
        if (line[0] === HASH) continue;
        const colon = line.indexOf(COLON);
        if (colon === -1) throw new Error('a line without "attribute:"');
        const name = line.toString('latin1', 0, colon).toLowerCase();
        let from = colon + 1;
        const b64 = line[from] === COLON;
        if (b64) from++;
        else if (line[from] === LT) throw new Error(`attribute ${name} is given by URL (:<), which pwsync does not read`);
        while (from < line.length && line[from] === SPACE) from++;
        const raw = line.subarray(from);
        if (name === PASSWORD_ATTRIBUTE) {
          if (!password) password = Secret.adopt(b64 ? decodeBase64Bytes(raw) : Buffer.from(raw));
          continue;
        }
        const value = (b64 ? decodeBase64Bytes(raw) : raw).toString('utf8');
        if (name === 'dn') dn = value;
        else if (!attrs.has(name)) attrs.set(name, value);
      } finally {
        line.fill(0);
      }
    }
  } catch (e) {
    password?.dispose();
    throw e;
  } finally {
    buf.fill(0);
  }
  if (dn === undefined) {
    password?.dispose();
    throw new Error('the LDIF has no "dn:" line');
  }
  return { dn, attrs, ...(password ? { password } : {}) };
}
