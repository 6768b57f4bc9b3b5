import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { resolveSecret } from '../../core/secret-ref.ts';
import type { Connector, ExtensionHost, IncrementalObjectSource, ObjectSource } from '../../connectors/contract.ts';
import { createConnector } from '../../connectors/registry.ts';
import { isValidScramVerifier, scramSha256Verifier } from '../../connectors/sql/scram.ts';
import { PwsyncError } from '../../core/errors.ts';
import type { ExtensionEnv, OperationContext, TargetObject } from '../../core/extension.ts';
import { silentLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { verifyPassword } from '../../extensions/builtin/password-hash.ts';
import { loadExtension, type LoadedExtension } from '../../extensions/loader.ts';
import { testDir } from '../lib/dirs.ts';
import { TEST_PASSWORD_PREFIX, testPassword } from '../lib/passwords.ts';
import { startPostgres, type Postgres } from '../lib/postgres.ts';

/**
 * The postgresql connector, its dialect and the builtin:sql-login / builtin:sql-table extensions
 * against a private PostgreSQL 15 (TLS verify-full, passwordcheck, log_statement=all). Login mode
 * is proven by logging in as the role with the new password; table mode by verifying the stored
 * hash with the scheme's own verify function (an application table has no login to try).
 */
let srv: Postgres;
let dir: string;
const log = silentLogger();
type SqlConn = Connector & ObjectSource & IncrementalObjectSource & ExtensionHost;
const connectors: SqlConn[] = [];

function connector(over: { user?: string; passwordFile?: string; port?: number; serverName?: string; query?: string } = {}): SqlConn {
  const c = createConnector(`pg-${connectors.length}`, 'postgresql', {
    host: '127.0.0.1', port: over.port ?? srv.port, database: 'postgres', user: over.user ?? 'pwsync',
    password: { fromFile: over.passwordFile ?? srv.pwsyncPasswordFile },
    tls: { ca: srv.caFile, serverName: over.serverName ?? 'localhost' }, poolSize: 2, timeout: '3s',
    objects: { query: over.query ?? 'SELECT login AS id, login, email FROM app_users ORDER BY login' },
  }, { log, resolvePath: (p) => path.resolve(dir, p), requireSecureConnection: true }) as SqlConn;
  connectors.push(c);
  return c;
}

function extEnv(name: string): ExtensionEnv {
  return { connector: name, log, resolvePath: (p) => path.resolve(dir, p), resolveSecret: (ref, setting) => resolveSecret(ref, setting, dir) };
}

function ctx(name: string): OperationContext {
  return {
    operationId: 'op-1', changeId: 'ch-1', changeTime: Date.now(), connector: name, log,
    account: { domain: 'example.com', samAccountName: 'alice', objectGuid: '', objectSid: '', upn: '', dn: '' },
  };
}

/** One batch of one set through the connector and the extension, as hub/apply.ts runs it. */
async function set(c: SqlConn, ext: LoadedExtension, object: TargetObject, password: Buffer): Promise<void> {
  const { connection, release } = await c.connect();
  try {
    await ext.extension.beginConnection?.(connection);
    await ext.extension.setPassword!(object, Secret.adopt(password), ctx(c.name));
    await ext.extension.endConnection?.();
  } finally {
    await release();
  }
}

async function refused(p: Promise<unknown>, eventId: number, message?: RegExp): Promise<PwsyncError> {
  let err: unknown;
  await p.then(() => assert.fail(`expected event ${eventId}`), (e: unknown) => { err = e; });
  assert.ok(err instanceof PwsyncError, `a PwsyncError, got ${String(err)}`);
  assert.equal(err.eventId, eventId, err.message);
  if (message) assert.match(err.message, message);
  return err;
}

const obj = (id: string): TargetObject => ({ id, attributes: { login: id } });
const pgLogin = async (): Promise<LoadedExtension> => loadExtension({ module: 'builtin:sql-login', settings: {} }, extEnv('pg'));
const pgTable = async (hash: Record<string, unknown>): Promise<LoadedExtension> => loadExtension({
  module: 'builtin:sql-table', settings: { statement: 'UPDATE app_users SET pwhash = :hash WHERE login = :login', params: { login: 'id' }, hash },
}, extEnv('pg'));
async function storedHash(login: string): Promise<string> {
  const a = await srv.admin();
  try {
    return (await a.query('SELECT pwhash FROM app_users WHERE login = $1', [login])).rows[0]?.pwhash as string;
  } finally {
    await a.end();
  }
}

before(async () => {
  dir = testDir('sql-pg');
  srv = await startPostgres(dir);
});

after(async () => {
  for (const c of connectors) await c.close().catch(() => {});
  await srv?.stop();
});

test('scram: the verifier is well formed, and a malformed one is caught before it could be sent', () => {
  const v = scramSha256Verifier(testPassword('scram'));
  assert.ok(isValidScramVerifier(v));
  assert.ok(!isValidScramVerifier('SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB'), 'short keys (PostgreSQL would store it as a clear password)');
  assert.ok(!isValidScramVerifier(v.replace('SCRAM-SHA-256', 'SCRAM-SHA-1')));
  assert.throws(() => scramSha256Verifier(Buffer.from([0x5a, 0xff, 0x41])), /not valid UTF-8/);
  assert.throws(() => scramSha256Verifier(Buffer.from(`${TEST_PASSWORD_PREFIX}ctl\u0007`)), /control character/);
});

test('connector: lists the query\'s rows, finds, tests and says it is encrypted', async () => {
  const c = connector();
  await c.open();
  assert.equal(c.securityLevel(), 'encrypted');
  const all = [];
  for await (const o of c.list()) all.push(o);
  assert.deepEqual(all.map((o) => o.id), ['alice', 'bob', 'carol']);
  assert.deepEqual(all[0]!.attributes, { id: 'alice', login: 'alice', email: 'alice@example.com' });
  assert.deepEqual((await c.find('email', 'BOB@example.com', true)).map((o) => o.id), ['bob']);
  assert.deepEqual(await c.find('email', 'BOB@example.com', false), []);
  assert.deepEqual([...await c.attributes()].sort(), ['email', 'id', 'login']);
  const v1 = await c.version();
  assert.equal(await c.version(), v1);
  const a = await srv.admin();
  await a.query(`UPDATE app_users SET email = 'carol2@example.com' WHERE login = 'carol'`);
  await a.end();
  assert.notEqual(await c.version(), v1, 'the version changes with the rows');
  // Read incrementally for the join index: one query per read, "nothing changed" when the rows did not.
  const first = await c.changedSince(undefined);
  assert.deepEqual({ complete: first.complete, ids: first.objects.map((o) => o.id) }, { complete: true, ids: ['alice', 'bob', 'carol'] });
  assert.deepEqual(await c.changedSince(first.token), { token: first.token, complete: false, objects: [], removed: [] });
  const b = await srv.admin();
  await b.query(`UPDATE app_users SET email = 'carol@example.com' WHERE login = 'carol'`);
  await b.end();
  const again = await c.changedSince(first.token);
  assert.equal(again.complete, true, 'changed rows come back as a complete read (deletions included)');
  assert.equal(again.objects.find((o) => o.id === 'carol')?.attributes.email, 'carol@example.com');
  const said = await c.test();
  assert.match(said, /127\.0\.0\.1:\d+\/postgres as pwsync: connected over TLS, certificate verified/);
  assert.match(said, /returned 3 row\(s\) with columns id, login, email/);
});

test('login mode: hard passwords land intact, proven by logging in as the role; the old one stops working', async () => {
  const c = connector();
  const ext = await pgLogin();
  assert.equal(ext.extension.concurrentSets, 1);
  const labels = [
    'quote\'s "double" \'\'',
    'back\\slash\\\\ end\\',
    'dollar $$ $q$ tag',
    'nbsp\u00A0between',
    'combining e\u0301 a\u0308',
    'unicode ß 日本 😀 ﬁ',
    `long-${'x'.repeat(130)}`,
  ];
  let previous: string | undefined;
  for (const label of labels) {
    const pw = testPassword(label).toString('utf8');
    await set(c, ext, obj('alice'), Buffer.from(pw, 'utf8'));
    assert.ok(await srv.logsIn('alice', pw), `alice logs in with ${JSON.stringify(label)}`);
    if (previous !== undefined) assert.ok(!(await srv.logsIn('alice', previous)), 'the previous password no longer works');
    previous = pw;
  }
});

test('login mode: a password whose SASLprep cannot be reproduced is refused with 6927 and a reason, nothing sent', async () => {
  const c = connector();
  await refused(set(c, await pgLogin(), obj('alice'), testPassword('rtl-שלום')), 6927, /right-to-left/);
  await refused(set(c, await pgLogin(), obj('alice'), testPassword('private-\uE000')), 6927, /private-use/);
  assert.ok(!readFileSync(srv.logFile, 'utf8').includes('rtl-'), 'no statement reached the server');
});

test('login and table mode: an injection attempt changes no statement', async () => {
  const c = connector();
  const login = await pgLogin();
  const hostilePw = testPassword(`x'; ALTER ROLE bob SUPERUSER; DROP TABLE app_users; --`).toString('utf8');
  await set(c, login, obj('bob'), Buffer.from(hostilePw, 'utf8'));
  assert.ok(await srv.logsIn('bob', hostilePw), 'the whole string is the password');
  await refused(set(c, login, obj('alice"; DROP TABLE app_users; --'), testPassword('inj-2')), 6923);
  const table = await pgTable({ scheme: 'scrypt', cost: 1024 });
  await refused(set(c, table, obj(`alice' OR '1'='1`), testPassword('inj-3')), 6923);
  const a = await srv.admin();
  try {
    assert.equal((await a.query('SELECT count(*)::int AS n FROM app_users')).rows[0].n, 3, 'the table is still there, all rows');
    assert.equal((await a.query('SELECT count(*)::int AS n FROM app_users WHERE pwhash IS NOT NULL')).rows[0].n, 0, 'no row got a hash');
    assert.equal((await a.query(`SELECT rolsuper FROM pg_roles WHERE rolname = 'bob'`)).rows[0].rolsuper, false);
  } finally {
    await a.end();
  }
});

test('table mode: each scheme stores a hash its own verify function accepts', async () => {
  const c = connector();
  const schemes: Array<Record<string, unknown>> = [
    { scheme: 'argon2id', memoryCost: 4096, timeCost: 1 },
    { scheme: 'bcrypt', cost: 4 },
    { scheme: 'scrypt', cost: 1024 },
    { scheme: 'pbkdf2', iterations: 1000, digest: 'sha512' },
  ];
  for (const h of schemes) {
    const ext = await pgTable(h);
    assert.equal(ext.extension.concurrentSets, 4);
    const label = `table-${String(h.scheme)} 'q' \\ $$ \u00A0 e\u0301`;
    await set(c, ext, obj('bob'), testPassword(label));
    const stored = await storedHash('bob');
    assert.ok(await verifyPassword(stored, testPassword(label)), `${String(h.scheme)}: ${stored.slice(0, 12)}… verifies`);
    assert.ok(!(await verifyPassword(stored, testPassword(`${label}-wrong`))), `${String(h.scheme)}: a wrong password does not verify`);
  }
  // The application's own scheme, through a hook module.
  const hook = path.join(dir, 'app-hash.mjs');
  writeFileSync(hook, "import { createHash } from 'node:crypto';\nexport default (p) => 'app$' + createHash('sha256').update(p).digest('hex');\n");
  await set(c, await pgTable({ module: hook }), obj('carol'), testPassword('table-hook'));
  const { createHash } = await import('node:crypto');
  assert.equal(await storedHash('carol'), `app$${createHash('sha256').update(testPassword('table-hook')).digest('hex')}`);
});

test('refusals: passwordcheck → 6927, no role / no row → 6923, bcrypt over 72 bytes → 6927, nothing stored', async () => {
  const c = connector();
  // passwordcheck can only check "equals the role name" on a verifier: this one is the role name, not a secret.
  const e = await refused(set(c, await pgLogin(), obj('bob'), Buffer.from('bob')), 6927, /PostgreSQL refused it: password must not equal user name/);
  assert.equal(e.retryable, false);
  await refused(set(c, await pgLogin(), obj('nobody'), testPassword('no-role')), 6923, /nobody/);
  await refused(set(c, await pgTable({ scheme: 'scrypt', cost: 1024 }), obj('dave'), testPassword('no-row')), 6923, /dave/);
  await refused(set(c, await pgTable({ scheme: 'bcrypt', cost: 4 }), obj('alice'), testPassword('y'.repeat(70))), 6927, /72 bytes/);
  assert.equal(await storedHash('alice'), null);
});

test('privileges: an account without CREATEROLE or UPDATE → 6942 naming the privilege and the account', async () => {
  const c = connector({ user: 'norights', passwordFile: srv.norightsPasswordFile });
  await refused(set(c, await pgLogin(), obj('alice'), testPassword('norights-1')), 6942, /"norights".*CREATEROLE/);
  await refused(set(c, await pgTable({ scheme: 'scrypt', cost: 1024 }), obj('alice'), testPassword('norights-2')), 6942, /GRANT UPDATE ON app_users TO norights/);
  const wrong = path.join(dir, 'wrong-password');
  writeFileSync(wrong, 'not-the-password\n', { mode: 0o600 });
  await refused(connector({ passwordFile: wrong }).connect(), 6942, /refused to log the service account "pwsync" in/);
});

test('TLS: a server without TLS or a certificate for another name → 6951, and no more than the TLS request was sent', async () => {
  const received: Buffer[] = [];
  const plain = net.createServer((s) => {
    s.on('data', (d) => { received.push(d); s.write('N'); });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  try {
    const c = connector({ port: (plain.address() as net.AddressInfo).port });
    await refused(c.connect(), 6951, /TLS|SSL/);
    const all = Buffer.concat(received);
    // PostgreSQL's SSLRequest: length 8, code 80877103; then pg gives up.
    assert.deepEqual([...all], [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  } finally {
    await new Promise((r) => plain.close(r));
  }
  await refused(connector({ serverName: 'db.example.com' }).connect(), 6951, /db\.example\.com|altname|certificate/i);
});

test('requireSecureConnection: false without a CA: the connector says plain, and this server (hostssl only) refuses it with 6951', async () => {
  const c = createConnector('pg-plain', 'postgresql', {
    host: '127.0.0.1', port: srv.port, database: 'postgres', user: 'pwsync', password: { fromFile: srv.pwsyncPasswordFile },
    objects: { query: 'SELECT 1 AS id' },
  }, { log, resolvePath: (p) => path.resolve(dir, p), requireSecureConnection: false }) as SqlConn;
  connectors.push(c);
  assert.equal(c.securityLevel(), 'plain');
  await refused(c.connect(), 6951, /only encrypted connections/);
});

test('server down → retryable 6940; after a restart the next set lands', async () => {
  const c = connector();
  const ext = await pgLogin();
  await c.open();
  await srv.stop();
  const e = await refused(set(c, ext, obj('alice'), testPassword('down-1')), 6940);
  assert.equal(e.retryable, true);
  await srv.restart();
  const pw = testPassword('after-restart').toString('utf8');
  await set(c, ext, obj('alice'), Buffer.from(pw, 'utf8'));
  assert.ok(await srv.logsIn('alice', pw));
});

test('secrecy: the server log has every ALTER ROLE (log_statement=all) and no test password', () => {
  const text = readFileSync(srv.logFile, 'utf8');
  assert.match(text, /statement: ALTER ROLE "alice" PASSWORD 'SCRAM-SHA-256\$4096:/, 'statements are logged');
  assert.ok(!text.includes(TEST_PASSWORD_PREFIX), 'no test password in the PostgreSQL log');
  assert.ok(!text.includes(Buffer.from(TEST_PASSWORD_PREFIX).toString('base64')), 'nor in base64');
});
