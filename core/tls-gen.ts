// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import { isDcName } from './dc-name.ts';

/**
 * TLS material for a hub: a private CA and a server certificate it signed, ECDSA P-256. The CA's
 * private key comes back too, so that the same CA can later issue each domain controller's client
 * certificate (`issueClientCertificate`): whoever holds it can make a notifier the hub believes.
 */
export interface TlsMaterial {
  caCertPem: string;
  caKeyPem: string;
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
  const cert = await leafCertificate({
    subject: hosts[0]!, names: hosts.map(generalName), use: x509.ExtendedKeyUsage.serverAuth, keys: hubKeys,
    issuer: ca.subject, caPublicKey: caKeys.publicKey, caKey: caKeys.privateKey, notBefore, notAfter,
  });

  return {
    caCertPem: withNewline(ca.toString('pem')), caKeyPem: await privatePem(caKeys.privateKey),
    certPem: withNewline(cert.toString('pem')), keyPem: await privatePem(hubKeys.privateKey),
  };
}

async function privatePem(key: webcrypto.CryptoKey): Promise<string> {
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const pem = x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
  pkcs8.fill(0);
  return withNewline(pem);
}

/**
 * A domain controller's client certificate, issued by the CA of `tls generate` (its ca.pem and
 * ca.key): the DC's DNS name as subjectAltName dNSName and CN, extendedKeyUsage clientAuth only, so
 * it can neither act as a hub nor as a CA. `validity` overrides the days (a test's expired one).
 */
export async function issueClientCertificate(opts: {
  caCertPem: string; caKeyPem: string; dc: string; days?: number; validity?: { from: Date; to: Date };
}): Promise<{ certPem: string; keyPem: string }> {
  const dc = opts.dc.trim().toLowerCase();
  if (!isDcName(dc)) throw new Error(`"${opts.dc}" is not a domain controller's DNS name (such as dc1.corp.example.com): the hub checks that name in the domain's directory`);
  const days = opts.days ?? 825;
  if (!Number.isInteger(days) || days < 1) throw new Error(`days must be a positive whole number, not ${days}`);
  const { ca, caKey } = await loadCa(opts.caCertPem, opts.caKeyPem);
  const keys = await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify']);
  const cert = await leafCertificate({
    subject: dc, names: [{ type: 'dns', value: dc }], use: x509.ExtendedKeyUsage.clientAuth, keys,
    issuer: ca.subject, caPublicKey: ca.publicKey, caKey,
    notBefore: opts.validity?.from ?? new Date(Date.now() - SKEW_MS), notAfter: opts.validity?.to ?? new Date(Date.now() + days * DAY_MS),
  });
  return { certPem: withNewline(cert.toString('pem')), keyPem: await privatePem(keys.privateKey) };
}

/**
 * A new hub certificate from the CA of `tls generate` (its ca.pem and ca.key), for the same or
 * other host names: the renewal of hub.crt, which notifiers keep trusting through the same ca.pem.
 */
export async function issueHubCertificate(opts: { caCertPem: string; caKeyPem: string; hosts: string[]; days?: number }): Promise<{ certPem: string; keyPem: string }> {
  const hosts = [...new Set(opts.hosts.map((h) => h.trim()).filter((h) => h.length > 0))];
  if (hosts.length === 0) throw new Error('at least one host name or IP address is needed for the certificate');
  const days = opts.days ?? 825;
  if (!Number.isInteger(days) || days < 1) throw new Error(`days must be a positive whole number, not ${days}`);
  const { ca, caKey } = await loadCa(opts.caCertPem, opts.caKeyPem);
  const keys = await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify']);
  const cert = await leafCertificate({
    subject: hosts[0]!, names: hosts.map(generalName), use: x509.ExtendedKeyUsage.serverAuth, keys,
    issuer: ca.subject, caPublicKey: ca.publicKey, caKey,
    notBefore: new Date(Date.now() - SKEW_MS), notAfter: new Date(Date.now() + days * DAY_MS),
  });
  return { certPem: withNewline(cert.toString('pem')), keyPem: await privatePem(keys.privateKey) };
}

async function loadCa(caCertPem: string, caKeyPem: string): Promise<{ ca: x509.X509Certificate; caKey: webcrypto.CryptoKey }> {
  let ca: x509.X509Certificate;
  let caKey: webcrypto.CryptoKey;
  try {
    ca = new x509.X509Certificate(caCertPem);
    caKey = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(caKeyPem), EC, false, ['sign']);
  } catch (e) {
    throw new Error(`the CA certificate and key cannot be read (${e instanceof Error ? e.message : 'unreadable'}): use the ca.pem and ca.key that \`pwsync tls generate\` wrote`, { cause: e });
  }
  if (!await matches(ca, caKey)) throw new Error('the CA key does not belong to the CA certificate: use the ca.pem and ca.key written together by `pwsync tls generate`');
  return { ca, caKey };
}

/** An end-entity certificate for one use (server or client), signed by the CA. */
async function leafCertificate(o: {
  subject: string; names: x509.JsonGeneralName[]; use: x509.ExtendedKeyUsage; keys: webcrypto.CryptoKeyPair;
  issuer: string; caPublicKey: webcrypto.CryptoKey | x509.PublicKey; caKey: webcrypto.CryptoKey; notBefore: Date; notAfter: Date;
}): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.create({
    serialNumber: serial(), subject: `CN=${dnValue(o.subject)}`, issuer: o.issuer,
    notBefore: o.notBefore, notAfter: o.notAfter, publicKey: o.keys.publicKey, signingKey: o.caKey, signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([o.use]),
      new x509.SubjectAlternativeNameExtension(o.names),
      await x509.SubjectKeyIdentifierExtension.create(o.keys.publicKey, false, webcrypto),
      await x509.AuthorityKeyIdentifierExtension.create(o.caPublicKey, false, webcrypto),
    ],
  }, webcrypto);
}

/** Whether `key` is the private half of the CA certificate's public key (a test signature). */
async function matches(ca: x509.X509Certificate, key: webcrypto.CryptoKey): Promise<boolean> {
  const data = randomBytes(32);
  const signature = await webcrypto.subtle.sign(SIGN, key, data);
  return webcrypto.subtle.verify(SIGN, await ca.publicKey.export(EC, ['verify'], webcrypto), signature, data);
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
  return { certPem: withNewline(cert.toString('pem')), keyPem: await privatePem(keys.privateKey) };
}
