import {
  constants as cryptoConstants, createCipheriv, createDecipheriv, createECDH, createHash, createPrivateKey, createPublicKey,
  hkdfSync, privateDecrypt, randomBytes, type KeyObject,
} from 'node:crypto';
import { PwsyncError } from './errors.ts';
import { Secret } from './secret.ts';

/**
 * The sealed envelope (ARCHITECTURE.md): the one form a password travels in, from the DC hook to
 * the worker that applies it. Suite 1 uses only what Windows CNG offers (ECDH P-256, HMAC-SHA256
 * for HKDF, AES-256-GCM) so a filter DLL can produce the same bytes. Everything before the
 * ciphertext is the associated data: a payload cannot be moved to another account, change or key.
 *
 *   "PWSY" | version u8 | suite u8 | pwEnc u8 | keyId[16] | changeId[16] | changeTime u64
 *   | 7 × (u16 length | UTF-8): domain, sAMAccountName, objectGUID, objectSID, UPN, DN, source host
 *   | ephemeral public key[65] | nonce[12] | ciphertext | tag[16]
 */
export const MAGIC = Buffer.from('PWSY', 'ascii');
export const VERSION = 1;
export const SUITE_P256_HKDF_AESGCM = 1;
export const PW_UTF8 = 1;
/**
 * Test-only suite 241 (0xF1): the same layout and associated data as suite 1, but the 65-byte
 * ephemeral point is replaced by `u16 length | RSA PKCS#1 v1.5 encryption of a random 32-byte
 * AES key` (no HKDF). It exists because Wine's CNG cannot derive an ECDH secret, so the filter
 * DLL's end-to-end tests under Wine need another key wrap. PKCS#1 v1.5 encryption is not safe
 * to offer an attacker (padding oracles): it is parsed and opened only by a process started with
 * PWSYNC_TEST_ONLY_SUITES=1, never by default, and the production DLL refuses it too.
 */
export const SUITE_TEST_RSA_PKCS1 = 0xf1;
export const TEST_SUITES_ENV = 'PWSYNC_TEST_ONLY_SUITES';
/** Read once: what the process was started with, not what some code sets later. */
const TEST_SUITES_AT_START = process.env[TEST_SUITES_ENV] === '1';
export function testSuitesEnabled(): boolean {
  return TEST_SUITES_AT_START;
}
const CEK = 32;
const SALT = Buffer.from('pwsync/v1/ecdh-p256', 'ascii');
const FIXED_HEAD = 4 + 3 + 16 + 16 + 8;
const POINT = 65;
const NONCE = 12;
const TAG = 16;
/** Longest account field, in UTF-8 bytes: room for deep AD distinguished names. */
export const MAX_FIELD_BYTES = 4096;
const MAX_FIELD = MAX_FIELD_BYTES;
/** Strict: an invalid byte sequence is refused rather than read as U+FFFD, so the string the hub
 *  compares is exactly the authenticated bytes (two different headers never read the same). */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Who and what the sealed password belongs to. For a hub's set-operation envelope the same
 *  fields carry the operation: changeId = operation id, domain = connector name,
 *  samAccountName = target object id, sourceHost = the hub that sealed it. */
export interface Binding {
  changeId: Buffer;
  changeTime: number;
  domain: string;
  samAccountName: string;
  objectGuid: string;
  objectSid: string;
  upn: string;
  dn: string;
  sourceHost: string;
}

const FIELDS = ['domain', 'samAccountName', 'objectGuid', 'objectSid', 'upn', 'dn', 'sourceHost'] as const;

export interface EnvelopeHeader extends Binding {
  version: number;
  suite: number;
  pwEnc: number;
  keyId: Buffer;
}

/** A P-256 recipient: the public half everyone may hold, the key id derived from it. */
export interface RecipientKey {
  keyId: Buffer;
  publicPoint: Buffer;
}

export interface PrivateRecipientKey extends RecipientKey {
  privateScalar: Buffer;
  /** Test-only suite 241: the RSA private key (publicPoint and privateScalar are then empty). */
  testRsaKey?: KeyObject;
}

function envelopeError(message: string, cause?: unknown): PwsyncError {
  return new PwsyncError(6946, message, { cause });
}

export function keyIdOf(publicKey: KeyObject): Buffer {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest().subarray(0, 16);
}

function pointOf(publicKey: KeyObject): Buffer {
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.crv !== 'P-256' || !jwk.x || !jwk.y) {
    throw new PwsyncError(6946, 'the key is not a P-256 (prime256v1) key: generate one with `pwsync keys generate`');
  }
  return Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]);
}

