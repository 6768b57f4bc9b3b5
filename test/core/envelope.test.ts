import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createECDH, createHash, createHmac, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  bindingMismatch, keyringOf, open, parseHeader, privateRecipientFromPem, seal,
  type Binding, type PrivateRecipientKey,
} from '../../core/envelope.ts';
import { PwsyncError } from '../../core/errors.ts';
import { Secret } from '../../core/secret.ts';
import { testPassword } from '../lib/passwords.ts';
import { buildVectors, type Vector, type VectorFile } from '../vectors/generate.ts';

const VECTORS: VectorFile = JSON.parse(readFileSync(new URL('../vectors/envelope-v1.json', import.meta.url), 'utf8'));
const FIELDS = ['domain', 'samAccountName', 'objectGuid', 'objectSid', 'upn', 'dn', 'sourceHost'] as const;
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');
const hex = (s: string) => Buffer.from(s, 'hex');

function newKey(): PrivateRecipientKey {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return privateRecipientFromPem(privateKey.export({ type: 'pkcs8', format: 'pem' }));
}

function keyFromVector(v: Vector): PrivateRecipientKey {
  return { keyId: hex(v.keyId), publicPoint: hex(v.recipientPublicPoint), privateScalar: hex(v.recipientPrivateScalar) };
}

function bindingOf(v: Vector): Binding {
  return { ...v.binding, changeId: hex(v.binding.changeId) };
}

function binding(over: Partial<Binding> = {}): Binding {
  return {
    changeId: randomBytes(16), changeTime: 1767225600000, domain: 'example.test', samAccountName: 'jdoe',
    objectGuid: '6f1a2b3c-4d5e-4f60-8172-93a4b5c6d7e8', objectSid: 'S-1-5-21-1-2-3-1105', upn: 'jdoe@example.test',
    dn: 'CN=John Doe,DC=example,DC=test', sourceHost: 'dc1.example.test', ...over,
  };
}

/** The format rebuilt from test/vectors/README.md with raw primitives only (HKDF from HMAC, as CNG must). */
function sealFromReadme(v: Vector): { envelope: Buffer; shared: Buffer; aesKey: Buffer } {
  const b = v.binding;
  const recipientPoint = hex(v.recipientPublicPoint);
  const keyId = createHash('sha256').update(Buffer.concat([P256_SPKI_PREFIX, recipientPoint])).digest().subarray(0, 16);
  const time = Buffer.alloc(8);
  time.writeBigUInt64BE(BigInt(b.changeTime));
  const strings = FIELDS.map((f) => {
    const bytes = Buffer.from(b[f], 'utf8');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(bytes.length);
    return Buffer.concat([len, bytes]);
  });
  const header = Buffer.concat([Buffer.from('PWSY'), Buffer.from([1, 1, 1]), keyId, hex(b.changeId), time, ...strings]);
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(hex(v.ephemeralPrivateScalar));
  const ephemeralPoint = ecdh.getPublicKey();
  const shared = ecdh.computeSecret(recipientPoint);
  const prk = createHmac('sha256', Buffer.from('pwsync/v1/ecdh-p256')).update(shared).digest();
  const aesKey = createHmac('sha256', prk).update(Buffer.concat([ephemeralPoint, recipientPoint, Buffer.from([1])])).digest();
  const nonce = hex(v.nonce);
  const aad = Buffer.concat([header, ephemeralPoint, nonce]);
  const cipher = createCipheriv('aes-256-gcm', aesKey, nonce);
  cipher.setAAD(aad);
  const ct = Buffer.concat([cipher.update(hex(v.password)), cipher.final()]);
  return { envelope: Buffer.concat([aad, ct, cipher.getAuthTag()]), shared, aesKey };
}

function refused(fn: () => unknown, message: RegExp, what = ''): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PwsyncError, `${what}: expected a PwsyncError, got ${String(e)}`);
    assert.equal(e.eventId, 6946, what);
    assert.equal(e.retryable, false, what);
    assert.match(e.message, message, what);
    return true;
  });
}

/** The envelope with one header string replaced (lengths adjusted), the rest byte for byte. */
function relabel(envelope: Buffer, field: (typeof FIELDS)[number], value: string): Buffer {
  const { headerEnd } = parseHeader(envelope);
  const parts: Buffer[] = [envelope.subarray(0, 47)];
  let at = 47;
  for (const f of FIELDS) {
    const len = envelope.readUInt16BE(at);
    const bytes = f === field ? Buffer.from(value, 'utf8') : envelope.subarray(at + 2, at + 2 + len);
    const prefix = Buffer.alloc(2);
    prefix.writeUInt16BE(bytes.length);
    parts.push(prefix, bytes);
    at += 2 + len;
  }
  assert.equal(at, headerEnd);
  return Buffer.concat([...parts, envelope.subarray(headerEnd)]);
}

