import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import * as mariadb from 'mariadb';
import pino from 'pino';
import { PwsyncError } from '../../core/errors.ts';
import { Secret } from '../../core/secret.ts';
import type { SqlPool, SqlSession } from '../../connectors/sql/contract.ts';
import { mapMariadbError, mariadbDialect, PINNED_SQL_MODE } from '../../connectors/sql/mariadb.ts';
import { SqlConnector } from '../../connectors/sql/sql.ts';
import { testDir } from '../lib/dirs.ts';
import { startMariadb, type TestMariadb } from '../lib/mariadb.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * The MariaDB dialect against a real, private MariaDB 10.11 (test/lib/mariadb.ts): TLS verified,
 * require_secure_transport=ON, simple_password_check loaded. Its general log is OFF on purpose:
 * MariaDB would write every ALTER USER … IDENTIFIED BY 'clear password' there; the secrecy scan
 * covers the server's data directory (under PWSYNC_TEST_ROOT). Every password change is proven by
 * a real TLS login with the new password, and the old one refused with 1045.
 */

let db: TestMariadb;
const pools: SqlPool[] = [];

interface PoolOptions { database?: string; user?: 'pwsync' | 'norights'; password?: Buffer; ca?: string | null; serverName?: string; requireSecure?: boolean; port?: number; poolSize?: number }

async function pool(o: PoolOptions = {}): Promise<SqlPool> {
  const user = o.user ?? 'pwsync';
  const p = await mariadbDialect.createPool({
    host: '127.0.0.1', port: o.port ?? db.port, database: o.database ?? 'app', user,
    tls: { ...(o.ca === null ? {} : { ca: o.ca ?? db.caFile }), ...(o.serverName ? { serverName: o.serverName } : {}) },
    poolSize: o.poolSize ?? 2, timeoutMs: 5_000,
  }, Secret.adopt(Buffer.from(o.password ?? db.passwords[user])), { connector: 'mdb', requireSecureConnection: o.requireSecure ?? true, resolvePath: (x) => x });
  pools.push(p);
  return p;
}

async function withSession<T>(p: SqlPool, fn: (s: SqlSession) => Promise<T>, broken = false): Promise<T> {
  const { session, release } = await p.acquire();
  try {
    return await fn(session);
  } finally {
    await release(broken);
  }
}

/** A real login as `user` over verified TLS; resolves to its CURRENT_USER() and TLS version. */
async function login(user: string, password: Buffer): Promise<{ user: string; tls: string }> {
  const c = await mariadb.createConnection({
    host: '127.0.0.1', port: db.port, user, password: password.toString('utf8'), charset: 'utf8mb4',
    ssl: { ca: db.ca, rejectUnauthorized: true }, connectTimeout: 5_000,
  });
  try {
    const [row] = await c.query('SELECT CURRENT_USER() AS u, (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = \'SSL_VERSION\') AS v');
    return { user: String(row.u), tls: String(row.v) };
  } finally {
    await c.end();
  }
}

async function loginRefused(user: string, password: Buffer): Promise<void> {
  await assert.rejects(login(user, password), (e: { errno?: number }) => e.errno === 1045);
}

const secret = (b: Buffer): Secret => Secret.adopt(Buffer.from(b));
const tableRows = (): number => Number(db.admin('SELECT COUNT(*) FROM app.app_users;').trim());

/** Asserts a PwsyncError with that event, none of `secrets` in its message or its cause's. */
function pwsyncError(eventId: number, pattern: RegExp, secrets: Buffer[] = []): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof PwsyncError, `not a PwsyncError: ${String(e)}`);
    assert.equal(e.eventId, eventId, e.message);
    assert.match(e.message, pattern);
    const cause = e.cause instanceof Error ? `${e.cause.message} ${String((e.cause as { sql?: unknown }).sql ?? '')}` : '';
    for (const s of secrets) {
      assert.ok(!e.message.includes(s.toString('utf8')), 'the password is in the error message');
      assert.ok(!cause.includes(s.toString('utf8')), 'the password is in the error\'s cause');
    }
    return true;
  };
}