export function recipientFromPem(pem: string | Buffer): RecipientKey {
  const key = createPublicKey(pem);
  return { keyId: keyIdOf(key), publicPoint: pointOf(key) };
}

export function privateRecipientFromPem(pem: string | Buffer): PrivateRecipientKey {
  const priv = createPrivateKey(pem);
  const pub = createPublicKey(priv);
  const jwk = priv.export({ format: 'jwk' });
  if (!jwk.d) throw new PwsyncError(6946, 'the private key file holds no P-256 private key');
  return { keyId: keyIdOf(pub), publicPoint: pointOf(pub), privateScalar: Buffer.from(jwk.d, 'base64url') };
}

/**
 * A hub key for the test-only suite 241: an RSA private key, accepted only in a process started
 * with PWSYNC_TEST_ONLY_SUITES=1. Its key id is that of the RSA public key (SHA-256 of the SPKI).
 */
export function testPrivateRecipientFromPem(pem: string | Buffer): PrivateRecipientKey {
  const priv = createPrivateKey(pem);
  if (priv.asymmetricKeyType !== 'rsa') throw new PwsyncError(6946, 'the key is neither a P-256 key nor an RSA key');
  if (!testSuitesEnabled()) {
    throw new PwsyncError(6946, `the key is an RSA key: RSA keys open only the test-only suite ${SUITE_TEST_RSA_PKCS1}, accepted only by a process started with ${TEST_SUITES_ENV}=1 (never in production); use a P-256 key from \`pwsync keys generate\``);
  }
  return { keyId: keyIdOf(createPublicKey(priv)), publicPoint: Buffer.alloc(0), privateScalar: Buffer.alloc(0), testRsaKey: priv };
}

/** The public half of a test-only suite-241 key: what a notifier target names when it takes such envelopes. */
export function testRecipientFromPem(pem: string | Buffer): RecipientKey {
  const pub = createPublicKey(pem);
  if (pub.asymmetricKeyType !== 'rsa') throw new PwsyncError(6946, 'the key is neither a P-256 key nor an RSA key');
  if (!testSuitesEnabled()) {
    throw new PwsyncError(6946, `the key is an RSA key: RSA keys serve only the test-only suite ${SUITE_TEST_RSA_PKCS1}, accepted only by a process started with ${TEST_SUITES_ENV}=1 (never in production); use a P-256 key from \`pwsync keys generate\``);
  }
  return { keyId: keyIdOf(pub), publicPoint: Buffer.alloc(0) };
}

function encodeHeader(b: Binding, keyId: Buffer): Buffer {
  if (b.changeId.length !== 16) throw new Error('changeId must be 16 bytes');
  if (!Number.isSafeInteger(b.changeTime) || b.changeTime < 0) throw new Error('changeTime must be ms since the epoch');
  const head = Buffer.alloc(FIXED_HEAD);
  MAGIC.copy(head, 0);
  head[4] = VERSION;
  head[5] = SUITE_P256_HKDF_AESGCM;
  head[6] = PW_UTF8;
  keyId.copy(head, 7);
  b.changeId.copy(head, 23);
  head.writeBigUInt64BE(BigInt(b.changeTime), 39);
  const parts: Buffer[] = [head];
  for (const f of FIELDS) {
    const s = Buffer.from(b[f], 'utf8');
    if (s.length > MAX_FIELD) throw new Error(`${f} is longer than ${MAX_FIELD} bytes`);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(s.length);
    parts.push(len, s);
  }
  return Buffer.concat(parts);
}

