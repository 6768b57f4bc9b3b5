import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadDialect, SQL_DIALECTS } from '../../connectors/sql/sql.ts';
import { UsageError } from '../../core/errors.ts';
import { silentLogger } from '../../core/log.ts';
import { loadExtension } from '../../extensions/loader.ts';

const env = {
  connector: 'appdb', log: silentLogger(), resolvePath: (p: string) => `/srv/pwsync/${p}`,
  resolveSecret: () => { throw new Error('no secrets here'); },
};

test('dialects load lazily: a driver that is not installed is a UsageError naming the npm install line', async () => {
  const table = SQL_DIALECTS as Record<string, unknown>;
  table.fakedb = { driverPackage: 'fakedb-driver', load: () => import('pwsync-no-such-driver' as string) };
  try {
    await assert.rejects(loadDialect('fakedb' as 'db2', 'warehouse'), (e: unknown) => e instanceof UsageError && /connector warehouse: the fakedb driver is not installed: run `npm install fakedb-driver`/.test(e.message));
  } finally {
    delete table.fakedb;
  }
  assert.equal((await loadDialect('postgresql', 'x')).driverPackage, 'pg');
});

test('builtin extensions: loaded by name, settings checked at start-up, an unknown name lists the built-in ones', async () => {
  const login = await loadExtension({ module: 'builtin:sql-login', settings: { login: 'login' } }, env);
  assert.equal(login.source, 'builtin:sql-login');
  assert.ok(login.canSet);
  await assert.rejects(loadExtension({ module: 'builtin:sql-nope', settings: {} }, env), (e: unknown) => e instanceof UsageError && /builtin:sql-login, builtin:sql-table/.test(e.message));
  const table = (settings: Record<string, unknown>) => loadExtension({ module: 'builtin:sql-table', settings }, env);
  const ok = { statement: 'UPDATE app_users SET pwhash = :hash WHERE login = :login', params: { login: 'id' }, hash: { scheme: 'pbkdf2', iterations: 1000 } };
  assert.ok((await table(ok)).canSet);
  const refusedWith = async (settings: Record<string, unknown>, re: RegExp) => assert.rejects(table(settings), (e: unknown) => e instanceof UsageError && re.test(e.message));
  await refusedWith({ ...ok, statement: 'DELETE FROM app_users WHERE login = :login' }, /must be an UPDATE/);
  await refusedWith({ ...ok, statement: 'UPDATE app_users SET pwhash = :hash', params: {} }, /no WHERE parameter/);
  await refusedWith({ ...ok, statement: 'UPDATE app_users SET pwhash = :hash WHERE login = :user' }, /:user; say in params/);
  await refusedWith({ ...ok, statement: 'UPDATE app_users SET pwhash = :login WHERE login = :login' }, /must store :hash/);
  await refusedWith({ ...ok, hash: { scheme: 'md5' } }, /hash\.scheme "md5" is not known/);
  await refusedWith({ ...ok, hash: { scheme: 'scrypt', cost: 1000 } }, /power of two/);
  await refusedWith({ ...ok, hash: { scheme: 'bcrypt', rounds: 10 } }, /unknown setting rounds for bcrypt/);
});

test('postgresql errors: recorded pg error shapes map to the events an admin acts on', async () => {
  const { mapPgError } = await import('../../connectors/sql/postgresql.ts');
  const ctx = { connector: 'appdb', operation: 'set the password of role "alice"', object: 'alice' };
  const map = (e: object, verb?: string) => mapPgError(Object.assign(new Error((e as { message: string }).message), e), ctx, 'pwsync', verb);
  const cases: Array<[object, number, boolean, RegExp?]> = [
    [{ code: '22023', routine: 'check_password', message: 'password must not equal user name' }, 6927, false, /must not equal user name/],
    [{ code: '42704', message: 'role "alice" does not exist' }, 6923, false, /alice/],
    [{ code: '42501', message: 'permission denied' }, 6942, false, /"pwsync".*ALTER ROLE pwsync CREATEROLE/],
    [{ code: '42501', message: 'must be superuser to alter superuser roles or change superuser attribute' }, 6942, false, /superuser/],
    [{ code: '28P01', message: 'password authentication failed for user "pwsync"' }, 6942, false, /refused to log the service account "pwsync" in/],
    [{ code: '28000', message: 'pg_hba.conf rejects connection for host "127.0.0.1", user "pwsync", database "postgres", no encryption' }, 6951, false],
    [{ code: '40P01', message: 'deadlock detected' }, 6940, true],
    [{ code: '40001', message: 'could not serialize access due to concurrent update' }, 6940, true],
    [{ code: '57P01', message: 'terminating connection due to administrator command' }, 6940, true],
    [{ code: '57014', message: 'canceling statement due to statement timeout' }, 6940, true],
    [{ code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:5432' }, 6940, true],
    [{ message: 'Connection terminated due to connection timeout' }, 6940, true],
    [{ message: 'Query read timeout' }, 6940, true],
    [{ code: 'ERR_TLS_CERT_ALTNAME_INVALID', message: 'Hostname/IP does not match certificate\'s altnames' }, 6951, false],
    [{ code: 'DEPTH_ZERO_SELF_SIGNED_CERT', message: 'self-signed certificate' }, 6951, false],
    [{ message: 'The server does not support SSL connections' }, 6951, false],
  ];
  for (const [shape, eventId, retryable, re] of cases) {
    const e = map(shape);
    assert.equal(e.eventId, eventId, JSON.stringify(shape));
    assert.equal(e.retryable, retryable, JSON.stringify(shape));
    if (re) assert.match(e.message, re);
  }
  assert.match(map({ code: '42501', message: 'permission denied for table app_users' }, 'UPDATE').message, /GRANT UPDATE ON app_users TO pwsync/);
});
