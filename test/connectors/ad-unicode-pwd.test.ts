import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { unicodePwdValue, withUnicodePwd } from '../../connectors/ad/unicode-pwd.ts';
import { PwsyncError } from '../../core/errors.ts';
import { testPassword } from '../lib/passwords.ts';

/** What Node's own encoder makes of a well-formed string: the reference for valid input. */
const reference = (s: string): Buffer => Buffer.from(`"${s}"`, 'utf16le');

function refused(bytes: number[]): PwsyncError {
  try {
    unicodePwdValue(Buffer.from(bytes));
  } catch (e) {
    assert.ok(e instanceof PwsyncError, String(e));
    return e;
  }
  assert.fail(`accepted ${Buffer.from(bytes).toString('hex')}`);
}

describe('unicodePwd value: the password in double quotes, UTF-16LE, from UTF-8 bytes', () => {
  test('test passwords with é, ß, €, 日本, a quote, a backslash and 127 characters', () => {
    for (const label of ['x', 'é-ß-€-日本', 'say "hi"', 'back\\slash\\', 'ok'.padEnd(127 - 'Zé€-pw-'.length, 'y')]) {
      const pw = testPassword(label);
      assert.deepEqual(unicodePwdValue(pw), reference(pw.toString('utf8')), label);
    }
  });

  test('every Unicode scalar value, one after another, as Node encodes it', () => {
    const parts: string[] = [];
    for (let cp = 0; cp <= 0x10ffff; cp++) if (cp < 0xd800 || cp > 0xdfff) parts.push(String.fromCodePoint(cp));
    const text = parts.join('');
    assert.deepEqual(unicodePwdValue(Buffer.from(text, 'utf8')), reference(text));
  });

  test('characters beyond the BMP become surrogate pairs; the empty password is two quotes', () => {
    assert.deepEqual(unicodePwdValue(Buffer.from('𝄞', 'utf8')), Buffer.from([0x22, 0, 0x34, 0xd8, 0x1e, 0xdd, 0x22, 0]));
    assert.deepEqual(unicodePwdValue(Buffer.alloc(0)), Buffer.from([0x22, 0, 0x22, 0]));
  });

  test('the value lives in its own memory, not in Node\'s shared buffer pool; the input is untouched', () => {
    const pw = testPassword('pool');
    const copy = Buffer.from(pw);
    const v = unicodePwdValue(pw);
    assert.equal(v.byteOffset, 0);
    assert.equal(v.buffer.byteLength, v.length, 'an unpooled buffer of exactly its own size');
    assert.deepEqual(pw, copy);
  });

  test('invalid UTF-8 is refused with 6950, saying where, never retried, never echoing the bytes', () => {
    const cases: Array<[string, number[], number]> = [
      ['a stray continuation byte', [0x41, 0x80], 1],
      ['a sequence cut short', [0x41, 0x42, 0xc3], 2],
      ['a lead byte followed by ASCII', [0xc3, 0x41], 0],
      ['an overlong two-byte form', [0xc0, 0xaf], 0],
      ['an overlong three-byte form', [0xe0, 0x80, 0xaf], 0],
      ['an overlong four-byte form', [0xf0, 0x80, 0x80, 0xaf], 0],
      ['an encoded surrogate', [0xed, 0xa0, 0x80], 0],
      ['beyond U+10FFFF', [0xf4, 0x90, 0x80, 0x80], 0],
      ['a byte that never occurs in UTF-8', [0x41, 0x41, 0x41, 0xff], 3],
    ];
    for (const [what, bytes, at] of cases) {
      const e = refused(bytes);
      assert.equal(e.eventId, 6950, what);
      assert.equal(e.retryable, false, what);
      assert.match(e.message, new RegExp(`not valid UTF-8 .*byte ${at}\\b`), what);
      assert.ok(!e.message.includes('AAA'), what);
    }
  });

  test('withUnicodePwd zero-fills the value once the write settles, whether it worked or not', async () => {
    let seen: Buffer | undefined;
    assert.equal(await withUnicodePwd(testPassword('wipe-1'), async (v) => {
      seen = v;
      assert.ok(v.some((b) => b !== 0));
      return 'written';
    }), 'written');
    assert.ok(seen!.every((b) => b === 0), 'wiped after success');
    await assert.rejects(withUnicodePwd(testPassword('wipe-2'), async (v) => {
      seen = v;
      throw new Error('refused');
    }), /refused/);
    assert.ok(seen!.every((b) => b === 0), 'wiped after a failure');
  });
});