before(async () => {
  db = await startMariadb(testDir('mariadb'));
});

after(async () => {
  for (const p of pools) await p.close().catch(() => {});
  await db?.stop();
});

describe('connection', () => {
  test('a session is TLS-verified, with sql_mode pinned whatever the server\'s global mode', async () => {
    db.admin('SET GLOBAL sql_mode = \'NO_BACKSLASH_ESCAPES,ANSI_QUOTES\';');
    try {
      const p = await pool();
      const r = await withSession(p, (s) => s.query('SELECT @@sql_mode AS m, CURRENT_USER() AS u, (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = \'SSL_VERSION\') AS v'));
      assert.equal(r.rowCount, 1);
      assert.equal(r.rows[0]!.m, PINNED_SQL_MODE);
      assert.equal(r.rows[0]!.u, 'pwsync@127.0.0.1');
      assert.match(String(r.rows[0]!.v), /^TLSv1\.[23]$/);
    } finally {
      db.admin(`SET GLOBAL sql_mode = '${PINNED_SQL_MODE}';`);
    }
  });

  test('a certificate for another name is refused with 6951, before anything is sent', async () => {
    const p = await pool({ serverName: 'db.example.com' });
    await assert.rejects(p.acquire(), pwsyncError(6951, /ERR_TLS_CERT_ALTNAME_INVALID.*db\.example\.com.*nothing was sent/s, [db.passwords.pwsync]));
  });

  test('no CA configured: the self-signed server is not trusted (6951)', async () => {
    const p = await pool({ ca: null });
    await assert.rejects(p.acquire(), pwsyncError(6951, /TLS|certificate/i, [db.passwords.pwsync]));
  });

  test('plain (requireSecureConnection: false, no CA) against require_secure_transport: 1045 → 6942 saying why it may be TLS', async () => {
    const p = await pool({ ca: null, requireSecure: false });
    await assert.rejects(p.acquire(), pwsyncError(6942, /1045.*require_secure_transport/s, [db.passwords.pwsync]));
  });

  test('a wrong service password is 6942 naming the account', async () => {
    const p = await pool({ password: testPassword('wrong-Service-1') });
    await assert.rejects(p.acquire(), pwsyncError(6942, /refused the service account.*pwsync/s));
  });
});

