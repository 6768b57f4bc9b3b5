import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { HUB_HEAD, NOTIFIER_HEAD, csvConnector, target, tempDir, write, runConfigCheck as run } from './helpers.ts';

const EXAMPLES = fileURLToPath(new URL('../../config/examples/', import.meta.url));
const { dir, cleanup } = tempDir();
after(cleanup);

test('config check: a good hub file', async () => {
  const file = path.join(EXAMPLES, 'hub.yaml');
  const r = await run(file, '--no-check-files');
  assert.deepEqual(r, { out: [`${file}: ok (hub: 2 connectors, 1 domain)`], err: [], code: 0 });
});

test('config check: a good notifier file', async () => {
  const file = write(dir, 'n.yaml', NOTIFIER_HEAD + target('hub1') + target('hub2'));
  const r = await run(file, '--no-check-files');
  assert.deepEqual(r, { out: [`${file}: ok (notifier: 2 targets)`], err: [], code: 0 });
});

test('config check: every problem on stderr, exit code 1', async () => {
  const file = write(dir, 'bad.yaml', `${HUB_HEAD}${csvConnector('hr')}    retry:\n      count: ten\n    retries: 3\n`);
  const r = await run(file, '--no-check-files');
  assert.equal(r.code, 1);
  assert.deepEqual(r.out, []);
  assert.equal(r.err.length, 3);
  assert.match(r.err[0]!, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:20:14: connectors\\[0\\]\\.retry\\.count: `));
  assert.match(r.err[1]!, /:21:5: connectors\[0\]\.retries: unknown setting `retries` — did you mean `retry`\?$/);
  assert.equal(r.err[2], `${file}: 2 problems`);
});

test('config check: files are checked unless --no-check-files', async () => {
  const file = write(dir, 'files.yaml', HUB_HEAD + csvConnector('hr'));
  const r = await run(file);
  assert.equal(r.code, 1);
  assert.ok(r.err.some((l) => /:4:11: hub\.tls\.cert: the file .*tls\.crt does not exist/.test(l)), r.err.join('\n'));
});

test('config check: an unreadable file', async () => {
  const r = await run(path.join(dir, 'absent.yaml'));
  assert.equal(r.code, 1);
  assert.match(r.err[0]!, /cannot read configuration file .*absent\.yaml: no such file/);
});
