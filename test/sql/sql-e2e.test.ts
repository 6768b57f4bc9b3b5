import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import mariadb from 'mariadb';
import { DOMAIN, Lab, spawnPwsync, until } from '../../cli/lab.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { Secret } from '../../core/secret.ts';
import { sendHookChange } from '../../notifier/hook-client.ts';
import { verifyPassword } from '../../extensions/builtin/password-hash.ts';
import { queryStatus } from '../../hub/admin.ts';
import { SETTLED_STATES, type OperationStatus } from '../../hub/records.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';
import { startMariadb, type TestMariadb } from '../lib/mariadb.ts';
import { testPassword } from '../lib/passwords.ts';
import { startPostgres, type Postgres } from '../lib/postgres.ts';

/**
 * Databases end to end through the hub: `pwsync hook` → notifier → hub → builtin:sql-login /
 * builtin:sql-table → a private PostgreSQL 15 and MariaDB 10.11, both over verified TLS.
 * Accounts are split so that each connector joins only its own: MariaDB login alice (happy),
 * bob (simple_password_check), ghost (no such user); MariaDB table tina (happy), nobody (no row);
 * PostgreSQL login pat (password = role name), carol (no such role); PostgreSQL table u00–u09
 * (the restart run); dave behind pwsync's own policy (minLength 40).
 */
let pgs: Postgres;
let mdb: TestMariadb;
let lab: Lab;
let broker: ReturnType<typeof openSqliteBroker>;
let state: HubState;
const USERS = Array.from({ length: 10 }, (_, i) => `u0${i}`);

async function hook(sam: string, password: Buffer): Promise<void> {
  const p = spawnPwsync(['hook', '--socket', lab.hookSocket, '--domain', DOMAIN, '--sam', sam], { stdin: Buffer.concat([password, Buffer.from('\n')]) });
  assert.equal(await p.exited, 0, `pwsync hook failed: ${p.stderr()}`);
}

async function ops(sam: string, connector: string): Promise<OperationStatus[]> {
  return (await queryStatus(state, { account: { samAccountName: sam }, connector })).operations.sort((a, b) => a.changeTime - b.changeTime);
}

async function settled(sam: string, connector: string, count: number): Promise<OperationStatus[]> {
  return until(`${count} settled operation(s) for ${sam} on ${connector}`, 60_000, async () => {
    const o = await ops(sam, connector);
    return o.length >= count && o.every((x) => SETTLED_STATES.has(x.state)) ? o : undefined;
  });
}

/** A real MariaDB login over verified TLS; the TLS version the session runs on. */
async function mariadbLogin(user: string, password: Buffer): Promise<string> {
  const c = await mariadb.createConnection({
    host: '127.0.0.1', port: mdb.port, user, password: password.toString('utf8'), charset: 'utf8mb4',
    ssl: { ca: mdb.ca, rejectUnauthorized: true }, connectTimeout: 5_000,
  });
  try {
    const [row] = await c.query('SELECT CURRENT_USER() AS u, (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = \'SSL_VERSION\') AS v');
    assert.equal(String(row.u), `${user}@%`);
    return String(row.v);
  } finally {
    await c.end();
  }
}

async function pgHash(login: string): Promise<string | null> {
  const a = await pgs.admin();
  try {
    return (await a.query('SELECT pwhash FROM app_users WHERE login = $1', [login])).rows[0]?.pwhash as string | null;
  } finally {
    await a.end();
  }
}

const mdbHash = (login: string): string => mdb.admin(`SELECT pwhash FROM app.app_users WHERE login = '${login}';`).trim();

function sql(name: string, kind: 'postgresql' | 'mariadb', query: string, extension: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const pg = kind === 'postgresql';
  return {
    name, kind, enabled: true,
    connection: {
      host: '127.0.0.1', port: pg ? pgs.port : mdb.port, database: pg ? 'postgres' : 'app', user: 'pwsync',
      password: { fromFile: pg ? pgs.pwsyncPasswordFile : path.join(mdb.dir, 'pwsync-password') },
      tls: { ca: pg ? pgs.caFile : mdb.caFile, serverName: 'localhost' }, poolSize: 2, timeout: '3s',
      objects: { query, anchor: 'id' },
    },
    join: [{ target: 'id', source: 'sAMAccountName' }],
    extension, retry: { count: 3, interval: '500ms' }, concurrency: 2, batchSize: 10, timeout: '10s', ...extra,
  };
}

