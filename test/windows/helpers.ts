import { constants, createCipheriv, createHash, generateKeyPairSync, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { seal, type Binding, type RecipientKey } from '../../core/envelope.ts';
import { Secret } from '../../core/secret.ts';
import { encodeFrame } from '../../notifier/windows/frame.ts';

/**
 * What the filter DLL produces, made in Node: suite-1 envelopes through core/envelope.ts `seal`,
 * test-only suite-241 envelopes built here from the layout in iface7 (so that the hub's opener is
 * checked against an independent writer), and handoff frames.
 */
export const FIELDS = ['domain', 'samAccountName', 'objectGuid', 'objectSid', 'upn', 'dn', 'sourceHost'] as const;

export function dllBinding(over: Partial<Binding> = {}): Binding {
  return {
    changeId: randomBytes(16), changeTime: Date.now(), domain: 'corp.example.com', samAccountName: 'alice',
    objectGuid: '', objectSid: '', upn: '', dn: '', sourceHost: 'dc1.corp.example.com', ...over,
  };
}

export function rsaTestKey(): { privateKey: KeyObject; publicKey: KeyObject; privatePem: string; publicPem: string; keyId: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    privateKey, publicKey,
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest().subarray(0, 16),
  };
}

/** A suite-241 envelope: header as suite 1, then u16 len | RSA PKCS#1 v1.5(CEK) | nonce | ct | tag. */
export function sealTestSuite(publicKey: KeyObject, b: Binding, password: Buffer): Buffer {
  const keyId = createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest().subarray(0, 16);
  const time = Buffer.alloc(8);
  time.writeBigUInt64BE(BigInt(b.changeTime));
  const strings = FIELDS.map((f) => {
    const s = Buffer.from(b[f], 'utf8');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(s.length);
    return Buffer.concat([len, s]);
  });
  const header = Buffer.concat([Buffer.from('PWSY'), Buffer.from([1, 0xf1, 1]), keyId, b.changeId, time, ...strings]);
  const cek = randomBytes(32);
  const wrapped = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, cek);
  const kemLen = Buffer.alloc(2);
  kemLen.writeUInt16BE(wrapped.length);
  const nonce = randomBytes(12);
  const aad = Buffer.concat([header, kemLen, wrapped, nonce]);
  const c = createCipheriv('aes-256-gcm', cek, nonce);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(password), c.final()]);
  return Buffer.concat([aad, ct, c.getAuthTag()]);
}

export function sealP256(recipient: RecipientKey, b: Binding, password: Buffer): Buffer {
  return seal(recipient, b, Secret.adopt(Buffer.from(password)));
}

export function frameOf(b: Binding, entries: Array<{ target: string; envelope: Buffer }>): Buffer {
  return encodeFrame(b.changeId, entries);
}
