// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

/**
 * TLS material for a hub: a private CA and a server certificate it signed, ECDSA P-256. The CA's
 * private key is not returned (nor kept): nothing can be issued under this CA later, so there is
 * no CA key to guard. Reissuing means generating again and giving notifiers the new ca.pem.
 */
export interface TlsMaterial {
  caCertPem: string;
  certPem: string;
  keyPem: string;
}

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
/** Backdated so a peer whose clock is a little behind still accepts a fresh certificate. */
const SKEW_MS = 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // a positive INTEGER without a leading zero byte
  return bytes.toString('hex');
}

function generalName(host: string): x509.JsonGeneralName {
  return { type: isIP(host) ? 'ip' : 'dns', value: host };
}

/** Escapes a host for use inside a DN string (RFC 4514 specials). */
function dnValue(s: string): string {
  return s.replace(/[\\,+"<>;=#]/g, (c) => `\\${c}`);
}

function withNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

export async function generateTlsMaterial(opts: { hosts: string[]; days?: number }): Promise<TlsMaterial> {
  const hosts = [...new Set(opts.hosts.map((h) => h.trim()).filter((h) => h.length > 0))];
  if (hosts.length === 0) throw new Error('at least one host name or IP address is needed for the certificate');
  const days = opts.days ?? 825;
  if (!Number.isInteger(days) || days < 1) throw new Error(`days must be a positive whole number, not ${days}`);
  const crypto = webcrypto;
  const notBefore = new Date(Date.now() - SKEW_MS);
  const notAfter = new Date(Date.now() + days * DAY_MS);

  const caKeys = await crypto.subtle.generateKey(EC, true, ['sign', 'verify']);
  const caName = `CN=pwsync CA ${randomBytes(4).toString('hex')}`;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(), name: caName, notBefore, notAfter, keys: caKeys, signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
    ],
  }, crypto);

  const hubKeys = await crypto.subtle.generateKey(EC, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(), subject: `CN=${dnValue(hosts[0]!)}`, issuer: ca.subject,
    notBefore, notAfter, publicKey: hubKeys.publicKey, signingKey: caKeys.privateKey, signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(hosts.map(generalName)),
      await x509.SubjectKeyIdentifierExtension.create(hubKeys.publicKey, false, crypto),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
    ],
  }, crypto);

  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', hubKeys.privateKey));
  const keyPem = x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
  pkcs8.fill(0);
  return { caCertPem: withNewline(ca.toString('pem')), certPem: withNewline(cert.toString('pem')), keyPem: withNewline(keyPem) };
}

/**
 * A throwaway self-signed certificate and its P-256 key, for a TLS client that must load an
 * identity to start (oracledb thin mode, connectors/sql/oracle.ts). Nothing keeps the key.
 */
export async function generateClientIdentity(commonName: string): Promise<{ certPem: string; keyPem: string }> {
  const crypto = webcrypto;
  const keys = await crypto.subtle.generateKey(EC, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(), name: `CN=${dnValue(commonName)} ${randomBytes(4).toString('hex')}`,
    notBefore: new Date(Date.now() - SKEW_MS), notAfter: new Date(Date.now() + 3650 * DAY_MS), keys, signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
    ],
  }, crypto);
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
  pkcs8.fill(0);
  return { certPem: withNewline(cert.toString('pem')), keyPem: withNewline(keyPem) };
}