const login = { module: 'builtin:sql-login', settings: {} };
const table = (hash: Record<string, unknown>): Record<string, unknown> => ({
  module: 'builtin:sql-table', settings: { statement: 'UPDATE app_users SET pwhash = :hash WHERE login = :login', params: { login: 'id' }, hash },
});

before(async () => {
  [pgs, mdb] = await Promise.all([startPostgres(testDir('sql-e2e-pg')), startMariadb(testDir('sql-e2e-mariadb'))]);
  // The service account's password in a file: a random one, not a test password (the scan would rightly flag it).
  const svc = `Svc-1${randomBytes(12).toString('hex')}`;
  writeFileSync(path.join(mdb.dir, 'pwsync-password'), `${svc}\n`, { mode: 0o600 });
  mdb.admin([
    `ALTER USER 'pwsync'@'127.0.0.1' IDENTIFIED BY '${svc}';`,
    'INSERT INTO app.app_users VALUES (\'ghost\', \'x\'), (\'tina\', \'x\');',
  ].join('\n'));
  const a = await pgs.admin();
  try {
    await a.query('CREATE ROLE pat LOGIN');
    await a.query(`INSERT INTO app_users (login, email) VALUES ('pat', 'p@example.com'), ('dave', 'd@example.com'), ${USERS.map((u) => `('${u}', '${u}@example.com')`).join(', ')}`);
  } finally {
    await a.end();
  }
  lab = await Lab.create({
    root: testDir('sql-e2e'), connectors: [],
    hubConnectors: [
      sql('mdb-login', 'mariadb', 'SELECT login AS id FROM app_users WHERE login IN (\'alice\', \'bob\', \'ghost\')', login),
      // "nobody" is listed but has no row: the UPDATE finds nothing (a row deleted behind the join).
      sql('mdb-table', 'mariadb', 'SELECT login AS id FROM app_users WHERE login = \'tina\' UNION ALL SELECT \'nobody\'', table({ scheme: 'bcrypt', cost: 4 })),
      sql('pg-login', 'postgresql', 'SELECT login AS id FROM app_users WHERE login IN (\'pat\', \'carol\')', login),
      sql('pg-table', 'postgresql', 'SELECT login AS id FROM app_users WHERE login LIKE \'u%\'', table({ scheme: 'argon2id', memoryCost: 1024, timeCost: 1 }),
        { retry: { count: 100, interval: '300ms' }, concurrency: 4 }),
      sql('pg-policed', 'postgresql', 'SELECT login AS id FROM app_users WHERE login = \'dave\'', table({ scheme: 'argon2id', memoryCost: 1024, timeCost: 1 }),
        { policy: { minLength: 40 } }),
    ],
  });
  await lab.startHub();
  await lab.startNotifier();
  broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
  state = await HubState.open(broker);
});

after(async () => {
  await broker?.close();
  await lab?.stopAll();
  await Promise.all([pgs?.stop(), mdb?.stop()]);
});

test('MariaDB login mode: alice logs in over TLS with the new password, the old one is refused', async () => {
  const pw = testPassword('mdb-Alice-2');
  await hook('alice', pw);
  const [op] = await settled('alice', 'mdb-login', 1);
  assert.equal(op!.state, 'successful', op!.reason);
  assert.match(await mariadbLogin('alice', pw), /^TLSv1\.[23]$/);
  await assert.rejects(mariadbLogin('alice', mdb.passwords.alice), (e: { errno?: number }) => e.errno === 1045, 'the old password is refused');
});