describe('login mode: ALTER USER through the connector\'s client-side escaping', () => {
  // Each satisfies simple_password_check (8+, a digit, upper and lower case, another character).
  const hard: Array<[string, Buffer]> = [
    ['quotes', testPassword('Qu\'ote"dbl`tick-1')],
    ['backslashes, one at the end', testPassword('Back\\slash\\\\-2\\')],
    ['dollar quoting', testPassword('$$dollar$$ $tag$-3')],
    ['NBSP', testPassword('nbsp\u00A0space-4')],
    ['combining character', testPassword('combining-e\u0301-5')],
    ['Unicode beyond the BMP', testPassword('ünï-ś-日本-😀-6')],
    ['150 characters', testPassword(`long-7-${'Xy9-'.repeat(36)}`)],
    ['quote injection', testPassword('x\' ; DROP TABLE app.app_users; -- 8')],
    ['backslash-quote injection', testPassword('bs\\\' ; DROP TABLE app.app_users; -- 9')],
    ['backslash-quote with a hash comment', testPassword('\\\'); DROP TABLE app.app_users; #10')],
  ];
  let current: Buffer = Buffer.alloc(0);

  before(() => {
    current = db.passwords.alice;
  });

  test('each password lands intact: a TLS login with it works, the previous one is refused, the table survives', async () => {
    const p = await pool();
    const rows = tableRows();
    for (const [label, pw] of hard) {
      await withSession(p, (s) => s.setLoginPassword('alice', secret(pw)));
      const who = await login('alice', pw);
      assert.equal(who.user, 'alice@%', label);
      assert.match(who.tls, /^TLSv1\.[23]$/, label);
      await loginRefused('alice', current);
      assert.equal(tableRows(), rows, `${label}: the table is intact`);
      current = pw;
    }
    assert.ok(hard.find(([l]) => l === '150 characters')![1].toString('utf8').length >= 128);
  });

  test('the combining character is not normalised: the precomposed form does not log in', async () => {
    const p = await pool();
    const decomposed = testPassword('norm-e\u0301-Zz1');
    await withSession(p, (s) => s.setLoginPassword('bob', secret(decomposed)));
    assert.equal((await login('bob', decomposed)).user, 'bob@%');
    await loginRefused('bob', testPassword('norm-\u00e9-Zz1'));
  });

  test('under NO_BACKSLASH_ESCAPES in the session the escaping follows: injections stay inert, logins work', async () => {
    const p = await pool();
    const rows = tableRows();
    const { session, release } = await p.acquire();
    try {
      await session.query('SET SESSION sql_mode = CONCAT(@@sql_mode, \',NO_BACKSLASH_ESCAPES\')');
      assert.match(String((await session.query('SELECT @@sql_mode AS m')).rows[0]!.m), /NO_BACKSLASH_ESCAPES/);
      const nbe: Buffer[] = [
        testPassword('nbe x\' ; DROP TABLE app.app_users; -- 11'),
        testPassword('nbe bs\\\' ; DROP TABLE app.app_users; -- 12'),
        testPassword('nbe \\\\ two-13\\'),
      ];
      for (const pw of nbe) {
        await session.setLoginPassword('alice', secret(pw));
        assert.equal((await login('alice', pw)).user, 'alice@%');
        await loginRefused('alice', current);
        assert.equal(tableRows(), rows);
        current = pw;
      }
    } finally {
      await release(true); // the session left the pinned sql_mode: do not lend it again
    }
  });

  test('the server\'s policy refusal (simple_password_check) is 6927 with its reason, told apart from a missing user (6923)', async () => {
    const p = await pool();
    const weak = testPassword('nodigits');
    await assert.rejects(withSession(p, (s) => s.setLoginPassword('alice', secret(weak))),
      pwsyncError(6927, /simple_password_check: Not enough digits/, [weak]));
    assert.equal((await login('alice', current)).user, 'alice@%');
    const good = testPassword('Nobody-Good-1');
    await assert.rejects(withSession(p, (s) => s.setLoginPassword('nobody', secret(good))),
      pwsyncError(6923, /'nobody'@'%'.*1410/s, [good]));
    // The host option: alice exists only as alice@%.
    await assert.rejects(withSession(p, (s) => s.setLoginPassword('alice', secret(good), { host: '127.0.0.1' })),
      pwsyncError(6923, /'alice'@'127\.0\.0\.1'/, [good]));
    await loginRefused('alice', good);
  });

  test('a password that cannot be passed safely is refused with 6927 and a reason, and nothing is sent', async () => {
    const p = await pool();
    const withNul = Buffer.concat([testPassword('nul-A1'), Buffer.from([0]), Buffer.from('x')]);
    const notUtf8 = Buffer.concat([testPassword('latin-A1'), Buffer.from([0xe9, 0xff])]);
    await assert.rejects(withSession(p, (s) => s.setLoginPassword('alice', secret(withNul))), pwsyncError(6927, /NUL.*nothing was sent/s));
    await assert.rejects(withSession(p, (s) => s.setLoginPassword('alice', secret(notUtf8))), pwsyncError(6927, /not valid UTF-8/));
    assert.equal((await login('alice', current)).user, 'alice@%');
  });

  test('a service account without CREATE USER gets 6942 naming the privilege', async () => {
    const p = await pool({ user: 'norights' });
    const pw = testPassword('Norights-Try-1');
    await assert.rejects(withSession(p, (s) => s.setLoginPassword('alice', secret(pw))), pwsyncError(6942, /CREATE USER/, [pw]));
    await loginRefused('alice', pw);
  });
});