function flipped(envelope: Buffer, at: number): Buffer {
  const copy = Buffer.from(envelope);
  copy[at] = copy[at]! ^ 0x01;
  return copy;
}

test('the committed vectors are what generate.ts builds', () => {
  assert.deepEqual(VECTORS, buildVectors());
  assert.ok(VECTORS.vectors.length >= 6);
});

test('each vector reproduces byte for byte from the README alone, with the same intermediates', () => {
  for (const v of VECTORS.vectors) {
    const { envelope, shared, aesKey } = sealFromReadme(v);
    assert.equal(shared.toString('hex'), v.intermediate.sharedSecretX, v.name);
    assert.equal(aesKey.toString('hex'), v.intermediate.aesKey, v.name);
    assert.equal(envelope.toString('hex'), v.envelope, v.name);
    assert.ok(v.envelope.startsWith(v.intermediate.aad), v.name);
  }
});

test('each vector reproduces through seal() and opens to its password', () => {
  for (const v of VECTORS.vectors) {
    const key = keyFromVector(v);
    const sealed = seal(key, bindingOf(v), Secret.adopt(hex(v.password)), {
      ephemeralPrivate: hex(v.ephemeralPrivateScalar), nonce: hex(v.nonce),
    });
    assert.equal(sealed.toString('hex'), v.envelope, v.name);
    const { header, password } = open(hex(v.envelope), keyringOf([key]));
    assert.equal(bindingMismatch(header, bindingOf(v)), undefined, v.name);
    password.use((clear) => assert.equal(clear.toString('hex'), v.password, v.name));
  }
});

test('the vectors cover the cases they promise', () => {
  const byName = new Map(VECTORS.vectors.map((v) => [v.name, v]));
  assert.equal(Buffer.byteLength(byName.get('max-length-dn')!.binding.dn), 4096);
  assert.equal(hex(byName.get('long-password')!.password).toString('utf8').length, 256);
  assert.match(byName.get('non-ascii')!.binding.dn, /é|Ç|€|£/);
  const empty = byName.get('empty-optional-fields')!.binding;
  assert.deepEqual([empty.objectGuid, empty.objectSid, empty.upn, empty.dn, empty.sourceHost], ['', '', '', '', '']);
});

test('a random seal opens to the same password and header, and differs each time', () => {
  const key = newKey();
  const b = binding();
  const pw = testPassword('round-trip');
  const first = seal(key, b, Secret.adopt(Buffer.from(pw)));
  const second = seal(key, b, Secret.adopt(Buffer.from(pw)));
  assert.notDeepEqual(first, second);
  for (const env of [first, second]) {
    const { header, password } = open(env, keyringOf([key]));
    assert.equal(bindingMismatch(header, b), undefined);
    assert.deepEqual(header.keyId, key.keyId);
    password.use((clear) => assert.deepEqual(clear, pw));
  }
});

test('an empty password seals and opens (zero-length ciphertext)', () => {
  const key = newKey();
  const { password } = open(seal(key, binding(), Secret.adopt(Buffer.alloc(0))), keyringOf([key]));
  assert.equal(password.length, 0);
});

test('a retired key still in the keyring opens what was sealed for it', () => {
  const retired = newKey();
  const env = seal(retired, binding(), Secret.adopt(testPassword('rotation')));
  const { password } = open(env, keyringOf([newKey(), retired]));
  password.use((clear) => assert.deepEqual(clear, testPassword('rotation')));
});

test('tampering with any region fails with a 6946 error that says what', () => {
  const key = newKey();
  const ring = keyringOf([key]);
  const env = seal(key, binding(), Secret.adopt(testPassword('tamper')));
  const { headerEnd } = parseHeader(env);
  const auth = /failed authentication/;
  const cases: Array<[string, number, RegExp]> = [
    ['magic', 0, /bad magic/],
    ['key id', 7, /sealed for key id/],
    ['change id', 23, auth],
    ['change time', 46, auth],
    ['domain', 49, auth],
    ['sAMAccountName', 49 + 'example.test'.length + 2, auth],
    ['source host', headerEnd - 1, auth],
    ['ephemeral key', headerEnd + 10, /invalid ephemeral public key|failed authentication/],
    ['nonce', headerEnd + 65, auth],
    ['ciphertext', headerEnd + 65 + 12, auth],
    ['tag', env.length - 1, auth],
  ];
  for (const [region, at, message] of cases) {
    refused(() => open(flipped(env, at), ring), message, region);
  }
  assert.doesNotThrow(() => open(env, ring));
});

