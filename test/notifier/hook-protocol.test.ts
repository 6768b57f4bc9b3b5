import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeHookHeader, HookProtocolError, parseHookHeader } from '../../notifier/hook-protocol.ts';

const good = { v: 1, domain: 'corp.example', samAccountName: 'alice', passwordBytes: 12 };

test('a complete header round-trips through encode and parse', () => {
  const account = { domain: 'corp.example', samAccountName: 'alice', objectGuid: 'g', objectSid: 'S-1-5-21-1', upn: 'alice@corp.example', dn: 'CN=Alice,DC=corp' };
  const line = encodeHookHeader({ account, changeTime: 1234 }, 9).toString('utf8');
  assert.ok(line.endsWith('\n'));
  assert.deepEqual(parseHookHeader(line.slice(0, -1)), { account, changeTime: 1234, passwordBytes: 9 });
});

test('optional identifiers default to empty strings and changeTime stays absent', () => {
  const h = parseHookHeader(JSON.stringify(good));
  assert.deepEqual(h, { account: { domain: 'corp.example', samAccountName: 'alice', objectGuid: '', objectSid: '', upn: '', dn: '' }, passwordBytes: 12 });
});

const bad: Array<[string, string, RegExp]> = [
  ['not JSON', '{"v":1,', /not JSON/],
  ['an array', '[1,2]', /JSON object/],
  ['wrong version', JSON.stringify({ ...good, v: 2 }), /version 2.*"v":1/],
  ['no version', JSON.stringify({ ...good, v: undefined }), /version none/],
  ['missing domain', JSON.stringify({ ...good, domain: undefined }), /lacks domain/],
  ['empty samAccountName', JSON.stringify({ ...good, samAccountName: '' }), /lacks samAccountName/],
  ['a password field', JSON.stringify({ ...good, password: 'x' }), /unknown field\(s\) password.*never inside it/],
  ['a numeric upn', JSON.stringify({ ...good, upn: 5 }), /upn must be a string/],
  ['a negative changeTime', JSON.stringify({ ...good, changeTime: -1 }), /changeTime/],
  ['zero passwordBytes', JSON.stringify({ ...good, passwordBytes: 0 }), /passwordBytes.*1 to 1024/],
  ['too many passwordBytes', JSON.stringify({ ...good, passwordBytes: 1025 }), /passwordBytes.*1 to 1024/],
  ['fractional passwordBytes', JSON.stringify({ ...good, passwordBytes: 1.5 }), /passwordBytes/],
  ['an overlong dn', JSON.stringify({ ...good, dn: 'x'.repeat(4097) }), /dn is longer than 4096/],
  ['a NUL in samAccountName', JSON.stringify({ ...good, samAccountName: 'alice\u0000' }), /samAccountName holds the control character \\u0000 at position 5.*6979/],
  ['a tab in the objectSid', JSON.stringify({ ...good, objectSid: 'S-1-5\t21' }), /objectSid holds the control character \\u0009/],
  ['a carriage return in the domain', JSON.stringify({ ...good, domain: 'corp\r.example' }), /domain holds the control character \\u000d/],
];

test('names with characters beyond the C0 range pass: accents, C1, non-BMP', () => {
  const h = parseHookHeader(JSON.stringify({ ...good, samAccountName: 'Jürgen\u0085', dn: 'CN=名前 😀,DC=corp' }));
  assert.equal(h.account.samAccountName, 'Jürgen\u0085');
  assert.equal(h.account.dn, 'CN=名前 😀,DC=corp');
});

for (const [what, line, message] of bad) {
  test(`a header with ${what} is refused with a clear message`, () => {
    assert.throws(() => parseHookHeader(line), (e: unknown) => e instanceof HookProtocolError && message.test(e.message));
  });
}