describe('statements with :params (table mode\'s UPDATE)', () => {
  test('rowCount is 1 for the row, 1 for the same value again (found rows), 0 for no such row', async () => {
    const p = await pool();
    const hash = '$argon2id$v=19$it\'s "quoted" \\ :notaparam';
    await withSession(p, async (s) => {
      assert.equal((await s.query('UPDATE app_users SET pwhash = :hash WHERE login = :login', { hash, login: 'alice' })).rowCount, 1);
      assert.equal((await s.query('UPDATE app_users SET pwhash = :hash WHERE login = :login', { hash, login: 'alice' })).rowCount, 1);
      assert.equal((await s.query('UPDATE app_users SET pwhash = :hash WHERE login = :login', { hash, login: 'nobody' })).rowCount, 0);
      const r = await s.query('SELECT pwhash FROM app_users WHERE login = :login', { login: 'alice' });
      assert.deepEqual(r.rows.map((x) => x.pwhash), [hash]);
      assert.equal(r.rowCount, 1);
    });
  });

  test('a :name without a value is refused before anything runs (6922)', async () => {
    const p = await pool();
    await assert.rejects(withSession(p, (s) => s.query('UPDATE app_users SET pwhash = :hash WHERE login = :login', { hash: 'h' })),
      pwsyncError(6922, /:login/));
    assert.equal(db.admin('SELECT pwhash FROM app.app_users WHERE login = \'bob\';').trim(), 'x');
  });

  test('without UPDATE on the table: 6942 naming UPDATE', async () => {
    const p = await pool({ user: 'norights' });
    await assert.rejects(withSession(p, (s) => s.query('UPDATE app_users SET pwhash = :h WHERE login = :l', { h: 'y', l: 'bob' })),
      pwsyncError(6942, /UPDATE command denied/));
  });

  test('without any right on the configured database: 6942 at connect, naming the database', async () => {
    const p = await pool({ user: 'norights', database: 'mysql' });
    await assert.rejects(p.acquire(), pwsyncError(6942, /no access to that database.*'mysql'/s, [db.passwords.norights]));
  });
});

describe('busy server: locks and the pool', () => {
  test('a lock wait timeout (1205) is retryable; the row is updated once the lock is gone', async () => {
    const p = await pool();
    const holder = await mariadb.createConnection({ host: '127.0.0.1', port: db.port, user: 'pwsync', password: db.passwords.pwsync.toString('utf8'), database: 'app', ssl: { ca: db.ca, rejectUnauthorized: true } });
    try {
      await holder.beginTransaction();
      await holder.query('SELECT * FROM app_users WHERE login = ? FOR UPDATE', ['bob']);
      await withSession(p, async (s) => {
        await s.query('SET SESSION innodb_lock_wait_timeout = 1');
        await assert.rejects(s.query('UPDATE app_users SET pwhash = :h WHERE login = :l', { h: 'locked', l: 'bob' }),
          pwsyncError(6940, /lock wait timed out.*1205/s));
      }, true);
      await holder.rollback();
      assert.equal((await withSession(p, (s) => s.query('UPDATE app_users SET pwhash = :h WHERE login = :l', { h: 'unlocked', l: 'bob' }))).rowCount, 1);
    } finally {
      await holder.end();
    }
  });

  test('a deadlock (1213, recorded driver shape) is retryable', () => {
    const e = Object.assign(new Error('(conn:5, no: 1213, SQLState: 40001) Deadlock found when trying to get lock; try restarting transaction'),
      { errno: 1213, sqlState: '40001', code: 'ER_LOCK_DEADLOCK', fatal: false, text: 'Deadlock found when trying to get lock; try restarting transaction' });
    const m = mapMariadbError(e, { connector: 'mdb', operation: 'run a statement' });
    assert.equal(m.eventId, 6940);
    assert.equal(m.retryable, true);
    assert.match(m.message, /deadlock/);
  });

  test('poolSize bounds the connections: a second acquire waits for a release', async () => {
    const p = await pool({ poolSize: 1 });
    const first = await p.acquire();
    const id1 = (await first.session.query('SELECT CONNECTION_ID() AS id')).rows[0]!.id;
    let second: Awaited<ReturnType<SqlPool['acquire']>> | undefined;
    const waiting = p.acquire().then((l) => { second = l; return l; });
    await first.session.query('SELECT 1 AS one');
    assert.equal(second, undefined, 'a second connection was lent beyond poolSize 1');
    await first.release();
    const lent = await waiting;
    assert.equal((await lent.session.query('SELECT CONNECTION_ID() AS id')).rows[0]!.id, id1, 'the same connection was reused');
    await lent.release();
  });
});

