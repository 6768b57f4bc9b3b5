import { PwsyncError } from '../../core/errors.ts';

/**
 * unicodePwd's value (MS-ADTS 3.1.1.3.1.5.1): the password in double quotes, encoded UTF-16LE.
 * Built from the Secret's UTF-8 bytes code point by code point into one unpooled buffer, so the
 * password never becomes a JS string (which cannot be wiped, and which would turn a broken byte
 * into U+FFFD without a word) and nothing but that buffer holds it. Invalid UTF-8 (stray or
 * missing continuation bytes, overlong forms, surrogates, beyond U+10FFFF) is refused.
 */

const QUOTE = 0x22;

/**
 * The code point starting at `i` and its length in bytes, or length 0 when no valid UTF-8
 * sequence starts there (RFC 3629, the table of well-formed byte sequences).
 */
function codePointAt(b: Buffer, i: number): { cp: number; len: number } {
  const b0 = b[i]!;
  if (b0 < 0x80) return { cp: b0, len: 1 };
  let len: number;
  let cp: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    len = 2;
    cp = b0 & 0x1f;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    len = 3;
    cp = b0 & 0x0f;
    if (b0 === 0xe0) lo = 0xa0; // overlong
    if (b0 === 0xed) hi = 0x9f; // U+D800..U+DFFF are surrogates, not characters
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    len = 4;
    cp = b0 & 0x07;
    if (b0 === 0xf0) lo = 0x90; // overlong
    if (b0 === 0xf4) hi = 0x8f; // beyond U+10FFFF
  } else {
    return { cp: 0, len: 0 };
  }
  if (i + len > b.length) return { cp: 0, len: 0 };
  for (let k = 1; k < len; k++) {
    const c = b[i + k]!;
    if (c < (k === 1 ? lo : 0x80) || c > (k === 1 ? hi : 0xbf)) return { cp: 0, len: 0 };
    cp = (cp << 6) | (c & 0x3f);
  }
  return { cp, len };
}

function notUtf8(offset: number): PwsyncError {
  return new PwsyncError(6950, `the password is not valid UTF-8 (no valid character starts at byte ${offset}), so it cannot be written as unicodePwd (UTF-16LE): the change was captured or sealed wrongly at its source`, { retryable: false });
}

/** `"` + password + `"` as UTF-16LE in a fresh unpooled buffer; the caller wipes it (or use withUnicodePwd). */
export function unicodePwdValue(utf8: Buffer): Buffer {
  // First pass: validate and count UTF-16 code units, so the one buffer is allocated at its size.
  let units = 0;
  for (let i = 0; i < utf8.length;) {
    const { cp, len } = codePointAt(utf8, i);
    if (len === 0) throw notUtf8(i);
    units += cp >= 0x10000 ? 2 : 1;
    i += len;
  }
  const out = Buffer.allocUnsafeSlow(2 * (units + 2));
  let o = 0;
  const unit = (u: number): void => {
    out[o++] = u & 0xff;
    out[o++] = u >>> 8;
  };
  unit(QUOTE);
  for (let i = 0; i < utf8.length;) {
    const { cp, len } = codePointAt(utf8, i);
    if (cp >= 0x10000) {
      const v = cp - 0x10000;
      unit(0xd800 | (v >>> 10));
      unit(0xdc00 | (v & 0x3ff));
    } else {
      unit(cp);
    }
    i += len;
  }
  unit(QUOTE);
  return out;
}

/** Runs `fn` with the unicodePwd value of `utf8` and zero-fills the value once `fn` settles. */
export async function withUnicodePwd<T>(utf8: Buffer, fn: (value: Buffer) => Promise<T>): Promise<T> {
  const value = unicodePwdValue(utf8);
  try {
    return await fn(value);
  } finally {
    value.fill(0);
  }
}