test('an ephemeral key that is not on the curve is named as such', () => {
  const key = newKey();
  const env = seal(key, binding(), Secret.adopt(testPassword('point')));
  const { headerEnd } = parseHeader(env);
  const bad = Buffer.from(env);
  bad.fill(0x11, headerEnd + 1, headerEnd + 65);
  refused(() => open(bad, keyringOf([key])), /invalid ephemeral public key/);
});

test('a wrong key id names both the envelope\'s key and the keys held', () => {
  const sealedFor = newKey();
  const held = newKey();
  const env = seal(sealedFor, binding(), Secret.adopt(testPassword('wrong-key')));
  refused(() => open(env, keyringOf([held])), new RegExp(`${sealedFor.keyId.toString('hex')}.*${held.keyId.toString('hex')}`));
  refused(() => open(env, keyringOf([])), /no keys/);
});

test('an envelope re-labelled for another account fails authentication', () => {
  const key = newKey();
  const env = seal(key, binding(), Secret.adopt(testPassword('relabel')));
  for (const [field, value] of [['samAccountName', 'mallory'], ['samAccountName', 'jdoX'], ['dn', 'CN=Admin,DC=example,DC=test'], ['domain', 'other.test']] as const) {
    const moved = relabel(env, field, value);
    assert.equal((parseHeader(moved).header as unknown as Record<string, string>)[field], value);
    refused(() => open(moved, keyringOf([key])), /failed authentication/);
  }
});

test('unknown version, suite and password encoding are refused by number', () => {
  const key = newKey();
  const env = seal(key, binding(), Secret.adopt(testPassword('suite')));
  const set = (at: number, value: number) => {
    const copy = Buffer.from(env);
    copy[at] = value;
    return copy;
  };
  refused(() => open(set(4, 2), keyringOf([key])), /version 2/);
  refused(() => open(set(5, 2), keyringOf([key])), /suite 2; this build accepts only suite 1/);
  refused(() => open(set(5, 0), keyringOf([key])), /suite 0/);
  refused(() => open(set(6, 2), keyringOf([key])), /encoding 2/);
});

test('every truncation of an envelope is refused', () => {
  const key = newKey();
  const env = seal(key, binding({ objectGuid: '', objectSid: '', upn: '', dn: '', sourceHost: '' }), Secret.adopt(testPassword('cut')));
  for (let length = 0; length < env.length; length++) {
    refused(() => open(env.subarray(0, length), keyringOf([key])), /truncated|bad length|failed authentication/, `${length} bytes`);
  }
});

test('invalid UTF-8 and an impossible change time in the header are refused', () => {
  const key = newKey();
  const env = seal(key, binding(), Secret.adopt(testPassword('utf8')));
  const badUtf8 = Buffer.from(env);
  badUtf8[49] = 0xff;
  refused(() => parseHeader(badUtf8), /invalid UTF-8 in field domain/);
  const badTime = Buffer.from(env);
  badTime[39] = 0xff;
  refused(() => parseHeader(badTime), /impossible change time/);
});

test('bindingMismatch names the field that differs', () => {
  const b = binding();
  assert.equal(bindingMismatch(b, { ...b, changeId: Buffer.from(b.changeId) }), undefined);
  assert.equal(bindingMismatch(b, { ...b, changeId: randomBytes(16) }), 'change id');
  assert.equal(bindingMismatch(b, { ...b, changeTime: b.changeTime + 1 }), 'change time');
  for (const f of FIELDS) assert.equal(bindingMismatch(b, { ...b, [f]: `${b[f]}x` }), f);
});

test('seal refuses a binding or nonce that does not fit the format', () => {
  const key = newKey();
  const pw = () => Secret.adopt(testPassword('fit'));
  assert.throws(() => seal(key, binding({ changeId: randomBytes(15) }), pw()), /changeId must be 16 bytes/);
  assert.throws(() => seal(key, binding({ changeTime: -1 }), pw()), /changeTime/);
  assert.throws(() => seal(key, binding({ dn: 'x'.repeat(4097) }), pw()), /dn is longer than 4096 bytes/);
  assert.throws(() => seal(key, binding(), pw(), { nonce: randomBytes(16) }), /nonce must be 12 bytes/);
});
