import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { register } from '../../cli/tls.ts';
import { generateTlsMaterial, issueClientCertificate } from '../../core/tls-gen.ts';

const root = () => mkdtempSync(join(process.env.PWSYNC_TEST_ROOT ?? tmpdir(), 'tls-'));

async function run(args: string[]): Promise<string> {
  const written: string[] = [];
  const program = new Command('pwsync').exitOverride().configureOutput({ writeOut: (s) => written.push(s), writeErr: () => {} });
  register(program);
  await program.parseAsync(['node', 'pwsync', ...args]);
  return written.join('');
}

test('the hub certificate is signed by the CA, names every host, and matches its key', async () => {
  const m = await generateTlsMaterial({ hosts: ['localhost', '127.0.0.1', '::1', 'hub.example.test'], days: 30 });
  const ca = new X509Certificate(m.caCertPem);
  const cert = new X509Certificate(m.certPem);
  assert.equal(ca.ca, true);
  assert.equal(cert.ca, false);
  assert.ok(cert.checkIssued(ca));
  assert.ok(cert.verify(ca.publicKey));
  assert.ok(ca.verify(ca.publicKey));
  assert.equal(cert.checkHost('localhost'), 'localhost');
  assert.equal(cert.checkHost('hub.example.test'), 'hub.example.test');
  assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
  assert.ok(cert.checkIP('::1'));
  assert.equal(cert.checkHost('other.example.test'), undefined);
  assert.ok(cert.checkPrivateKey(createPrivateKey(m.keyPem)));
  assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1']);
  const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
  assert.ok(days > 29 && days <= 30, `valid for ${days} days`);
  assert.ok(Date.parse(cert.validFrom) < Date.now());
});

test('each generation makes a different CA, so one CA does not vouch for another\'s hub', async () => {
  const a = await generateTlsMaterial({ hosts: ['localhost'] });
  const b = await generateTlsMaterial({ hosts: ['localhost'] });
  assert.ok(!new X509Certificate(b.certPem).verify(new X509Certificate(a.caCertPem).publicKey));
  assert.notEqual(new X509Certificate(a.caCertPem).subject, new X509Certificate(b.caCertPem).subject);
});

test('no host, or a bad validity, is refused', async () => {
  await assert.rejects(generateTlsMaterial({ hosts: [' '] }), /at least one host/);
  await assert.rejects(generateTlsMaterial({ hosts: ['localhost'], days: 0 }), /positive whole number/);
});

test('`pwsync tls generate` writes ca.pem, ca.key and hub.key 0600, hub.crt, and refuses to overwrite the keys', async () => {
  const dir = join(root(), 'tls');
  const out = await run(['tls', 'generate', '--out', dir, '--host', 'localhost', '--host', '127.0.0.1']);
  assert.match(out, /localhost, 127\.0\.0\.1/);
  assert.match(out, /ca\.key: issues client certificates/);
  assert.equal(statSync(join(dir, 'hub.key')).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'ca.key')).mode & 0o777, 0o600);
  assert.ok(new X509Certificate(readFileSync(join(dir, 'ca.pem'))).checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'ca.key')))));
  const cert = new X509Certificate(readFileSync(join(dir, 'hub.crt')));
  assert.ok(cert.verify(new X509Certificate(readFileSync(join(dir, 'ca.pem'))).publicKey));
  assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'hub.key')))));
  const before = readFileSync(join(dir, 'hub.crt'), 'utf8');
  await assert.rejects(run(['tls', 'generate', '--out', dir, '--host', 'localhost']), /hub\.key already exists.*--force/);
  assert.equal(readFileSync(join(dir, 'hub.crt'), 'utf8'), before);
  await run(['tls', 'generate', '--out', dir, '--host', 'localhost', '--force']);
  assert.notEqual(readFileSync(join(dir, 'hub.crt'), 'utf8'), before);
  await assert.rejects(run(['tls', 'generate', '--out', dir, '--host', 'localhost', '--days', 'soon', '--force']), /--days/);
});

test('`pwsync tls generate` without --host is refused by the option parser', async () => {
  await assert.rejects(run(['tls', 'generate', '--out', root()]), /--host/);
});

test('a DC\'s client certificate: issued by the CA, its DNS name as SAN and CN, client use only, matching its key', async () => {
  const m = await generateTlsMaterial({ hosts: ['localhost'] });
  const issued = await issueClientCertificate({ caCertPem: m.caCertPem, caKeyPem: m.caKeyPem, dc: 'DC1.Corp.Example.com', days: 10 });
  const cert = new X509Certificate(issued.certPem);
  const ca = new X509Certificate(m.caCertPem);
  assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey));
  assert.equal(cert.ca, false);
  assert.equal(cert.subjectAltName, 'DNS:dc1.corp.example.com');
  assert.equal(cert.subject, 'CN=dc1.corp.example.com');
  assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.2']);
  assert.ok(cert.checkPrivateKey(createPrivateKey(issued.keyPem)));
  const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
  assert.ok(days > 9 && days <= 10, `valid for ${days} days`);
});

