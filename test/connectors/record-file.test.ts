import assert from 'node:assert/strict';
import { chmodSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { recordsOf, TargetUnavailableError } from '../../core/extension.ts';
import { all, batch, fileConnector, strayFiles } from './helpers.ts';

const CSV = 'id,name,pw\n1,Zoé,\n2,Ærø,\n';
const isRoot = process.getuid?.() === 0;

function unavailable(path: string, ...fragments: RegExp[]) {
  return (e: unknown) => {
    assert.ok(e instanceof TargetUnavailableError, `expected TargetUnavailableError, got ${String(e)}`);
    assert.equal(e.retryable, true);
    assert.equal(e.eventId, 6940);
    assert.ok(e.message.includes(path), `the message names ${path}: ${e.message}`);
    for (const f of fragments) assert.match(e.message, f);
    return true;
  };
}

test('record file: a missing file or folder is a retryable error naming the path and the fix', async () => {
  const { connector, file, dir } = fileConnector('delimited', CSV);
  rmSync(file);
  await assert.rejects(connector.find('id', '1', false), unavailable(file, /no such file/, /connection\.path/));
  await assert.rejects(connector.connect(), unavailable(file, /no such file/));
  await assert.rejects(connector.version(), unavailable(file));
  await assert.rejects(connector.test(), unavailable(file));
  rmSync(dir, { recursive: true });
  await assert.rejects(connector.attributes(), unavailable(file, /folder/));
});

test('record file: an admin\'s edit is seen by the next read', async () => {
  const { connector, file } = fileConnector('delimited', CSV);
  assert.equal((await connector.find('id', '2', false))[0]!.attributes.name, 'Ærø');
  const v1 = await connector.version();
  writeFileSync(file, CSV.replace('Ærø', 'Ærøskøbing'));
  assert.notEqual(await connector.version(), v1, 'an edit changes the version');
  assert.equal((await connector.find('id', '2', false))[0]!.attributes.name, 'Ærøskøbing');
  const v2 = await connector.version();
  writeFileSync(`${file}.new`, CSV.replace('Ærø', 'Ærøskøbinx'));
  renameSync(`${file}.new`, file);
  assert.notEqual(await connector.version(), v2, 'a same-size replacement changes the version');
  assert.equal((await connector.find('id', '2', false))[0]!.attributes.name, 'Ærøskøbinx');
});

test('record file: commit replaces the file atomically, keeps its mode, leaves no temp file', async () => {
  const { connector, file, dir } = fileConnector('delimited', CSV, {}, 'people.csv');
  chmodSync(file, 0o640);
  const before = statSync(file).ino;
  await batch(connector, (r) => r.set('1', 'pw', 'h1'));
  assert.equal(readFileSync(file, 'utf8'), 'id,name,pw\n1,Zoé,h1\n2,Ærø,\n');
  assert.equal(statSync(file).mode & 0o777, 0o640);
  assert.notEqual(statSync(file).ino, before, 'a new file was renamed over the old one');
  assert.deepEqual(strayFiles(dir, 'people.csv'), []);
});

test('record file: a file changed on disk after the batch read it is not overwritten (retryable)', async () => {
  const { connector, file, dir } = fileConnector('delimited', CSV, {}, 'people.csv');
  const adminEdit = 'id,name,pw\n1,Zoé,\n2,Ærø,\n3,Çédric,\n';
  const { connection, release } = await connector.connect();
  try {
    recordsOf(connection).set('1', 'pw', 'h1');
    writeFileSync(file, adminEdit);
    await assert.rejects(recordsOf(connection).commit(), unavailable(file, /changed on disk/));
  } finally {
    await release();
  }
  assert.equal(readFileSync(file, 'utf8'), adminEdit, 'the admin\'s edit is kept');
  assert.deepEqual(strayFiles(dir, 'people.csv'), []);
  await batch(connector, (r) => r.set('1', 'pw', 'h1'));
  assert.equal(readFileSync(file, 'utf8'), 'id,name,pw\n1,Zoé,h1\n2,Ærø,\n3,Çédric,\n', 'the retry reads afresh and applies');
});

test('record file: one batch at a time per file; the next connect waits for release', { timeout: 10_000 }, async () => {
  const { connector, file } = fileConnector('delimited', CSV);
  const first = await connector.connect();
  let secondConnected = false;
  const second = connector.connect().then((c) => { secondConnected = true; return c; });
  recordsOf(first.connection).set('1', 'pw', 'first');
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  assert.equal(secondConnected, false, 'the second batch waits while the first holds the file');
  await recordsOf(first.connection).commit();
  await first.release();
  const c2 = await second;
  assert.equal(recordsOf(c2.connection).get('1')!.attributes.pw, 'first', 'the second batch reads what the first committed');
  recordsOf(c2.connection).set('2', 'pw', 'second');
  await recordsOf(c2.connection).commit();
  await c2.release();
  assert.equal(readFileSync(file, 'utf8'), 'id,name,pw\n1,Zoé,first\n2,Ærø,second\n');
});

test('record file: staged values show in get, are dropped on release without commit, and the set is closed after', async () => {
  const { connector, file } = fileConnector('delimited', CSV);
  const { connection, release } = await connector.connect();
  assert.equal(connection.kind, 'records');
  assert.equal(recordsOf(connection).location, file);
  recordsOf(connection).set('2', 'pw', 'staged');
  assert.equal(recordsOf(connection).get('2')!.attributes.pw, 'staged');
  assert.equal(recordsOf(connection).get('404'), undefined);
  await release();
  assert.equal(readFileSync(file, 'utf8'), CSV);
  assert.throws(() => recordsOf(connection).set('2', 'pw', 'late'), /after the batch released them/);
  assert.equal(connector.securityLevel(), 'local');
});

test('record file: a byte-order mark is kept; invalid UTF-8 is refused with its line', async () => {
  const { connector, file } = fileConnector('delimited', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(CSV)]));
  assert.deepEqual(await connector.attributes(), ['id', 'name', 'pw']);
  await batch(connector, (r) => r.set('1', 'pw', 'é'));
  assert.deepEqual(readFileSync(file).subarray(0, 3), Buffer.from([0xef, 0xbb, 0xbf]));
  const bad = fileConnector('delimited', Buffer.concat([Buffer.from('id,name\n1,'), Buffer.from([0xe9]), Buffer.from('\n')]));
  await assert.rejects(bad.connector.attributes(), /records\.txt:2: not valid UTF-8: set `connection\.encoding`/);
});