test('table mode on MariaDB and PostgreSQL: the stored hash verifies with the new password', async () => {
  const tina = testPassword('mdb-Tina-3');
  await hook('tina', tina);
  const [op] = await settled('tina', 'mdb-table', 1);
  assert.equal(op!.state, 'successful', op!.reason);
  assert.match(mdbHash('tina'), /^\$2[aby]\$04\$/);
  assert.ok(await verifyPassword(mdbHash('tina'), tina));
  assert.ok(!(await verifyPassword(mdbHash('tina'), testPassword('mdb-Tina-other'))));

  const u = testPassword('pg-u00-first');
  await hook('u00', u);
  const [pop] = await settled('u00', 'pg-table', 1);
  assert.equal(pop!.state, 'successful', pop!.reason);
  const stored = await pgHash('u00');
  assert.match(stored ?? '', /^\$argon2id\$/);
  assert.ok(await verifyPassword(stored!, u));
});

test('pwsync\'s own policy (minLength 40): 6927 once, never retried, nothing written', async () => {
  await hook('dave', testPassword('short-Dave-1'));
  const [op] = await settled('dave', 'pg-policed', 1);
  assert.equal(op!.state, 'failed');
  assert.equal(op!.eventId, 6927);
  assert.equal(op!.attempts, 1);
  assert.match(op!.reason ?? '', /fewer than 40 characters \(pwsync policy of connector pg-policed\)/);
  assert.equal(await pgHash('dave'), null, 'nothing written');
});

test('the server\'s own refusal: 6927 once (PostgreSQL: the role name; MariaDB: simple_password_check)', async () => {
  // The one password that is no test password: passwordcheck refuses a password equal to the role name.
  await hook('pat', Buffer.from('pat'));
  const [pg] = await settled('pat', 'pg-login', 1);
  assert.equal(pg!.state, 'failed');
  assert.equal(pg!.eventId, 6927);
  assert.equal(pg!.attempts, 1);
  assert.match(pg!.reason ?? '', /PostgreSQL refused it/);

  // No digit: simple_password_check refuses it; told apart from "no such user" by SHOW WARNINGS.
  await hook('bob', testPassword('noDigits-bob'));
  const [m] = await settled('bob', 'mdb-login', 1);
  assert.equal(m!.state, 'failed');
  assert.equal(m!.eventId, 6927);
  assert.equal(m!.attempts, 1);
  assert.match(m!.reason ?? '', /1819/);
  assert.ok(await mariadbLogin('bob', mdb.passwords.bob), 'bob keeps his password');
});

test('a missing login or row: 6923', async () => {
  await hook('ghost', testPassword('Ghost-1-mdb'));
  await hook('carol', testPassword('Carol-1-pg'));
  await hook('nobody', testPassword('Nobody-1-mdb'));
  for (const [sam, connector] of [['ghost', 'mdb-login'], ['carol', 'pg-login'], ['nobody', 'mdb-table']] as const) {
    const [op] = await settled(sam, connector, 1);
    assert.equal(op!.state, 'failed', `${sam} on ${connector}`);
    assert.equal(op!.eventId, 6923, `${sam} on ${connector}: ${op!.reason}`);
  }
});

test('PostgreSQL stopped mid-run: ~50 changes over 10 accounts all land after it comes back, the latest wins', async () => {
  const latest = new Map<string, Buffer>();
  // Round 0 through `pwsync hook`; rounds 1–4 through the same hook client in this process (what
  // `pwsync hook` calls, on the same socket): 40 more node processes would take minutes on a 2-CPU CI box.
  const round = async (k: number): Promise<void> => {
    await Promise.all(USERS.map(async (u) => {
      const pw = testPassword(`pg-${u}-round-${k}`);
      if (k === 0) await hook(u, pw);
      else await sendHookChange(lab.hookSocket, { domain: DOMAIN, samAccountName: u }, Secret.adopt(Buffer.from(pw)), 10_000);
      latest.set(u, pw);
    }));
  };
  await round(0);
  for (const u of USERS) {
    const o = await settled(u, 'pg-table', 1);
    assert.ok(o.every((x) => x.state === 'successful'), `${u}: ${o.map((x) => x.reason).join('; ')}`);
  }
  await pgs.stop();
  try {
    for (let k = 1; k <= 4; k++) await round(k);
    // The hub is retrying against a stopped server now.
    await until('a retry against the stopped server', 30_000, async () => {
      const all = (await queryStatus(state, { connector: 'pg-table' })).operations;
      return all.some((o) => o.state === 'retrying' || o.attempts > 1) ? true : undefined;
    });
  } finally {
    await pgs.restart();
  }
  for (const u of USERS) {
    await until(`${u}'s latest password in app_users`, 60_000, async () => {
      const h = await pgHash(u);
      return h && await verifyPassword(h, latest.get(u)!) ? true : undefined;
    });
    // Every change ended: applied, or superseded by a newer one for the same account (6919); none failed.
    const o = await settled(u, 'pg-table', 5);
    assert.deepEqual(o.filter((x) => x.state === 'failed').map((x) => `${x.eventId}: ${x.reason}`), [], `${u}: no change failed`);
    assert.equal(o.at(-1)!.state, 'successful', `${u}: the latest change was applied`);
  }
});

