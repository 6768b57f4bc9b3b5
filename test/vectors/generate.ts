/**
 * Builds the published envelope test vectors (envelope-v1.json) from fixed inputs, so the output is
 * the same on every run. Run `npx tsx test/vectors/generate.ts` after a deliberate format change and
 * commit the JSON; test/core/envelope.test.ts fails while the committed file and this script differ.
 */
import { createECDH, createHash, createPublicKey, hkdfSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { keyIdOf, seal, type Binding } from '../../core/envelope.ts';
import { Secret } from '../../core/secret.ts';
import { testPassword } from '../lib/passwords.ts';

export interface VectorBinding extends Omit<Binding, 'changeId'> {
  changeId: string;
}

export interface Vector {
  name: string;
  comment: string;
  recipientPrivateScalar: string;
  recipientPublicPoint: string;
  recipientSpki: string;
  keyId: string;
  ephemeralPrivateScalar: string;
  ephemeralPublicPoint: string;
  nonce: string;
  binding: VectorBinding;
  password: string;
  intermediate: { sharedSecretX: string; hkdfSalt: string; hkdfInfo: string; aesKey: string; aad: string };
  envelope: string;
}

export interface VectorFile {
  format: string;
  readme: string;
  vectors: Vector[];
}

const SALT = Buffer.from('pwsync/v1/ecdh-p256', 'ascii');

/** A fixed, valid P-256 private scalar derived from a label (setPrivateKey refuses invalid ones). */
function scalar(label: string): Buffer {
  const d = createHash('sha256').update(`pwsync envelope v1 test vector: ${label}`).digest();
  createECDH('prime256v1').setPrivateKey(d);
  return d;
}

function fixed(label: string, length: number): Buffer {
  return createHash('sha256').update(`pwsync envelope v1 test vector: ${label}`).digest().subarray(0, length);
}

function point(d: Buffer): Buffer {
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(d);
  return ecdh.getPublicKey();
}

function publicKeyOf(p: Buffer) {
  return createPublicKey({
    key: { kty: 'EC', crv: 'P-256', x: p.subarray(1, 33).toString('base64url'), y: p.subarray(33).toString('base64url') },
    format: 'jwk',
  });
}

/** A DN of exactly `bytes` UTF-8 bytes (the envelope's per-field limit), with multi-byte characters. */
function dnOfLength(bytes: number): string {
  let dn = 'CN=Çédric Lefèvre-Bénard';
  for (let i = 1; Buffer.byteLength(dn) < bytes - 40; i++) dn += `,OU=Département ${i} €`;
  dn += ',DC=example,DC=test';
  return dn + 'x'.repeat(bytes - Buffer.byteLength(dn));
}

interface Case {
  name: string;
  comment: string;
  binding: Omit<Binding, 'changeId'>;
  password: Buffer;
}

const account = {
  domain: 'example.test',
  samAccountName: 'jdoe',
  objectGuid: '6f1a2b3c-4d5e-4f60-8172-93a4b5c6d7e8',
  objectSid: 'S-1-5-21-1004336348-1177238915-682003330-1105',
  upn: 'jdoe@example.test',
  dn: 'CN=John Doe,OU=Staff,DC=example,DC=test',
  sourceHost: 'dc1.example.test',
};

const CASES: Case[] = [
  {
    name: 'ascii-account',
    comment: 'every account field ASCII; the password carries the test prefix (non-ASCII on purpose)',
    binding: { ...account, changeTime: 1767225600123 },
    password: testPassword('Ascii-Tail-1'),
  },
  {
    name: 'non-ascii',
    comment: 'é € £ ç in the account fields and the password: UTF-8 throughout, lengths in bytes',
    binding: {
      domain: 'exemple.test', samAccountName: 'renée.çelik', objectGuid: '0b8c7d6e-5f40-4a31-9c2b-1d0e9f8a7b6c',
      objectSid: 'S-1-5-21-3623811015-3361044348-30300820-1013', upn: 'renée.çelik@exemple.test',
      dn: 'CN=Renée Çelik (€£),OU=Ventes,DC=exemple,DC=test', sourceHost: 'dc2.exemple.test',
      changeTime: 1767225601000,
    },
    password: testPassword('é€£ç-ünïcødé'),
  },
  {
    name: 'empty-optional-fields',
    comment: 'only domain and sAMAccountName known: the other fields are zero-length strings (length 0x0000)',
    binding: { ...account, objectGuid: '', objectSid: '', upn: '', dn: '', sourceHost: '', changeTime: 1767225602000 },
    password: testPassword('Empty-Fields'),
  },
  {
    name: 'max-length-dn',
    comment: 'a DN of exactly 4096 UTF-8 bytes, the largest field the format accepts',
    binding: { ...account, dn: dnOfLength(4096), changeTime: 1767225603000 },
    password: testPassword('Long-DN'),
  },
  {
    name: 'long-password',
    comment: 'a 256-character password (the Windows maximum) mixing 1-, 2- and 3-byte UTF-8 characters',
    binding: { ...account, changeTime: 1767225604000 },
    password: testPassword('aé€'.repeat(83)),
  },
  {
    name: 'supplementary-plane',
    comment: 'characters outside the BMP: a UTF-16 surrogate pair in Windows becomes one 4-byte UTF-8 sequence',
    binding: { ...account, changeTime: 1767225605000 },
    password: testPassword('😀𝄞-pair'),
  },
];

export function buildVectors(): VectorFile {
  const vectors = CASES.map((c): Vector => {
    const recipientD = scalar(`${c.name} recipient`);
    const recipientP = point(recipientD);
    const recipientKey = publicKeyOf(recipientP);
    const keyId = keyIdOf(recipientKey);
    const ephemeralD = scalar(`${c.name} ephemeral`);
    const ephemeralP = point(ephemeralD);
    const nonce = fixed(`${c.name} nonce`, 12);
    const changeId = fixed(`${c.name} change id`, 16);
    const b = c.binding;
    const binding: Binding = { ...b, changeId };
    const passwordHex = c.password.toString('hex');
    const envelope = seal({ keyId, publicPoint: recipientP }, binding, Secret.adopt(Buffer.from(c.password)), {
      ephemeralPrivate: ephemeralD, nonce,
    });
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(ephemeralD);
    const shared = ecdh.computeSecret(recipientP);
    const info = Buffer.concat([ephemeralP, recipientP]);
    const aesKey = Buffer.from(hkdfSync('sha256', shared, SALT, info, 32));
    const aadLength = envelope.length - c.password.length - 16;
    return {
      name: c.name,
      comment: c.comment,
      recipientPrivateScalar: recipientD.toString('hex'),
      recipientPublicPoint: recipientP.toString('hex'),
      recipientSpki: recipientKey.export({ type: 'spki', format: 'der' }).toString('hex'),
      keyId: keyId.toString('hex'),
      ephemeralPrivateScalar: ephemeralD.toString('hex'),
      ephemeralPublicPoint: ephemeralP.toString('hex'),
      nonce: nonce.toString('hex'),
      binding: {
        changeId: changeId.toString('hex'), changeTime: b.changeTime, domain: b.domain, samAccountName: b.samAccountName,
        objectGuid: b.objectGuid, objectSid: b.objectSid, upn: b.upn, dn: b.dn, sourceHost: b.sourceHost,
      },
      password: passwordHex,
      intermediate: {
        sharedSecretX: shared.toString('hex'),
        hkdfSalt: SALT.toString('hex'),
        hkdfInfo: info.toString('hex'),
        aesKey: aesKey.toString('hex'),
        aad: envelope.subarray(0, aadLength).toString('hex'),
      },
      envelope: envelope.toString('hex'),
    };
  });
  return {
    format: 'pwsync sealed envelope, version 1, suite 1 (ECDH-P256 + HKDF-SHA256 + AES-256-GCM), password encoding 1 (UTF-8)',
    readme: 'test/vectors/README.md: how to reproduce these with Windows CNG or any other implementation',
    vectors,
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = fileURLToPath(new URL('./envelope-v1.json', import.meta.url));
  writeFileSync(out, `${JSON.stringify(buildVectors(), null, 2)}\n`);
  process.stdout.write(`wrote ${out}\n`);
}