test('record file: test() reports the records and checks the folder is writable', async () => {
  const { connector, dir } = fileConnector('delimited', CSV);
  const report = await connector.test();
  assert.match(report, /2 records/);
  assert.match(report, /attributes id, name, pw/);
  assert.ok(report.includes(dir));
});

test('record file: permission denied is a retryable error that says which access to grant', { skip: isRoot && 'root ignores file permissions' }, async () => {
  const { connector, file, dir } = fileConnector('delimited', CSV);
  chmodSync(file, 0o000);
  try {
    await assert.rejects(connector.attributes(), unavailable(file, /permission denied/, /read access/));
  } finally {
    chmodSync(file, 0o644);
  }
  chmodSync(dir, 0o555);
  try {
    await assert.rejects(batch(connector, (r) => r.set('1', 'pw', 'x')), unavailable(file, /permission denied/, /write access/));
    await assert.rejects(connector.test(), unavailable(file, /write access/));
  } finally {
    chmodSync(dir, 0o755);
  }
});

test('record file: all records are listed in file order', async () => {
  const { connector } = fileConnector('delimited', CSV);
  assert.deepEqual((await all(connector)).map((o) => [o.id, o.attributes.name]), [['1', 'Zoé'], ['2', 'Ærø']]);
});

test('open() removes temp files a killed writer left, and keeps a live writer\'s', async () => {
  const { mkdtempSync, writeFileSync, readdirSync } = await import('node:fs');
  const path = await import('node:path');
  const { removeStaleTemps } = await import('../../connectors/files/file-io.ts');
  const { testDir } = await import('../lib/dirs.ts');
  const dir = mkdtempSync(path.join(testDir('stale'), 'd-'));
  const file = path.join(dir, 'people.csv');
  writeFileSync(file, 'id\n1\n');
  writeFileSync(path.join(dir, '.people.csv.2147483000.abcdef.tmp'), 'half');
  writeFileSync(path.join(dir, `.people.csv.${process.pid}.abcdef.tmp`), 'live');
  writeFileSync(path.join(dir, '.other.csv.2147483000.abcdef.tmp'), 'not ours');
  assert.equal(await removeStaleTemps(file), 1);
  assert.deepEqual(readdirSync(dir).sort(), ['.other.csv.2147483000.abcdef.tmp', `.people.csv.${process.pid}.abcdef.tmp`, 'people.csv']);
});
