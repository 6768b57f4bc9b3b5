import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { register } from '../../cli/keys.ts';
import { keyringOf, open, privateRecipientFromPem, recipientFromPem, seal } from '../../core/envelope.ts';
import { UsageError } from '../../core/errors.ts';
import { generateRecipientKeys, writeKeyPair } from '../../core/keys.ts';
import { Secret } from '../../core/secret.ts';
import { testPassword } from '../lib/passwords.ts';

const root = () => mkdtempSync(join(process.env.PWSYNC_TEST_ROOT ?? tmpdir(), 'keys-'));
const mode = (path: string) => statSync(path).mode & 0o777;

async function run(args: string[]): Promise<string> {
  const written: string[] = [];
  const program = new Command('pwsync').exitOverride().configureOutput({ writeOut: (s) => written.push(s), writeErr: () => {} });
  register(program);
  await program.parseAsync(['node', 'pwsync', ...args]);
  return written.join('');
}

test('a generated pair seals and opens, and both halves name the same key id', () => {
  const pair = generateRecipientKeys();
  assert.match(pair.keyId, /^[0-9a-f]{32}$/);
  assert.match(pair.privatePem, /^-----BEGIN PRIVATE KEY-----/);
  assert.match(pair.publicPem, /^-----BEGIN PUBLIC KEY-----/);
  const pub = recipientFromPem(pair.publicPem);
  const priv = privateRecipientFromPem(pair.privatePem);
  assert.equal(pub.keyId.toString('hex'), pair.keyId);
  assert.equal(priv.keyId.toString('hex'), pair.keyId);
  const env = seal(pub, {
    changeId: Buffer.alloc(16, 7), changeTime: 1, domain: 'example.test', samAccountName: 'jdoe',
    objectGuid: '', objectSid: '', upn: '', dn: '', sourceHost: '',
  }, Secret.adopt(testPassword('keys')));
  open(env, keyringOf([priv])).password.use((clear) => assert.deepEqual(clear, testPassword('keys')));
  assert.notEqual(generateRecipientKeys().keyId, pair.keyId);
});

test('writeKeyPair writes NAME.key 0600 and NAME.pub, and never leaves temporary files', () => {
  const dir = join(root(), 'new', 'keys');
  const written = writeKeyPair(dir, 'hub1');
  assert.equal(written.privatePath, join(dir, 'hub1.key'));
  assert.equal(mode(written.privatePath), 0o600);
  assert.equal(mode(dir), 0o700);
  assert.equal(recipientFromPem(readFileSync(written.publicPath)).keyId.toString('hex'), written.keyId);
  assert.equal(privateRecipientFromPem(readFileSync(written.privatePath)).keyId.toString('hex'), written.keyId);
  assert.deepEqual(readdirSync(dir).sort(), ['hub1.key', 'hub1.pub']);
});

test('an existing private key is not overwritten without force, and force replaces it at 0600', () => {
  const dir = root();
  const first = writeKeyPair(dir, 'hub1');
  const before = readFileSync(first.privatePath, 'utf8');
  assert.throws(() => writeKeyPair(dir, 'hub1'), (e: unknown) => e instanceof UsageError && /already exists.*--force/.test(e.message));
  assert.equal(readFileSync(first.privatePath, 'utf8'), before);
  assert.deepEqual(readdirSync(dir).sort(), ['hub1.key', 'hub1.pub']);
  chmodSync(first.privatePath, 0o644);
  const second = writeKeyPair(dir, 'hub1', { force: true });
  assert.notEqual(second.keyId, first.keyId);
  assert.equal(mode(second.privatePath), 0o600);
  assert.equal(recipientFromPem(readFileSync(second.publicPath)).keyId.toString('hex'), second.keyId);
});

test('a key name that is not a plain file name is refused', () => {
  const dir = root();
  for (const name of ['../escape', 'a/b', '', '.hidden']) {
    assert.throws(() => writeKeyPair(dir, name), UsageError, name);
  }
  assert.deepEqual(readdirSync(dir), []);
});

test('`pwsync keys generate` prints the key id and the files; refuses to overwrite without --force', async () => {
  const dir = root();
  const out = await run(['keys', 'generate', '--out', dir, '--name', 'hub1']);
  const keyId = /key id ([0-9a-f]{32})/.exec(out)?.[1];
  assert.ok(keyId, out);
  assert.ok(out.includes(join(dir, 'hub1.key')) && out.includes(join(dir, 'hub1.pub')), out);
  assert.equal(recipientFromPem(readFileSync(join(dir, 'hub1.pub'))).keyId.toString('hex'), keyId);
  await assert.rejects(run(['keys', 'generate', '--out', dir, '--name', 'hub1']), /already exists/);
  const again = await run(['keys', 'generate', '--out', dir, '--name', 'hub1', '--force']);
  assert.notEqual(/key id ([0-9a-f]{32})/.exec(again)?.[1], keyId);
});

test('`pwsync keys id` prints the key id of a public or private key file', async () => {
  const dir = root();
  const written = writeKeyPair(dir, 'hub1');
  assert.equal((await run(['keys', 'id', written.publicPath])).trim(), written.keyId);
  assert.equal((await run(['keys', 'id', written.privatePath])).trim(), written.keyId);
  writeFileSync(join(dir, 'junk.pem'), 'not a key');
  await assert.rejects(run(['keys', 'id', join(dir, 'junk.pem')]), /holds no usable P-256 key/);
  await assert.rejects(run(['keys', 'id', join(dir, 'missing.pem')]), /cannot read/);
});