/** Reads the header without opening anything: what the hub checks against the message it came in. */
export function parseHeader(envelope: Buffer): { header: EnvelopeHeader; headerEnd: number } {
  if (envelope.length < FIXED_HEAD + 14 + POINT + NONCE + TAG) throw envelopeError('sealed password is truncated');
  if (!envelope.subarray(0, 4).equals(MAGIC)) throw envelopeError('sealed password is not a pwsync envelope (bad magic)');
  const version = envelope[4]!;
  const suite = envelope[5]!;
  const pwEnc = envelope[6]!;
  if (version !== VERSION) throw envelopeError(`sealed password has envelope version ${version}; this build reads version ${VERSION}`);
  if (suite === SUITE_TEST_RSA_PKCS1 && !testSuitesEnabled()) {
    throw envelopeError(`sealed password uses the test-only suite ${suite} (RSA PKCS#1 v1.5 key wrap): refused; only a process started with ${TEST_SUITES_ENV}=1 reads it, and no production DC may produce it`);
  }
  if (suite !== SUITE_P256_HKDF_AESGCM && suite !== SUITE_TEST_RSA_PKCS1) throw envelopeError(`sealed password uses suite ${suite}; this build accepts only suite 1 (ECDH-P256 + HKDF-SHA256 + AES-256-GCM)`);
  if (pwEnc !== PW_UTF8) throw envelopeError(`sealed password has encoding ${pwEnc}; only 1 (UTF-8) is defined`);
  let at = FIXED_HEAD;
  const strings: string[] = [];
  for (const f of FIELDS) {
    if (at + 2 > envelope.length) throw envelopeError(`sealed password is truncated in field ${f}`);
    const len = envelope.readUInt16BE(at);
    at += 2;
    if (len > MAX_FIELD || at + len > envelope.length) throw envelopeError(`sealed password has a bad length for field ${f}`);
    try {
      strings.push(UTF8.decode(envelope.subarray(at, at + len)));
    } catch (e) {
      throw envelopeError(`sealed password has invalid UTF-8 in field ${f}`, e);
    }
    at += len;
  }
  if (suite === SUITE_TEST_RSA_PKCS1) {
    const kemLen = at + 2 <= envelope.length ? envelope.readUInt16BE(at) : Infinity;
    if (at + 2 + kemLen + NONCE + TAG > envelope.length) throw envelopeError('sealed password is truncated after its header');
  } else if (at + POINT + NONCE + TAG > envelope.length) throw envelopeError('sealed password is truncated after its header');
  const changeTime = envelope.readBigUInt64BE(39);
  if (changeTime > BigInt(Number.MAX_SAFE_INTEGER)) throw envelopeError(`sealed password has an impossible change time (${changeTime} ms)`);
  const [domain, samAccountName, objectGuid, objectSid, upn, dn, sourceHost] = strings as [string, string, string, string, string, string, string];
  return {
    header: {
      version, suite, pwEnc,
      keyId: Buffer.from(envelope.subarray(7, 23)),
      changeId: Buffer.from(envelope.subarray(23, 39)),
      changeTime: Number(changeTime),
      domain, samAccountName, objectGuid, objectSid, upn, dn, sourceHost,
    },
    headerEnd: at,
  };
}

function deriveKey(shared: Buffer, ephemeralPoint: Buffer, recipientPoint: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, SALT, Buffer.concat([ephemeralPoint, recipientPoint]), 32));
}

export interface SealOptions {
  /** Test vectors only: a fixed ephemeral private scalar and nonce make the output deterministic. */
  ephemeralPrivate?: Buffer;
  nonce?: Buffer;
}

export function seal(recipient: RecipientKey, binding: Binding, password: Secret, opts: SealOptions = {}): Buffer {
  if (recipient.publicPoint.length !== POINT) {
    throw new PwsyncError(6946, `key id ${recipient.keyId.toString('hex')} is not a P-256 key (a test-only RSA key?): only the filter DLL's test build seals for it; give this target a P-256 public key`);
  }
  const header = encodeHeader(binding, recipient.keyId);
  const nonce = opts.nonce ?? randomBytes(NONCE);
  if (nonce.length !== NONCE) throw new Error(`nonce must be ${NONCE} bytes`);
  const ecdh = createECDH('prime256v1');
  if (opts.ephemeralPrivate) ecdh.setPrivateKey(opts.ephemeralPrivate);
  else ecdh.generateKeys();
  const ephemeralPoint = ecdh.getPublicKey();
  const shared = ecdh.computeSecret(recipient.publicPoint);
  const key = deriveKey(shared, ephemeralPoint, recipient.publicPoint);
  shared.fill(0);
  const aad = Buffer.concat([header, ephemeralPoint, nonce]);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  let ct: Buffer;
  try {
    ct = password.use((clear) => Buffer.concat([cipher.update(clear), cipher.final()]));
  } finally {
    key.fill(0);
  }
  return Buffer.concat([aad, ct, cipher.getAuthTag()]);
}

export interface Keyring {
  /** The keys this process may open with, current and previous (rotation). */
  get(keyId: Buffer): PrivateRecipientKey | undefined;
  ids(): string[];
}

export function keyringOf(keys: PrivateRecipientKey[]): Keyring {
  const byId = new Map(keys.map((k) => [k.keyId.toString('hex'), k]));
  return { get: (id) => byId.get(id.toString('hex')), ids: () => [...byId.keys()] };
}