test('a client certificate is refused for a name that is no host, or from a CA key that is not the CA\'s', async () => {
  const m = await generateTlsMaterial({ hosts: ['localhost'] });
  const other = await generateTlsMaterial({ hosts: ['localhost'] });
  for (const dc of ['*.corp.example.com', 'dc1', 'dc1.corp.example.com,CN=evil', '']) {
    await assert.rejects(issueClientCertificate({ caCertPem: m.caCertPem, caKeyPem: m.caKeyPem, dc }), /not a domain controller's DNS name/, dc);
  }
  await assert.rejects(issueClientCertificate({ caCertPem: m.caCertPem, caKeyPem: other.caKeyPem, dc: 'dc1.corp.example.com' }), /CA key does not belong to the CA certificate/);
  await assert.rejects(issueClientCertificate({ caCertPem: m.caCertPem, caKeyPem: 'nonsense', dc: 'dc1.corp.example.com' }), /cannot be read/);
});

test('`pwsync tls client` issues DC.crt and DC.key 0600 from the folder of `tls generate`, renews only with --force', async () => {
  const dir = root();
  const ca = join(dir, 'ca');
  await run(['tls', 'generate', '--out', ca, '--host', 'hub.corp.example.com']);
  const out = join(dir, 'dc1');
  const said = await run(['tls', 'client', '--ca-dir', ca, '--dc', 'dc1.corp.example.com', '--out', out, '--days', '30']);
  assert.match(said, /client certificate for dc1\.corp\.example\.com, valid 30 days/);
  assert.match(said, /targets\[\]\.tls\.cert and targets\[\]\.tls\.key/);
  assert.match(said, /hub\.tls\.clientCa: .*ca\.pem/);
  const certFile = join(out, 'dc1.corp.example.com.crt');
  const keyFile = join(out, 'dc1.corp.example.com.key');
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  const cert = new X509Certificate(readFileSync(certFile));
  assert.ok(cert.verify(new X509Certificate(readFileSync(join(ca, 'ca.pem'))).publicKey));
  assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(keyFile))));
  await assert.rejects(run(['tls', 'client', '--ca-dir', ca, '--dc', 'dc1.corp.example.com', '--out', out]), /dc1\.corp\.example\.com\.key already exists.*--force/);
  assert.equal(readFileSync(certFile, 'utf8'), cert.toString());
  await run(['tls', 'client', '--ca-dir', ca, '--dc', 'dc1.corp.example.com', '--out', out, '--force']);
  assert.notEqual(new X509Certificate(readFileSync(certFile)).serialNumber, cert.serialNumber);
  await assert.rejects(run(['tls', 'client', '--ca-dir', join(dir, 'nowhere'), '--dc', 'dc1.corp.example.com', '--out', out]), /--ca-dir must be the folder `pwsync tls generate` wrote/);
  await assert.rejects(run(['tls', 'client', '--ca-dir', ca, '--dc', 'dc1', '--out', out]), /not a domain controller's DNS name/);
  writeFileSync(join(ca, 'ca.key'), 'not a key', { mode: 0o600 });
  await assert.rejects(run(['tls', 'client', '--ca-dir', ca, '--dc', 'dc2.corp.example.com', '--out', out]), /cannot be read/);
});

test('`pwsync tls renew` issues a new hub certificate from the same CA: the old ca.pem still verifies it, the CA stays', async () => {
  const dir = join(root(), 'tls');
  await run(['tls', 'generate', '--out', dir, '--host', 'hub1.example.test']);
  const caBefore = readFileSync(join(dir, 'ca.pem'), 'utf8');
  const certBefore = readFileSync(join(dir, 'hub.crt'), 'utf8');
  const out = await run(['tls', 'renew', '--ca-dir', dir, '--out', dir, '--host', 'hub1.example.test', '--host', 'hub1', '--days', '90']);
  assert.match(out, /renewed, valid 90 days.*notifiers need no change/s);
  assert.equal(readFileSync(join(dir, 'ca.pem'), 'utf8'), caBefore, 'the CA is kept');
  const cert = new X509Certificate(readFileSync(join(dir, 'hub.crt')));
  assert.notEqual(cert.toString(), new X509Certificate(certBefore).toString());
  assert.ok(cert.verify(new X509Certificate(caBefore).publicKey), 'the notifiers\' ca.pem verifies the renewed certificate');
  assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'hub.key')))));
  assert.equal(statSync(join(dir, 'hub.key')).mode & 0o777, 0o600);
  assert.equal(cert.checkHost('hub1'), 'hub1');
  assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'server use only');
  const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
  assert.ok(days > 89 && days <= 90, `valid for ${days} days`);
  const other = join(root(), 'other');
  await run(['tls', 'generate', '--out', other, '--host', 'x.example.test']);
  writeFileSync(join(other, 'ca.key'), readFileSync(join(dir, 'ca.key')));
  await assert.rejects(run(['tls', 'renew', '--ca-dir', other, '--out', other, '--host', 'x.example.test']), /CA key does not belong/);
  await assert.rejects(run(['tls', 'renew', '--ca-dir', join(root(), 'none'), '--out', other, '--host', 'x']), /--ca-dir must be the folder/);
});