test('TLS required and a server that declines TLS: the hub refuses the target with 6951, nothing is sent', async () => {
  // A listener that answers PostgreSQL's SSLRequest with 'N' and records every byte it gets.
  const received: Buffer[] = [];
  const server = net.createServer((s) => {
    s.on('data', (d) => {
      received.push(d);
      if (d.length === 8 && d.readUInt32BE(4) === 80877103) s.write('N');
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const plain = await Lab.create({
    root: testDir('sql-e2e-notls'), connectors: [],
    hubConnectors: [{ ...sql('pg-notls', 'postgresql', 'SELECT login AS id FROM app_users', login), connection: {
      host: '127.0.0.1', port, database: 'postgres', user: 'pwsync', password: { fromFile: pgs.pwsyncPasswordFile },
      tls: { ca: pgs.caFile, serverName: 'localhost' }, poolSize: 1, timeout: '3s', objects: { query: 'SELECT login AS id FROM app_users', anchor: 'id' },
    } }],
  });
  try {
    await assert.rejects(plain.startHub(20_000), /process exited/);
    const log = readFileSync(plain.hubLog, 'utf8');
    assert.match(plain.hub?.stderr() ?? '', /6951|does not support SSL/);
    assert.match(log, /"eventId":6951/);
    assert.match(log, /does not support SSL/);
    const bytes = Buffer.concat(received);
    assert.ok(bytes.length > 0, 'the hub tried the server');
    // Only SSLRequests (8 bytes each, code 80877103): no startup message, no user name, no password.
    assert.equal(bytes.length % 8, 0, `only SSLRequests: ${bytes.toString('hex')}`);
    for (let i = 0; i < bytes.length; i += 8) assert.equal(bytes.readUInt32BE(i + 4), 80877103);
  } finally {
    await plain.stopAll();
    await new Promise((r) => server.close(r));
  }
});

test('`pwsync connector test` on MariaDB: TLS, the objects query and the grants (no password hash shown); nothing changes', async () => {
  const before = mdb.admin('SELECT login, pwhash FROM app.app_users ORDER BY login;');
  const p = spawnPwsync(['connector', 'test', 'mdb-login', '--config', lab.hubConfig]);
  assert.equal(await p.exited, 0, p.stderr());
  const out = p.stdout();
  assert.match(out, /connector mdb-login \(mariadb\): ok: mariadb 127\.0\.0\.1:\d+\/app as pwsync: connected over TLS, certificate verified/);
  assert.match(out, /returned 3 row\(s\) with columns id/);
  assert.match(out, /CREATE USER ON \*\.\*.*: login mode may ALTER USER/);
  assert.match(out, /SELECT, UPDATE ON `app`\.`app_users`/);
  // SHOW GRANTS lines can carry the account's hash (IDENTIFIED BY PASSWORD '*…'): never printed.
  assert.doesNotMatch(out, /PASSWORD '|\*[0-9A-F]{40}/);
  assert.equal(mdb.admin('SELECT login, pwhash FROM app.app_users ORDER BY login;'), before);
});
