import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { REPO } from '../../cli/lab.ts';
import { testPassword } from '../lib/passwords.ts';
import { scanTree } from '../lib/scan.ts';

/**
 * Runs after the whole suite (test/run.sh): every file the run wrote — queues, databases and
 * their WAL files, logs, target files, YAML, sockets' folders — must hold no test password in
 * any encoding. The hashed field of a target holds a scrypt hash, which is not the password.
 */
test('the scan finds a planted password in each encoding (it cannot pass vacuously)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pwsync-planted-'));
  try {
    const pw = testPassword('planted-0123456789');
    writeFileSync(path.join(dir, 'a.log'), Buffer.concat([Buffer.from('{"x":"'), pw, Buffer.from('"}')]));
    writeFileSync(path.join(dir, 'b.db'), Buffer.concat([Buffer.alloc(100), Buffer.from(pw.toString('utf8'), 'utf16le')]));
    writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ v: pw.toString('base64') }));
    writeFileSync(path.join(dir, 'd.txt'), pw.toString('base64url'));
    writeFileSync(path.join(dir, 'clean.txt'), 'nothing here');
    const { files, hits } = scanTree(dir);
    assert.equal(files.length, 5);
    const found = (f: string): string[] => hits.filter((h) => path.basename(h.file) === f).map((h) => h.encoding);
    assert.deepEqual(found('a.log'), ['utf8']);
    assert.deepEqual(found('b.db'), ['utf16le']);
    assert.match(found('c.json').join(), /^base64/);
    assert.match(found('d.txt').join(), /base64/);
    assert.deepEqual(found('clean.txt'), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('no file the test run wrote holds a test password', { skip: !process.env.PWSYNC_TEST_ROOT && 'run through `npm test`, which sets PWSYNC_TEST_ROOT' }, () => {
  const root = process.env.PWSYNC_TEST_ROOT!;
  const { files, hits } = scanTree(root);
  const cores = readdirSync(REPO).filter((f) => /^core(\.\d+)?$/.test(f)).map((f) => path.join(REPO, f));
  for (const c of cores) hits.push(...scanTree(path.dirname(c)).hits.filter((h) => h.file === c));
  assert.ok(files.length >= 20, `the run wrote ${files.length} files under ${root}; expected the suite's queues, logs and targets`);
  assert.ok(files.some((f) => f.endsWith('.db') || f.endsWith('.db-wal')), 'databases were scanned');
  assert.ok(files.some((f) => f.endsWith('.log')), 'logs were scanned');
  assert.deepEqual(hits, [], `test passwords found in clear: ${hits.map((h) => `${h.file} (${h.encoding} at ${h.offset})`).join(', ')}`);
  assert.ok(existsSync(root));
});
