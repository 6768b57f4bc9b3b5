import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { register } from '../../cli/tls.ts';
import { generateTlsMaterial } from '../../core/tls-gen.ts';

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

test('`pwsync tls generate` writes ca.pem, hub.crt and hub.key 0600, and refuses to overwrite the key', async () => {
  const dir = join(root(), 'tls');
  const out = await run(['tls', 'generate', '--out', dir, '--host', 'localhost', '--host', '127.0.0.1']);
  assert.match(out, /localhost, 127\.0\.0\.1/);
  assert.equal(statSync(join(dir, 'hub.key')).mode & 0o777, 0o600);
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
