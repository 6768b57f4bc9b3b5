import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Lab, spawnPwsync } from '../../cli/lab.ts';
import { testDir } from '../lib/dirs.ts';
import { startPostgres, type Postgres } from '../lib/postgres.ts';

/**
 * `pwsync connector test NAME --config hub.yaml` as an admin runs it (the real command, a real
 * PostgreSQL 15 over verify-full TLS): it opens that one connector, reports, closes, and changes
 * nothing (the server logs every statement: only reads appear; the file's bytes and mtime stay).
 */
let srv: Postgres;
let lab: Lab;
const csv = 'id,login,pwdHash\n1,alice,\n2,bob,\n';

function pg(name: string, user: string, passwordFile: string, joinTarget = 'id'): Record<string, unknown> {
  return {
    name, kind: 'postgresql', enabled: true,
    connection: {
      host: '127.0.0.1', port: srv.port, database: 'postgres', user, password: { fromFile: passwordFile },
      tls: { ca: srv.caFile, serverName: 'localhost' }, poolSize: 1, timeout: '5s',
      objects: { query: 'SELECT login AS id, email FROM app_users', anchor: 'id' },
    },
    join: [{ target: joinTarget, source: 'sAMAccountName' }],
    extension: { module: 'builtin:sql-login', settings: {} },
  };
}

async function run(name: string): Promise<{ code: number | null; out: string; err: string }> {
  const p = spawnPwsync(['connector', 'test', name, '--config', lab.hubConfig]);
  const code = await p.exited;
  return { code, out: p.stdout(), err: p.stderr() };
}

before(async () => {
  srv = await startPostgres(testDir('cli-connector-test-pg'));
  const root = testDir('cli-connector-test');
  const wrong = path.join(root, 'wrong-password');
  writeFileSync(wrong, `${randomBytes(12).toString('base64url')}\n`, { mode: 0o600 });
  lab = await Lab.create({
    root,
    connectors: [{ name: 'appfile', kind: 'delimited', file: 'app.csv', content: csv, join: [{ target: 'login', source: 'sAMAccountName' }], connection: { anchor: 'id' } }],
    hubConnectors: [pg('appdb', 'pwsync', srv.pwsyncPasswordFile), pg('weak', 'norights', srv.norightsPasswordFile), pg('badpw', 'pwsync', wrong), pg('nojoin', 'pwsync', srv.pwsyncPasswordFile, 'mail')],
  });
});

after(async () => {
  await srv?.stop();
});

test('a file connector: records, anchor and a writable folder; the file is untouched', async () => {
  const file = path.join(lab.root, 'targets', 'app.csv');
  const before = statSync(file).mtimeMs;
  const r = await run('appfile');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /connector appfile \(delimited\): ok: .*app\.csv: 2 records, anchor id, attributes id, login, pwdHash; folder .* writable/);
  assert.equal(readFileSync(file, 'utf8'), csv);
  assert.equal(statSync(file).mtimeMs, before);
});

test('a PostgreSQL connector: verify-full TLS, the objects query, CREATEROLE; only reads reach the server', async () => {
  const logBefore = readFileSync(srv.logFile, 'utf8').length;
  const r = await run('appdb');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /connector appdb \(postgresql\): ok: postgresql 127\.0\.0\.1:\d+\/postgres as pwsync: connected over TLS, certificate verified .* for localhost/);
  assert.match(r.out, /returned 3 row\(s\) with columns id, email/);
  assert.match(r.out, /role pwsync has CREATEROLE/);
  assert.match(r.out, /not checked: whether the table-mode UPDATE statement may run/);
  const statements = readFileSync(srv.logFile, 'utf8').slice(logBefore).split('\n').filter((l) => /statement: /.test(l));
  assert.ok(statements.length >= 2, `the test's statements are in the server log: ${statements.join(' | ')}`);
  for (const s of statements) assert.match(s, /statement: SELECT /, `only reads: ${s}`);
});

test('an account without CREATEROLE: the connector answers, and the report names the missing right', async () => {
  const r = await run('weak');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /role norights lacks CREATEROLE: login mode \(builtin:sql-login\) will fail with 6942; run ALTER ROLE norights CREATEROLE/);
});

test('a wrong service password: exit 1, event 6942 and what to fix', async () => {
  const r = await run('badpw');
  assert.equal(r.code, 1, r.out);
  assert.match(r.err, /event 6942: .*PostgreSQL refused to log .* in .*check connection\.user and the password file/);
  assert.match(r.err, /fix: grant the connector's account/);
  assert.equal(r.out, '');
});

test('a join target the objects query does not return: exit 2, naming the columns it has (what the hub refuses at start)', async () => {
  const r = await run('nojoin');
  assert.equal(r.code, 2, r.out);
  assert.equal(r.err.trim(), 'connector nojoin: join target mail is not an attribute of its objects (they have: id, email); fix connectors[].join[].target, or read the attribute (connection.attributes, objects.query)');
  assert.equal(r.out, '');
});

test('an unknown connector name: exit 2 and the names the file has', async () => {
  const r = await run('nosuch');
  assert.equal(r.code, 2);
  assert.match(r.err, /no connector named "nosuch"; its connectors: appfile, appdb, weak, badpw, nojoin/);
});

test('a configuration error: exit 2 with the problem', async () => {
  const bad = path.join(lab.root, 'bad.yaml');
  writeFileSync(bad, 'hub:\n  id: x\nconnectors: 3\n');
  const p = spawnPwsync(['connector', 'test', 'appdb', '--config', bad]);
  assert.equal(await p.exited, 2);
  assert.match(p.stderr(), /problem/);
});
