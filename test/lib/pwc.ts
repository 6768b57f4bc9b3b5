/**
 * The handoff frame from the filter DLL (iface7.md), read on the test side, and an opener for the
 * test-only suite 0xF1 (RSA PKCS#1 v1.5 key wrap), which the hub itself refuses.
 *   "PWC1" | changeId[16] | u16 n | n × (u16 nameLen | name UTF-8 | u32 envLen | envelope)
 */
import { constants, createDecipheriv, privateDecrypt, type KeyObject } from 'node:crypto';
import { parseHeader, type EnvelopeHeader } from '../../core/envelope.ts';

export const TEST_SUITE = 0xf1;

export interface Frame {
  changeId: Buffer;
  envelopes: Array<{ target: string; envelope: Buffer }>;
}

export function parseFrame(b: Buffer): Frame {
  if (b.length < 22 || b.subarray(0, 4).toString('latin1') !== 'PWC1') throw new Error('not a PWC1 frame');
  const changeId = Buffer.from(b.subarray(4, 20));
  const n = b.readUInt16BE(20);
  const envelopes: Frame['envelopes'] = [];
  let at = 22;
  for (let i = 0; i < n; i++) {
    const nameLen = b.readUInt16BE(at);
    const target = b.subarray(at + 2, at + 2 + nameLen).toString('utf8');
    at += 2 + nameLen;
    const envLen = b.readUInt32BE(at);
    if (at + 4 + envLen > b.length) throw new Error('frame truncated');
    envelopes.push({ target, envelope: Buffer.from(b.subarray(at + 4, at + 4 + envLen)) });
    at += 4 + envLen;
  }
  if (at !== b.length) throw new Error(`frame has ${b.length - at} bytes after its last envelope`);
  return { changeId, envelopes };
}

/** Opens a suite-0xF1 envelope: the header layout is suite 1's, read by core/envelope.ts. */
export function openTestEnvelope(env: Buffer, key: KeyObject): { header: EnvelopeHeader; password: Buffer } {
  if (env[5] !== TEST_SUITE) throw new Error(`suite ${env[5]} is not the test suite`);
  const asSuite1 = Buffer.from(env);
  asSuite1[5] = 1;
  const { header, headerEnd } = parseHeader(asSuite1);
  const kemLen = env.readUInt16BE(headerEnd);
  const kem = env.subarray(headerEnd + 2, headerEnd + 2 + kemLen);
  const nonceAt = headerEnd + 2 + kemLen;
  const ctAt = nonceAt + 12;
  // Node >= 20.11 refuses PKCS#1 v1.5 decryption: unpad by hand (test keys only).
  const em = privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, kem);
  const sep = em.indexOf(0, 2);
  if (em[0] !== 0 || em[1] !== 2 || sep < 10 || em.length - sep - 1 !== 32) throw new Error('bad PKCS#1 v1.5 padding');
  const cek = em.subarray(sep + 1);
  const d = createDecipheriv('aes-256-gcm', cek, env.subarray(nonceAt, ctAt));
  d.setAAD(env.subarray(0, ctAt));
  d.setAuthTag(env.subarray(env.length - 16));
  const password = Buffer.concat([d.update(env.subarray(ctAt, env.length - 16)), d.final()]);
  cek.fill(0);
  return { header: { ...header, suite: TEST_SUITE }, password };
}
