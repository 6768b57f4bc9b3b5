import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { decodeBase64Bytes, parseSyncLdif } from '../../notifier/samba/ldif.ts';
import { testPassword } from '../lib/passwords.ts';

/** The LDIF syncpasswords hands its script, read without the password ever becoming a string. */

test('the byte-wise base64 decoder agrees with Node\'s on every length, padded or not', () => {
  for (let n = 0; n < 70; n++) {
    const bytes = randomBytes(n);
    const text = bytes.toString('base64');
    assert.ok(decodeBase64Bytes(Buffer.from(text)).equals(bytes), `length ${n}`);
    assert.ok(decodeBase64Bytes(Buffer.from(text.replace(/=+$/, ''))).equals(bytes), `length ${n} unpadded`);
  }
});

test('the decoder refuses what is not base64', () => {
  for (const bad of ['QQ=', 'Q===', 'QUJD-A==', 'QUJD\nQQ==', 'Q', 'QUJDR']) {
    assert.throws(() => decodeBase64Bytes(Buffer.from(bad)), /base64/, bad);
  }
});

const pw = testPassword('ldif ñ 日本 ✓');

function fold(line: string, width: number): string {
  const parts = line.match(new RegExp(`.{1,${width}}`, 'gu'))!;
  return parts.join('\n ');
}

test('folded lines (even inside the attribute name), CRLF, comments and a base64 DN are read', () => {
  const text = [
    '# Passwords[0] comment line',
    `dn:: ${Buffer.from('CN=Zoë,CN=Users,DC=pwsync,DC=test').toString('base64')}`,
    fold('objectGUID: 1eebfb2b-7b6b-4429-b113-da2c73c40137', 7),
    'sAMAccountName: zoe',
    fold(`virtualClearTextUTF8:: ${pw.toString('base64')}`, 9),
    'msDS-KeyVersionNumber: 4',
  ].join('\r\n');
  const input = Buffer.from(`${text}\r\n`);
  const o = parseSyncLdif(input);
  assert.equal(o.dn, 'CN=Zoë,CN=Users,DC=pwsync,DC=test');
  assert.equal(o.attrs.get('objectguid'), '1eebfb2b-7b6b-4429-b113-da2c73c40137');
  assert.equal(o.attrs.get('samaccountname'), 'zoe');
  assert.equal(o.attrs.get('msds-keyversionnumber'), '4');
  assert.ok(o.password!.use((b) => b.equals(pw)));
  assert.equal(o.attrs.has('virtualcleartextutf8'), false, 'the password is not among the attributes');
  assert.ok(input.every((b) => b === 0), 'the input buffer is zero-filled');
});

test('a plain (":") password value is read as its bytes; a second record is ignored', () => {
  const input = Buffer.concat([
    Buffer.from('dn: CN=a\nvirtualClearTextUTF8: '), pw, Buffer.from('\n\ndn: CN=b\nsAMAccountName: b\n'),
  ]);
  const o = parseSyncLdif(input);
  assert.equal(o.dn, 'CN=a');
  assert.ok(o.password!.use((b) => b.equals(pw)));
  assert.equal(o.attrs.has('samaccountname'), false);
});

test('an object without a password has none; a broken object is refused', () => {
  assert.equal(parseSyncLdif(Buffer.from('dn: CN=a\nuserAccountControl: 512\n')).password, undefined);
  assert.throws(() => parseSyncLdif(Buffer.from('sAMAccountName: a\n')), /no "dn:" line/);
  assert.throws(() => parseSyncLdif(Buffer.from('dn: CN=a\nnot an attribute\n')), /a line without "attribute:"/);
  assert.throws(() => parseSyncLdif(Buffer.from('dn: CN=a\nvirtualClearTextUTF8:< file:///etc/shadow\n')), /by URL/);
  assert.throws(() => parseSyncLdif(Buffer.from('dn: CN=a\nvirtualClearTextUTF8:: ***\n')), /base64/);
});
