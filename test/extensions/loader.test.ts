import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { UsageError } from '../../core/errors.ts';
import { extensionEnv } from '../../hub/targets.ts';
import type { ExtensionEnv } from '../../core/extension.ts';
import { silentLogger } from '../../core/log.ts';
import { loadExtension } from '../../extensions/loader.ts';
import { testDir } from '../lib/dirs.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const env: ExtensionEnv = extensionEnv('hr', process.cwd(), silentLogger());

/** Writes an extension module into a fresh folder and returns its absolute path. */
function extensionFile(source: string, name = 'ext.mjs'): string {
  const file = path.join(testDir('ext'), name);
  writeFileSync(file, source);
  return file;
}

function usage(...fragments: RegExp[]) {
  return (e: unknown) => {
    assert.ok(e instanceof UsageError, `expected a UsageError, got ${String(e)}`);
    for (const f of fragments) assert.match(e.message, f);
    return true;
  };
}

test('loader: a valid extension loads, is initialized with its settings, and reports its capabilities', async () => {
  const file = extensionFile(`
    let seen;
    export default () => ({
      init(settings, env) { seen = { settings, connector: env.connector }; },
      setPassword() {},
      seen: () => seen,
    });
  `);
  const loaded = await loadExtension({ module: file, settings: { attribute: 'pw', cost: 2 } }, env);
  assert.equal(loaded.canSet, true);
  assert.equal(loaded.canChange, false);
  assert.equal(loaded.source, file);
  const seen = (loaded.extension as unknown as { seen(): { settings: unknown; connector: string } }).seen();
  assert.deepEqual(seen, { settings: { attribute: 'pw', cost: 2 }, connector: 'hr' });
});

test('loader: a TypeScript extension using the SDK loads', async () => {
  const loaded = await loadExtension({ module: path.join(REPO, 'extensions/examples/scrypt-hash/index.ts'), settings: { cost: 1024 } }, env);
  assert.equal(loaded.canSet, true);
});

test('loader: a missing file names the module and the YAML setting to fix', async () => {
  const missing = path.join(testDir('ext'), 'nope.ts');
  await assert.rejects(loadExtension({ module: missing, settings: {} }, env), usage(/connector hr/, new RegExp(missing.replaceAll('/', '\\/')), /no such file/, /extension\.module/));
});

test('loader: a module that does not load gives the cause', async () => {
  const file = extensionFile('export default () => ({ setPassword( {} });');
  await assert.rejects(loadExtension({ module: file, settings: {} }, env), (e: unknown) => {
    usage(/cannot be loaded/, /fix the module/)(e);
    assert.ok((e as Error).cause instanceof Error, 'the import error is the cause');
    assert.ok((e as Error).message.includes(((e as Error).cause as Error).message), 'the cause message is in the message');
    return true;
  });
  await assert.rejects(loadExtension({ module: 'pwsync-no-such-extension-package', settings: {} }, env), usage(/package pwsync-no-such-extension-package/, /npm install/));
});

test('loader: no default export, a non-function default, and a factory that returns a non-object', async () => {
  await assert.rejects(loadExtension({ module: extensionFile('export const setPassword = () => {};'), settings: {} }, env), usage(/has no default export/, /defineExtension/));
  await assert.rejects(loadExtension({ module: extensionFile('export default { setPassword() {} };'), settings: {} }, env), usage(/default export is an object, not a factory function/));
  await assert.rejects(loadExtension({ module: extensionFile('export default () => 42;'), settings: {} }, env), usage(/factory returned a number, not an extension object/));
  await assert.rejects(loadExtension({ module: extensionFile('export default async () => ({});'), settings: {} }, env), usage(/factory returned a promise/));
  await assert.rejects(loadExtension({ module: extensionFile('export default () => { throw new Error("no licence"); };'), settings: {} }, env), usage(/factory \(default export\) threw: no licence/));
});

test('loader: a member that is not a function is named', async () => {
  const file = extensionFile('export default () => ({ setPassword() {}, endConnection: "commit" });');
  await assert.rejects(loadExtension({ module: file, settings: {} }, env), usage(/endConnection is a string, not a function/));
});

test('loader: init throwing is a UsageError with the cause', async () => {
  const file = extensionFile('export default () => ({ setPassword() {}, init(s) { throw new RangeError(`cost must be a power of two, not ${s.cost}`); } });');
  await assert.rejects(loadExtension({ module: file, settings: { cost: 1000 } }, env), (e: unknown) => {
    usage(/init failed: cost must be a power of two, not 1000/, /extension\.settings/)(e);
    assert.ok((e as Error).cause instanceof RangeError);
    return true;
  });
});

test('loader: an extension without setPassword loads with canSet false and a warning', async () => {
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { lines.push(s); } });
  const loaded = await loadExtension({ module: path.join(REPO, 'test/fixtures/extensions/no-set.ts'), settings: {} }, { ...env, log });
  assert.equal(loaded.canSet, false);
  assert.equal(loaded.canChange, false);
  const warning = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).find((l) => /has no setPassword/.test(l.msg));
  assert.ok(warning, 'a warning at load');
  assert.equal(warning.level, 40);
  assert.match(warning.msg, /fails with event 6928/);
});

test('an extension reads a secret setting from a file or the environment, never inline', () => {
  const dir = testDir('secret-setting');
  const file = path.join(dir, 'token');
  writeFileSync(file, Buffer.concat([Buffer.from('api-token-value'), Buffer.from('\n')]), { mode: 0o600 });
  const hubEnv = extensionEnv('hr', dir, silentLogger());
  const fromFile = hubEnv.resolveSecret({ fromFile: 'token' }, 'apiToken');
  assert.equal(fromFile.use((b) => b.equals(Buffer.from('api-token-value'))), true);
  fromFile.dispose();
  process.env.PWSYNC_TEST_TOKEN = 'from-env';
  const fromEnv = hubEnv.resolveSecret({ fromEnv: 'PWSYNC_TEST_TOKEN' }, 'apiToken');
  assert.equal(fromEnv.use((b) => b.toString()), 'from-env');
  delete process.env.PWSYNC_TEST_TOKEN;
  assert.throws(() => hubEnv.resolveSecret('written-inline', 'apiToken'), /connector hr: extension\.settings\.apiToken.*may not be written inline.*fromFile/);
  assert.throws(() => hubEnv.resolveSecret({ fromEnv: 'PWSYNC_NO_SUCH_VAR' }, 'apiToken'), /PWSYNC_NO_SUCH_VAR/);
});