/** Opens an envelope. Throws a non-retryable 6946 PwsyncError naming what is wrong. */
export function open(envelope: Buffer, keyring: Keyring): { header: EnvelopeHeader; password: Secret } {
  const { header, headerEnd } = parseHeader(envelope);
  const key = keyring.get(header.keyId);
  if (!key) {
    throw envelopeError(`sealed for key id ${header.keyId.toString('hex')}, but this process holds only ${keyring.ids().join(', ') || 'no keys'}: the sender uses a wrong or retired public key`);
  }
  if ((header.suite === SUITE_TEST_RSA_PKCS1) !== (key.testRsaKey !== undefined)) {
    throw envelopeError(`sealed with suite ${header.suite} for key id ${header.keyId.toString('hex')}, which is a ${key.testRsaKey ? 'test-only RSA' : 'P-256'} key: a suite and key that do not belong together`);
  }
  let kemEnd: number;
  let aesKey: Buffer;
  if (key.testRsaKey) {
    kemEnd = headerEnd + 2 + envelope.readUInt16BE(headerEnd);
    aesKey = unwrapTestKey(envelope.subarray(headerEnd + 2, kemEnd), key.testRsaKey);
  } else {
    kemEnd = headerEnd + POINT;
    const ephemeralPoint = envelope.subarray(headerEnd, kemEnd);
    let shared: Buffer;
    try {
      const ecdh = createECDH('prime256v1');
      ecdh.setPrivateKey(key.privateScalar);
      shared = ecdh.computeSecret(ephemeralPoint);
    } catch (e) {
      throw envelopeError('sealed password has an invalid ephemeral public key', e);
    }
    aesKey = deriveKey(shared, ephemeralPoint, key.publicPoint);
    shared.fill(0);
  }
  const nonce = envelope.subarray(kemEnd, kemEnd + NONCE);
  const ctEnd = envelope.length - TAG;
  const aad = envelope.subarray(0, kemEnd + NONCE);
  const decipher = createDecipheriv('aes-256-gcm', aesKey, nonce);
  decipher.setAAD(aad);
  decipher.setAuthTag(envelope.subarray(ctEnd));
  const clear = decipher.update(envelope.subarray(kemEnd + NONCE, ctEnd));
  try {
    decipher.final();
  } catch (e) {
    clear.fill(0);
    throw envelopeError('sealed password failed authentication: it was altered, or its header (account, change id) was changed after sealing', e);
  } finally {
    aesKey.fill(0);
  }
  return { header, password: Secret.adopt(clear) };
}

/**
 * Suite 241's key unwrap. Node (≥ 20.11) refuses PKCS#1 v1.5 private decryption (the Marvin
 * attack), so the block is decrypted raw and the padding `00 02 PS(≥8 non-zero) 00 CEK` checked
 * here, over every byte whatever it holds, with one verdict at the end.
 */
function unwrapTestKey(kem: Buffer, key: KeyObject): Buffer {
  let em: Buffer;
  try {
    em = privateDecrypt({ key, padding: cryptoConstants.RSA_NO_PADDING }, kem);
  } catch (e) {
    throw envelopeError('sealed password (test-only suite) has a key wrap that does not decrypt', e);
  }
  let sep = 0;
  for (let i = 2; i < em.length; i++) {
    const isZero = em[i] === 0 ? 1 : 0;
    sep = sep === 0 && isZero ? i : sep;
  }
  const good = em[0] === 0 && em[1] === 2 && sep >= 10 && em.length - sep - 1 === CEK;
  const cek = Buffer.from(em.subarray(em.length - CEK));
  em.fill(0);
  if (!good) {
    cek.fill(0);
    throw envelopeError('sealed password (test-only suite) has a key wrap with bad padding');
  }
  return cek;
}

/**
 * The first field in which the envelope's header names another change or account than the message
 * around it. Both sides come from strict UTF-8 decoders (parseHeader here; at the hub, the server's
 * pass over the request bytes), so equal strings are equal bytes: what is compared is what was
 * authenticated.
 */
export function bindingMismatch(header: Binding, claimed: Binding): string | undefined {
  if (!header.changeId.equals(claimed.changeId)) return 'change id';
  if (header.changeTime !== claimed.changeTime) return 'change time';
  for (const f of FIELDS) if (header[f] !== claimed[f]) return f;
  return undefined;
}
