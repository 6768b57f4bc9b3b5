import assert from 'node:assert/strict';
import { test } from 'node:test';
import { printable, printableLines } from '../../core/text.ts';

/** printable(): what a file or argument holds reaches a terminal as text, never as a control sequence. */

test('C0, DEL and C1 characters become escapes; newline, return and tab by name', () => {
  assert.equal(printable('a\x1b[31mb\x07'), 'a\\x1B[31mb\\x07');
  assert.equal(printable('x\u009b2Jy\x7f\x00'), 'x\\x9B2Jy\\x7F\\x00');
  assert.equal(printable('one\ntwo\r\tthree'), 'one\\ntwo\\r\\tthree');
});

test('line separators and bidirectional overrides become escapes', () => {
  assert.equal(printable('evil\u202Etxt.exe\u2028\u2066'), 'evil\\u202Etxt.exe\\u2028\\u2066');
});

test('printable text, accents and emoji pass unchanged, and escaping twice changes nothing more', () => {
  const plain = 'connectors[0].url: ldaps://dc1:636 — Zoë ✓ 🎉 \\x1B';
  assert.equal(printable(plain), plain);
  const once = printable('\x1b]0;title\x07');
  assert.equal(printable(once), once);
  assert.doesNotMatch(once, /[\x00-\x1F\x7F-\x9F]/);
});

test('printableLines keeps the line breaks of a message of several lines and escapes within each', () => {
  assert.equal(printableLines('a.yaml:1:1: \x1b[2J\nb.yaml:2:2: ok\r'), 'a.yaml:1:1: \\x1B[2J\nb.yaml:2:2: ok\\r');
});