describe('through the SQL connector (connectors/sql/sql.ts)', () => {
  test('`connector test` reports TLS and the objects query; a session sets a password', async () => {
    process.env.PWSYNC_TEST_MARIADB_SVC = db.passwords.pwsync.toString('utf8');
    const c = new SqlConnector('mdb', 'mariadb', {
      host: '127.0.0.1', port: db.port, database: 'app', user: 'pwsync', password: { fromEnv: 'PWSYNC_TEST_MARIADB_SVC' },
      tls: { ca: db.caFile }, poolSize: 2, timeout: '5s', objects: { query: 'SELECT login AS id, login FROM app_users', anchor: 'id' },
    }, { log: pino({ level: 'silent' }), resolvePath: (x) => x });
    try {
      assert.equal(c.securityLevel(), 'encrypted');
      assert.match(await c.test(), /connected over TLS.*returned 2 row\(s\) with columns id, login/s);
      assert.deepEqual((await c.find('id', 'bob', false)).map((o) => o.id), ['bob']);
      const pw = testPassword('via-Connector-14');
      const lent = await c.connect();
      try {
        const conn = lent.connection as unknown as { session: SqlSession };
        await conn.session.setLoginPassword('bob', secret(pw));
      } finally {
        await lent.release();
      }
      assert.equal((await login('bob', pw)).user, 'bob@%');
    } finally {
      await c.close();
      delete process.env.PWSYNC_TEST_MARIADB_SVC;
    }
  });
});

describe('the server goes away', () => {
  test('stopped: retryable errors (old and new sessions); restarted: the change lands', async () => {
    const p = await pool();
    const pw = testPassword('after-Restart-15');
    const held = await p.acquire();
    await held.session.query('SELECT 1 AS one');
    await db.stop();
    try {
      await assert.rejects(held.session.setLoginPassword('bob', secret(pw)), (e) => e instanceof PwsyncError && e.retryable && e.eventId === 6940);
      await held.release(true);
      await assert.rejects(withSession(p, (s) => s.setLoginPassword('bob', secret(pw))), (e) => e instanceof PwsyncError && e.retryable && /ECONNREFUSED|reached/.test(e.message));
    } finally {
      await db.start();
    }
    await withSession(p, (s) => s.setLoginPassword('bob', secret(pw)));
    assert.equal((await login('bob', pw)).user, 'bob@%');
  });

  test('a server without TLS while TLS is required: 6951, and neither the account nor its password is sent', async () => {
    await db.stop();
    const seen: Buffer[] = [];
    const proxy = net.createServer((client) => {
      const upstream = net.connect(db.port, '127.0.0.1');
      client.on('data', (d) => { seen.push(Buffer.from(d)); upstream.write(d); });
      upstream.on('data', (d) => client.write(d));
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    try {
      await db.start({ tls: false });
      await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
      const p = await pool({ port: (proxy.address() as net.AddressInfo).port });
      await assert.rejects(p.acquire(), pwsyncError(6951, /nothing was sent/, [db.passwords.pwsync]));
      const sent = Buffer.concat(seen);
      assert.equal(sent.indexOf('pwsync'), -1, 'the service account name was sent');
      assert.equal(sent.indexOf(db.passwords.pwsync), -1, 'the service password was sent');
    } finally {
      proxy.close();
      await db.stop();
      await db.start();
    }
    assert.equal((await withSession(await pool(), (s) => s.query('SELECT 1 AS one'))).rowCount, 1);
  });
});
