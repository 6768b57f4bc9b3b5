import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, test } from 'node:test';
import { configLocation, loadHubConfig } from '../../config/load.ts';
import { resolveSecret } from '../../core/secret-ref.ts';
import { TEST_PASSWORD_PREFIX } from '../lib/passwords.ts';
import { HUB_HEAD, csvConnector, tempDir, write } from './helpers.ts';

/** Secret references (`{fromFile}`, `{fromEnv}`): refused inline, private files only, never echoed. */
const { dir, cleanup } = tempDir();
after(cleanup);

const SECRET = `${TEST_PASSWORD_PREFIX}svc-${Math.random().toString(36).slice(2)}`;
const ENV = `PWSYNC_TEST_SECRET_${process.pid}`;
after(() => { delete process.env[ENV]; });

/** A hub whose connector's extension names `passphrase` as written in `ref` (line 22, value at column 21). */
async function hubWith(ref: string) {
  const yaml = `${HUB_HEAD}${csvConnector('hr')}    extension:\n      module: ./ext.ts\n      settings:\n        passphrase: ${ref}\n`;
  const config = await loadHubConfig(write(dir, `secret-${Math.random().toString(36).slice(2)}.yaml`, yaml), { checkFiles: false });
  const at = ['connectors', 0, 'extension', 'settings', 'passphrase'];
  return { ref: config.connectors[0]!.extension!.settings['passphrase'], where: configLocation(config, at), file: config.sourceFile, baseDir: config.baseDir };
}

function reveal(s: { use<T>(fn: (b: Buffer) => T): T }): string {
  return s.use((b) => b.toString('utf8'));
}

test('an inline secret is refused, at its line and column, without repeating it', async () => {
  const h = await hubWith(`'${SECRET}'`);
  assert.throws(() => resolveSecret(h.ref, h.where, h.baseDir), (e: Error) => {
    assert.ok(e.message.startsWith(`${h.file}:22:21: connectors[0].extension.settings.passphrase: `), e.message);
    assert.match(e.message, /a secret may not be written inline in the YAML — use \{fromFile: PATH\} .* or \{fromEnv: NAME\}/);
    assert.ok(!e.message.includes(SECRET) && !e.message.includes(TEST_PASSWORD_PREFIX));
    return true;
  });
});

test('a secret file readable by group or others is refused with the chmod fix', async () => {
  const file = write(dir, 'world.pass', `${SECRET}\n`, 0o644);
  const h = await hubWith('{fromFile: world.pass}');
  assert.throws(() => resolveSecret(h.ref, h.where, h.baseDir), (e: Error) => {
    assert.ok(e.message.startsWith(`${h.file}:22:21: `), e.message);
    assert.match(e.message, /the secret file .*world\.pass is readable by group or others \(mode 0644\) — run `chmod 600 .*world\.pass`/);
    assert.ok(!e.message.includes(TEST_PASSWORD_PREFIX));
    return true;
  });
  assert.ok(file.endsWith('world.pass'));
});

test('a secret file is read as bytes, one trailing newline dropped', async () => {
  write(dir, 'svc.pass', `${SECRET}\n\n`, 0o600);
  write(dir, 'svc-crlf.pass', `${SECRET}\r\n`, 0o600);
  write(dir, 'svc-bare.pass', SECRET, 0o600);
  const h = await hubWith('{fromFile: svc.pass}');
  const s = resolveSecret(h.ref, h.where, h.baseDir);
  assert.equal(reveal(s), `${SECRET}\n`, 'only one newline is dropped');
  assert.equal(String(s), '[REDACTED]');
  assert.equal(reveal(resolveSecret({ fromFile: 'svc-crlf.pass' }, 'test', dir)), SECRET);
  assert.equal(reveal(resolveSecret({ fromFile: 'svc-bare.pass' }, 'test', dir)), SECRET);
});

test('a missing secret file is named, with the fix', async () => {
  const h = await hubWith('{fromFile: nowhere.pass}');
  assert.throws(() => resolveSecret(h.ref, h.where, h.baseDir), /:22:21: .*the secret file .*nowhere\.pass does not exist — create it with mode 0600/);
});

test('a missing environment variable is named, never its value', async () => {
  delete process.env[ENV];
  const h = await hubWith(`{fromEnv: ${ENV}}`);
  assert.throws(() => resolveSecret(h.ref, h.where, h.baseDir), (e: Error) => {
    assert.ok(e.message.startsWith(`${h.file}:22:21: `), e.message);
    assert.match(e.message, new RegExp(`the environment variable ${ENV} is not set — set ${ENV} in the service's environment`));
    return true;
  });
  process.env[ENV] = SECRET;
  assert.equal(reveal(resolveSecret(h.ref, h.where, h.baseDir)), SECRET);
});

test('anything else than one of the two references is refused', () => {
  for (const bad of [{ fromFile: 'a', fromEnv: 'B' }, { file: 'a' }, null, 42, ['x']]) {
    assert.throws(() => resolveSecret(bad, 'x.yaml:1:1: s', dir), (e: Error) => {
      assert.match(e.message, /^x\.yaml:1:1: s: (a secret may not be written inline in the YAML|expected a secret reference) — .*\{fromFile: PATH\}/);
      return true;
    });
  }
});

test('a FIFO named as a secret file is refused at once, without waiting for a writer', () => {
  const fifo = path.join(dir, 'secret.fifo');
  execFileSync('mkfifo', ['-m', '600', fifo]);
  // resolveSecret reads synchronously: run it in a child, so a blocking open fails the test instead of hanging it.
  const secretRef = new URL('../../core/secret-ref.ts', import.meta.url).href;
  const script = `import { resolveSecret } from ${JSON.stringify(secretRef)};
try { resolveSecret({ fromFile: ${JSON.stringify(fifo)} }, 'hub.yaml:1:1: s', '/'); console.log('read'); } catch (e) { console.log(e.message); }`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.signal, null, 'the child was killed: reading the FIFO blocked');
  assert.equal(r.stdout.trim(), `hub.yaml:1:1: s: ${fifo} is not a regular file — point \`fromFile\` at the file that holds the secret`);
});
