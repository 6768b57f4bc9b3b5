/**
 * STAND-IN test, not an integration test: no SQL Server, Oracle or DB2 server can run on these
 * machines (none is packaged for Debian; their images need a container runtime and licences these
 * CI hosts do not have). So the mssql and oracle dialects run their REAL code paths down to the
 * driver boundary, where the driver's pool/connection object is replaced by a recorder (the
 * dialect's `driver` factory argument, used only here). The recorder captures the exact statement
 * text and bound parameters and the exact options handed to the driver, and throws error objects
 * built the way mssql/tedious and oracledb build them (their own error classes and fields). DB2's
 * driver (ibm_db) cannot even be installed here: the missing-driver error and the error mapping are
 * tested. The connector code above SqlDialect is the same code that runs against PostgreSQL and
 * MariaDB in the real-server tests.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import net from 'node:net';
import tls from 'node:tls';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import mssql from 'mssql';
import * as tedious from 'tedious';
import { createDb2Dialect, db2Dialect, db2ConnectionString } from '../../connectors/sql/db2.ts';
import { createMssqlDialect, requireTlsBeforeLogin, type MssqlPoolLike, type MssqlRequestLike } from '../../connectors/sql/mssql.ts';
import { createOracleDialect, type OracleConnectionLike } from '../../connectors/sql/oracle.ts';
import { loadDialect } from '../../connectors/sql/sql.ts';
import type { DialectEnv, SqlConnectionSettings, SqlDialect, SqlSession } from '../../connectors/sql/contract.ts';
import { PwsyncError, UsageError } from '../../core/errors.ts';
import { Secret } from '../../core/secret.ts';
import { generateTlsMaterial } from '../../core/tls-gen.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword, TEST_PASSWORD_PREFIX } from '../lib/passwords.ts';

const require = createRequire(import.meta.url);
const oracleErrors = require('oracledb/lib/errors.js') as { getErr(n: number, ...args: unknown[]): Error; ERR_TLS_AUTH_FAILURE: number; ERR_CONNECTION_CLOSED: number; ERR_TLS_INIT_FAILURE: number };

const dir = testDir('sql-standins');
const caFile = path.join(dir, 'ca.pem');
writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nMIIBstandinCA\n-----END CERTIFICATE-----\n');
after(() => rmSync(dir, { recursive: true, force: true }));

const env = (requireSecureConnection = true): DialectEnv => ({ connector: 'erp', requireSecureConnection, resolvePath: (p) => path.resolve(dir, p) });
const settings = (over: Partial<SqlConnectionSettings> = {}): SqlConnectionSettings => ({
  host: 'db.example.test', database: 'erp', user: 'pwsync', tls: { ca: 'ca.pem', serverName: 'db.example.test' }, poolSize: 3, timeoutMs: 5000, ...over,
});
const secret = (label: string): Secret => Secret.adopt(testPassword(label));
const serviceSecret = (): Secret => secret('service');

/** Rejects with a PwsyncError of this event (and retryable, when given) whose message matches. */
async function failsWith(p: Promise<unknown>, eventId: number, re: RegExp, retryable?: boolean): Promise<PwsyncError> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => { caught = e; return true; });
  assert.ok(caught instanceof PwsyncError, `expected a PwsyncError, got ${String(caught)}`);
  assert.equal(caught.eventId, eventId, caught.message);
  assert.match(caught.message, re);
  if (retryable !== undefined) assert.equal(caught.retryable, retryable, caught.message);
  assert.ok(!caught.message.includes(TEST_PASSWORD_PREFIX), 'a password reached an error message');
  return caught;
}

async function sessionOf(dialect: SqlDialect, requireSecure = true, over: Partial<SqlConnectionSettings> = {}): Promise<SqlSession> {
  const pool = await dialect.createPool(settings(over), serviceSecret(), env(requireSecure));
  return (await pool.acquire()).session;
}

// ---------------------------------------------------------------- SQL Server (mssql / tedious)

interface MssqlCall { kind: 'query' | 'batch'; text: string; inputs: Record<string, unknown> }

/** An mssql ConnectionPool stand-in: records requests, answers from a script (a result or a thrown error). */
function mssqlRecorder(script: Array<unknown> = []) {
  const calls: MssqlCall[] = [];
  const configs: mssql.config[] = [];
  let closed = false;
  const answer = async (call: MssqlCall) => {
    calls.push(call);
    const next = script.shift();
    if (next instanceof Error) throw next;
    return (next ?? { recordset: undefined, rowsAffected: [1] }) as { recordset?: unknown; rowsAffected?: number[] };
  };
  const pool: MssqlPoolLike = {
    request(): MssqlRequestLike {
      const inputs: Record<string, unknown> = {};
      const req: MssqlRequestLike = {
        input(name, value) { inputs[name] = value; return req; },
        query: (text) => answer({ kind: 'query', text, inputs }),
        batch: (text) => answer({ kind: 'batch', text, inputs }),
      };
      return req;
    },
    async close() { closed = true; },
  };
  const dialect = createMssqlDialect(async (config) => { configs.push(config); return pool; });
  return { dialect, calls, configs, closed: () => closed };
}

/** A server error the way mssql's tedious request builds it (request.js handleError). */
function mssqlServerError(number: number, message: string): Error {
  const e = Object.assign(new Error(message), { info: { number, state: 1, class: 16, message, serverName: 'db', procName: '', lineNumber: 1 } });
  return new mssql.RequestError(e as unknown as string, 'EREQUEST');
}

/** A connection error the way tedious wraps a socket/TLS error and mssql wraps tedious's. */
/** A TDS PRELOGIN response (packet type 4) with a version and this ENCRYPTION byte (2 = not supported). */
function preloginResponse(encryption: number): Buffer {
  const payload = Buffer.from([0x00, 0, 11, 0, 6, 0x01, 0, 17, 0, 1, 0xff, 0x0f, 0x00, 0x07, 0xd0, 0, 0, encryption]);
  const head = Buffer.from([0x04, 0x01, 0, 0, 0, 0, 1, 0]);
  head.writeUInt16BE(head.length + payload.length, 2);
  return Buffer.concat([head, payload]);
}

function mssqlSocketError(message: string, cause?: Error & { code?: string }): Error {
  const t = new tedious.ConnectionError(`Failed to connect to db.example.test:1433 - ${message}`, 'ESOCKET', cause ? { cause } : undefined);
  return new mssql.ConnectionError(t as unknown as string);
}

describe('SQL Server dialect at the driver boundary (stand-in)', () => {
  test('the driver gets verified TLS: encrypt, no trustServerCertificate, the CA and the server name; pool size and timeouts', async () => {
    const r = mssqlRecorder();
    const pool = await r.dialect.createPool(settings(), serviceSecret(), env());
    const c = r.configs[0]!;
    assert.equal(c.server, 'db.example.test');
    assert.equal(c.port, 1433);
    assert.equal(c.database, 'erp');
    assert.equal(c.user, 'pwsync');
    assert.equal(c.password, `${TEST_PASSWORD_PREFIX}service`);
    assert.deepEqual(c.pool, { max: 3, min: 0 });
    assert.equal(c.connectionTimeout, 5000);
    assert.equal(c.requestTimeout, 5000);
    assert.equal(c.options?.encrypt, true);
    assert.equal(c.options?.trustServerCertificate, false);
    assert.equal(c.beforeConnect, requireTlsBeforeLogin, 'each connection is guarded: no login before TLS');
    assert.equal(c.options?.serverName, 'db.example.test');
    assert.match(String((c.options?.cryptoCredentialsDetails as { ca?: string } | undefined)?.ca), /BEGIN CERTIFICATE/);
    assert.equal((pool as { plain?: boolean }).plain, false);
    await pool.close();
    assert.ok(r.closed());
  });

  test('plain only with requireSecureConnection: false; a required-TLS connection the server cannot encrypt is refused with 6951', async () => {
    const r = mssqlRecorder();
    const plainPool = await r.dialect.createPool(settings({ tls: {} }), serviceSecret(), env(false));
    assert.equal(r.configs[0]!.options?.encrypt, false);
    assert.equal(r.configs[0]!.beforeConnect, undefined);
    assert.equal((plainPool as { plain?: boolean }).plain, true);
    await r.dialect.createPool(settings({ tls: {} }), serviceSecret(), env(true));
    assert.equal(r.configs[1]!.options?.encrypt, true, 'without a CA but with TLS required, encrypt against the system CAs');
    assert.equal(r.configs[1]!.options?.trustServerCertificate, false);

    const refusing = (err: Error) => createMssqlDialect(async () => { throw err; });
    const selfSigned = Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' });
    await failsWith(refusing(mssqlSocketError(selfSigned.message, selfSigned)).createPool(settings(), serviceSecret(), env()), 6951, /TLS connection to SQL Server could not be set up and verified.*nothing was sent/, false);
    const altname = Object.assign(new Error('Hostname/IP does not match certificate\'s altnames: Host: db.example.test. is not cert\'s CN: other'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    await failsWith(refusing(mssqlSocketError(altname.message, altname)).createPool(settings(), serviceSecret(), env()), 6951, /altnames/, false);
    const encrypt = new mssql.ConnectionError(new tedious.ConnectionError('Server requires encryption, set \'encrypt\' config option to true.', 'EENCRYPT') as unknown as string);
    await failsWith(refusing(encrypt).createPool(settings({ tls: {} }), serviceSecret(), env(false)), 6951, /requires encryption/);
    await failsWith(r.dialect.createPool(settings({ tls: { ca: 'missing.pem' } }), serviceSecret(), env()), 6951, /cannot read tls\.ca .*missing\.pem/);
  });

  test('a server whose pre-login says it cannot encrypt gets no login (the real driver, against a TDS responder on loopback)', async () => {
    // tedious with encrypt: true would log in unencrypted here (the control below proves the
    // responder can see that); the dialect's guard fails the connection with 6951 before LOGIN7.
    const seen: number[] = [];
    const server = net.createServer((socket) => {
      socket.on('data', (chunk) => {
        seen.push(chunk[0]!);
        if (chunk[0] === 0x12) socket.write(preloginResponse(0x02));
        else socket.destroy();
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      await failsWith(createMssqlDialect().createPool(settings({ host: '127.0.0.1', port, tls: {} }), serviceSecret(), env()), 6951, /did not negotiate TLS.*login was not sent.*nothing was sent/s);
      assert.deepEqual(seen, [0x12], 'only the pre-login reached the server');

      seen.length = 0;
      const unguarded = new mssql.ConnectionPool({ server: '127.0.0.1', port, user: 'pwsync', password: 'not-a-test-password', options: { encrypt: true, trustServerCertificate: false }, connectionTimeout: 5000 });
      await assert.rejects(unguarded.connect());
      assert.deepEqual(seen, [0x12, 0x10], 'control: unguarded, tedious sends LOGIN7 (0x10) over the plain socket');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('query(): :name becomes @name, values go through request.input, never into the text', async () => {
    const recordset = Object.assign([{ id: 'alice', mail: 'a@x' }], { columns: { id: {}, mail: {} } });
    const r = mssqlRecorder([{ recordset, rowsAffected: [1] }, { recordset: undefined, rowsAffected: [2] }]);
    const s = await sessionOf(r.dialect);
    const rows = await s.query('SELECT login AS id, mail FROM app_users WHERE login = :login AND note = \':not_a_param\'', { login: 'o\'brien]--' });
    assert.deepEqual(r.calls[0], { kind: 'query', text: 'SELECT login AS id, mail FROM app_users WHERE login = @login AND note = \':not_a_param\'', inputs: { login: 'o\'brien]--' } });
    assert.deepEqual({ rowCount: rows.rowCount, columns: (rows as { columns?: string[] }).columns }, { rowCount: 1, columns: ['id', 'mail'] });
    const hash = `$argon2id$v=19$m=65536,t=3,p=4$'; DROP TABLE app_users; --`;
    const upd = await s.query('UPDATE app_users SET pwhash = :hash, n = :n WHERE login = :login', { hash, login: 'bob', n: 7n, unused: 'x' });
    assert.deepEqual(r.calls[1], { kind: 'query', text: 'UPDATE app_users SET pwhash = @hash, n = @n WHERE login = @login', inputs: { hash, n: '7', login: 'bob' } });
    assert.equal(upd.rowCount, 2);
    await failsWith(s.query('UPDATE t SET a = :a WHERE b = :b', { a: 1 }), 6950, /:b but no value/);
    assert.equal(r.calls.length, 2, 'nothing was sent for the statement missing a value');
  });

  test('setLoginPassword: ALTER LOGIN [name] WITH PASSWORD = N\'…\' as a batch; quotes doubled, ] doubled, -- stays inside the literal', async () => {
    const r = mssqlRecorder();
    const s = await sessionOf(r.dialect);
    const cases: Array<[string, string, string]> = [
      ['alice', 'plain', `ALTER LOGIN [alice] WITH PASSWORD = N'${TEST_PASSWORD_PREFIX}plain'`],
      ['o]brien', 'q\'uo\'\'te', `ALTER LOGIN [o]]brien] WITH PASSWORD = N'${TEST_PASSWORD_PREFIX}q''uo''''te'`],
      ['bob', '\'; DROP LOGIN sa; --', `ALTER LOGIN [bob] WITH PASSWORD = N'${TEST_PASSWORD_PREFIX}''; DROP LOGIN sa; --'`],
      ['carol]; DROP LOGIN sa; --', 'x]y\\z', `ALTER LOGIN [carol]]; DROP LOGIN sa; --] WITH PASSWORD = N'${TEST_PASSWORD_PREFIX}x]y\\z'`],
      ['dave', 'naïve\u00a0e\u0301 😀 ’’', `ALTER LOGIN [dave] WITH PASSWORD = N'${TEST_PASSWORD_PREFIX}naïve\u00a0e\u0301 😀 ’’'`],
    ];
    for (const [login, label, statement] of cases) await s.setLoginPassword(login, secret(label));
    assert.deepEqual(r.calls.map((c) => [c.kind, c.text, c.inputs]), cases.map(([, , st]) => ['batch', st, {}]));
  });

  test('setLoginPassword refuses what it cannot quote (6927, nothing sent): NUL, invalid UTF-8, a lone surrogate, 129 characters; a bad login name is 6923', async () => {
    const r = mssqlRecorder();
    const s = await sessionOf(r.dialect);
    await failsWith(s.setLoginPassword('alice', secret('nul\0x')), 6927, /NUL.*nothing was sent/, false);
    await failsWith(s.setLoginPassword('alice', Secret.adopt(Buffer.concat([testPassword('bad'), Buffer.from([0xc3, 0x28])]))), 6927, /not valid UTF-8/);
    await failsWith(s.setLoginPassword('alice', Secret.adopt(Buffer.concat([testPassword('surrogate'), Buffer.from([0xed, 0xa0, 0x80])]))), 6927, /lone surrogate/);
    await failsWith(s.setLoginPassword('alice', secret('x'.repeat(129 - TEST_PASSWORD_PREFIX.length))), 6927, /at most 128/);
    await failsWith(s.setLoginPassword('x'.repeat(129), secret('ok')), 6923, /1 to 128 characters/);
    await failsWith(s.setLoginPassword('alice', secret('ok'), { checkPolicy: 'off' }), 6950, /unknown login option checkPolicy/);
    assert.equal(r.calls.length, 0);
    await s.setLoginPassword('alice', secret('x'.repeat(128 - TEST_PASSWORD_PREFIX.length)));
    assert.equal(r.calls.length, 1, '128 characters are sent');
  });

  test('each recorded SQL Server error shape becomes its event', async () => {
    // Errors of ALTER LOGIN are met through setLoginPassword, the others through query().
    const login = new Set([15118, 15116, 15115, 15114, 15247]);
    const cases: Array<[Error, number, RegExp, boolean]> = [
      [mssqlServerError(15118, 'Password validation failed. The password does not meet the operating system policy requirements because it is not complex enough.'), 6927, /not complex enough/, false],
      [mssqlServerError(15116, 'Password validation failed. The password does not meet the operating system policy requirements because it is too short.'), 6927, /too short/, false],
      [mssqlServerError(15115, 'Password validation failed. The password does not meet the operating system policy requirements because it is too long.'), 6927, /too long/, false],
      [mssqlServerError(15114, 'Password validation failed. The password for the user is too recent to change.'), 6927, /too recent/, false],
      [mssqlServerError(15247, 'User does not have permission to perform this action.'), 6942, /ALTER ANY LOGIN/, false],
      [mssqlServerError(229, 'The UPDATE permission was denied on the object \'app_users\', database \'erp\', schema \'dbo\'.'), 6942, /GRANT UPDATE/, false],
      [mssqlServerError(1205, 'Transaction (Process ID 57) was deadlocked on lock resources with another process and has been chosen as the deadlock victim. Rerun the transaction.'), 6940, /deadlock victim/, true],
      [new mssql.RequestError('Timeout: Request failed to complete in 5000ms', 'ETIMEOUT'), 6940, /ETIMEOUT/, true],
      [new mssql.ConnectionError('Connection is closed.', 'ECONNCLOSED'), 6940, /ECONNCLOSED/, true],
      [mssqlSocketError('read ECONNRESET', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })), 6940, /ESOCKET/, true],
      [new mssql.ConnectionError(new tedious.ConnectionError('Login failed for user \'pwsync\'.', 'ELOGIN') as unknown as string), 6942, /refused to log the service account in/, false],
      [mssqlServerError(208, 'Invalid object name \'app_userz\'.'), 6950, /fix the statement/, false],
    ];
    for (const [err, eventId, re, retryable] of cases) {
      const r = mssqlRecorder([err]);
      const s = await sessionOf(r.dialect);
      const sent = login.has((err as { number?: number }).number ?? 0)
        ? s.setLoginPassword('alice', secret('p'))
        : s.query('UPDATE app_users SET pwhash = :h WHERE login = :l', { h: 'x', l: 'y' });
      await failsWith(sent, eventId, re, retryable);
    }
  });

  test('15151 on ALTER LOGIN: the service account\'s ALTER ANY LOGIN tells "no such login" (6923) from "no permission" (6942)', async () => {
    const e15151 = () => mssqlServerError(15151, 'Cannot alter the login \'ghost\', because it does not exist or you do not have permission.');
    const canAlter = (v: number) => ({ recordset: [{ can_alter: v }], rowsAffected: [1] });
    let r = mssqlRecorder([e15151(), canAlter(1)]);
    await failsWith((await sessionOf(r.dialect)).setLoginPassword('ghost', secret('p')), 6923, /"ghost".*holds ALTER ANY LOGIN, so the login does not exist/, false);
    assert.equal(r.calls[1]!.text, 'SELECT HAS_PERMS_BY_NAME(NULL, NULL, \'ALTER ANY LOGIN\') AS can_alter');
    r = mssqlRecorder([e15151(), canAlter(0)]);
    await failsWith((await sessionOf(r.dialect)).setLoginPassword('ghost', secret('p')), 6942, /lacks ALTER ANY LOGIN.*GRANT ALTER ANY LOGIN/, false);
    // A syntax error on the password batch may quote the batch: its text is not repeated.
    const quoting = mssqlServerError(102, `Incorrect syntax near '${TEST_PASSWORD_PREFIX}x'.`);
    r = mssqlRecorder([quoting]);
    await failsWith((await sessionOf(r.dialect)).setLoginPassword('alice', secret('x')), 6950, /its text is not shown because the statement held the password/);
    assert.equal(createMssqlDialect().mapError(e15151(), { connector: 'erp', operation: 'x', object: 'ghost' }).eventId, 6923);
  });
});

// ---------------------------------------------------------------- Oracle (oracledb thin)

interface OracleCall { sql: string; binds: Record<string, unknown>; options: Record<string, unknown> }

function oracleRecorder(script: Array<unknown> = []) {
  const calls: OracleCall[] = [];
  const attributes: Record<string, unknown>[] = [];
  const closes: Array<{ drop?: boolean } | undefined> = [];
  const conn: OracleConnectionLike = {
    callTimeout: 0,
    async execute(sql, binds, options) {
      calls.push({ sql, binds, options });
      const next = script.shift();
      if (next instanceof Error) throw next;
      return (next ?? { rowsAffected: 1 }) as Awaited<ReturnType<OracleConnectionLike['execute']>>;
    },
    async close(o) { closes.push(o); },
  };
  const dialect = createOracleDialect(async (a) => {
    attributes.push(a as unknown as Record<string, unknown>);
    return { getConnection: async () => conn, close: async () => {} };
  });
  return { dialect, calls, attributes, closes, conn };
}

/** An error the way oracledb thin builds a server one (errors.js transformErr): code, errorNum, help line. */
function oraError(num: number, text: string): Error {
  const code = `ORA-${String(num).padStart(5, '0')}`;
  return Object.assign(new Error(`${code}: ${text}\nHelp: https://docs.oracle.com/error-help/db/ora-${String(num).padStart(5, '0')}/`), { code, errorNum: num, offset: 0 });
}

describe('Oracle dialect at the driver boundary (stand-in)', () => {
  test('the driver gets a TCPS Easy Connect string, the CA as walletContent, DN matching on; plain only with requireSecureConnection: false', async () => {
    const r = oracleRecorder();
    const pool = await r.dialect.createPool(settings(), serviceSecret(), env());
    const a = r.attributes[0]!;
    assert.equal(a.connectString, 'tcps://db.example.test:2484/erp');
    assert.equal(a.sslServerDNMatch, true);
    assert.match(String(a.walletContent), /BEGIN CERTIFICATE/);
    assert.equal(a.sslServerCertDN, undefined);
    assert.equal(a.user, 'pwsync');
    assert.equal(a.password, `${TEST_PASSWORD_PREFIX}service`);
    assert.equal(a.poolMax, 3);
    assert.equal(a.connectTimeout, 5);
    assert.equal((pool as { plain?: boolean }).plain, false);
    await pool.acquire();
    assert.equal(r.conn.callTimeout, 5000);

    await r.dialect.createPool(settings({ tls: { ca: 'ca.pem', serverName: 'CN=db,O=Example' }, port: 1522 }), serviceSecret(), env());
    assert.equal(r.attributes[1]!.sslServerCertDN, 'CN=db,O=Example');
    assert.equal(r.attributes[1]!.connectString, 'tcps://db.example.test:1522/erp');
    await failsWith(r.dialect.createPool(settings({ tls: { serverName: 'other.example.test' } }), serviceSecret(), env()), 6951, /thin mode checks the certificate against the host/);

    const plain = await r.dialect.createPool(settings({ tls: {} }), serviceSecret(), env(false));
    assert.equal(r.attributes[2]!.connectString, 'db.example.test:1521/erp');
    assert.equal(r.attributes[2]!.walletContent, undefined);
    assert.equal((plain as { plain?: boolean }).plain, true);
    await r.dialect.createPool(settings({ tls: {} }), serviceSecret(), env(true));
    assert.match(String(r.attributes[3]!.connectString), /^tcps:\/\//, 'TLS required and no CA: TCPS against the system CAs');

    const tlsFail = (e: Error) => createOracleDialect(async () => { throw e; }).createPool(settings(), serviceSecret(), env());
    await failsWith(tlsFail(oracleErrors.getErr(oracleErrors.ERR_TLS_AUTH_FAILURE, 'db.example.test', 2484, 'id', 'self-signed certificate')), 6951, /NJS-506.*nothing was sent/, false);
    await failsWith(tlsFail(oracleErrors.getErr(oracleErrors.ERR_TLS_INIT_FAILURE, 'error:1E08010C:DECODER routines::unsupported')), 6951, /NJS-505/, false);
  });

  test('TCPS with a CA-only tls.ca: the real thin driver verifies the listener against that CA (a TLS listener on loopback)', async () => {
    // No Oracle server, but the TLS leg is the driver's own: a Node TLS listener with a certificate
    // from the test CA stands in for the listener, and hangs up once the handshake is done.
    const good = await generateTlsMaterial({ hosts: ['localhost'] });
    const other = await generateTlsMaterial({ hosts: ['localhost'] });
    writeFileSync(path.join(dir, 'oracle-ca.pem'), good.caCertPem);
    const handshake = async (material: typeof good): Promise<{ secure: number; refused: number; error: PwsyncError }> => {
      let secure = 0;
      let refused = 0;
      const server = tls.createServer({ key: material.keyPem, cert: material.certPem }, (socket) => { secure++; socket.destroy(); });
      server.on('tlsClientError', () => { refused++; });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as net.AddressInfo).port;
      try {
        const pool = await createOracleDialect().createPool(settings({ host: 'localhost', port, tls: { ca: 'oracle-ca.pem' }, timeoutMs: 5000 }), serviceSecret(), env());
        let error: unknown;
        try {
          await pool.acquire();
        } catch (e) {
          error = e;
        } finally {
          await pool.close();
        }
        assert.ok(error instanceof PwsyncError, `expected a PwsyncError, got ${String(error)}`);
        assert.ok(!error.message.includes(TEST_PASSWORD_PREFIX));
        return { secure, refused, error };
      } finally {
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    };
    const ok = await handshake(good);
    assert.equal(ok.secure, 1, `the handshake with the CA's listener completed (${ok.error.message})`);
    assert.notEqual(ok.error.eventId, 6951, 'past TLS, the hang-up is not a TLS failure');
    const bad = await handshake(other);
    assert.equal(bad.secure, 0, 'a listener with a certificate from another CA gets no completed handshake');
    assert.equal(bad.error.eventId, 6951, bad.error.message);
  });

  test('query(): :name bound natively, only the names used, object rows and autoCommit', async () => {
    const r = oracleRecorder([{ rows: [{ ID: 'ALICE' }], metaData: [{ name: 'ID' }] }, { rowsAffected: 1 }]);
    const s = await sessionOf(r.dialect);
    const rows = await s.query('SELECT username AS id FROM app_users WHERE username = :u AND x <> \':no\'', { u: 'ALICE\'--', extra: 1 });
    assert.equal(r.calls[0]!.sql, 'SELECT username AS id FROM app_users WHERE username = :u AND x <> \':no\'');
    assert.deepEqual(r.calls[0]!.binds, { u: 'ALICE\'--' });
    assert.equal(r.calls[0]!.options.autoCommit, true);
    assert.deepEqual([rows.rowCount, (rows as { columns?: string[] }).columns], [1, ['ID']]);
    const upd = await s.query('UPDATE app_users SET pwhash = :hash, active = :a WHERE username = :u', { hash: '$2b$12$x', a: true, u: 'BOB' });
    assert.deepEqual(r.calls[1]!.binds, { hash: '$2b$12$x', a: 1, u: 'BOB' });
    assert.equal(upd.rowCount, 1);
  });

  test('setLoginPassword: ALTER USER "LOGIN" IDENTIFIED BY "…", no binds; quotes, ] and -- stay inside the quoted identifier', async () => {
    const r = oracleRecorder();
    const s = await sessionOf(r.dialect);
    const cases: Array<[string, string, string]> = [
      ['ALICE', 'plain', `ALTER USER "ALICE" IDENTIFIED BY "${TEST_PASSWORD_PREFIX}plain"`],
      ['alice', 'it\'s ]; DROP USER sys; --', `ALTER USER "alice" IDENTIFIED BY "${TEST_PASSWORD_PREFIX}it's ]; DROP USER sys; --"`],
      ['BOB', 'naïve\u00a0e\u0301 😀 \\ $$', `ALTER USER "BOB" IDENTIFIED BY "${TEST_PASSWORD_PREFIX}naïve\u00a0e\u0301 😀 \\ $$"`],
    ];
    for (const [login, label] of cases) await s.setLoginPassword(login, secret(label));
    assert.deepEqual(r.calls.map((c) => [c.sql, c.binds]), cases.map(([, , st]) => [st, {}]));
  });

  test('setLoginPassword refuses " and NUL in a password (6927) and in a user name (6923); nothing sent', async () => {
    const r = oracleRecorder();
    const s = await sessionOf(r.dialect);
    await failsWith(s.setLoginPassword('ALICE', secret('say "hi"')), 6927, /double quote.*nothing was sent/, false);
    await failsWith(s.setLoginPassword('ALICE', secret('nul\0')), 6927, /NUL/, false);
    await failsWith(s.setLoginPassword('ALICE', Secret.adopt(Buffer.concat([testPassword('bad'), Buffer.from([0xff])]))), 6927, /not valid UTF-8/);
    await failsWith(s.setLoginPassword('AL"ICE', secret('ok')), 6923, /without " or NUL/);
    assert.equal(r.calls.length, 0);
  });

  test('each recorded oracledb error shape becomes its event; a broken connection is dropped from the pool', async () => {
    const cases: Array<[Error, number, RegExp, boolean]> = [
      [oraError(28003, 'password verification for the specified password failed\nORA-20001: Password length less than 8'), 6927, /ORA-28003.*Password length less than 8/, false],
      [oraError(20002, 'Password must contain a digit'), 6927, /must contain a digit/, false],
      [oraError(1918, 'user \'GHOST\' does not exist'), 6923, /"GHOST"/, false],
      [oraError(1031, 'insufficient privileges'), 6942, /GRANT ALTER USER/, false],
      [oraError(1017, 'invalid credential or not authorized; logon denied'), 6942, /refused the service account/, false],
      [oraError(60, 'deadlock detected while waiting for resource'), 6940, /deadlock/, true],
      [oraError(12170, 'Cannot connect. TCP connect timeout of 5s for host db.example.test port 2484.'), 6940, /connect timed out/, true],
      [oraError(3113, 'end-of-file on communication channel'), 6940, /end-of-file/, true],
      [oracleErrors.getErr(oracleErrors.ERR_CONNECTION_CLOSED), 6940, /NJS-500/, true],
      [Object.assign(new Error('NJS-503: connection to host db.example.test port 2484 could not be established. (CONNECTION_ID=x)\nconnect ECONNREFUSED'), { code: 'NJS-503' }), 6940, /NJS-503/, true],
    ];
    for (const [err, eventId, re, retryable] of cases) {
      const r = oracleRecorder([err]);
      const pool = await r.dialect.createPool(settings(), serviceSecret(), env());
      const lent = await pool.acquire();
      await failsWith(lent.session.setLoginPassword('GHOST', secret('p')), eventId, re, retryable);
      await lent.release();
      assert.deepEqual(r.closes, [retryable ? { drop: true } : undefined], `${err.message}: drop only a connection that failed retryably`);
    }
    const r = oracleRecorder([oraError(942, 'table or view does not exist')]);
    await failsWith((await sessionOf(r.dialect)).query('UPDATE app_userz SET h = :h', { h: 'x' }), 6950, /ORA-00942.*fix the statement/, false);
  });
});

// ---------------------------------------------------------------- DB2 (ibm_db, not installable here)

describe('DB2 dialect (stand-in: ibm_db cannot be installed here)', () => {
  test('the dialect loads without ibm_db; opening a connector without it is a UsageError naming npm install ibm_db and the IBM download', async () => {
    assert.equal((await loadDialect('db2', 'warehouse')).driverPackage, 'ibm_db');
    let installed = true;
    try { require.resolve('ibm_db'); } catch { installed = false; }
    if (!installed) {
      await assert.rejects(db2Dialect.createPool(settings(), serviceSecret(), env()), (e: unknown) => e instanceof UsageError
        && /connector erp: the db2 driver is not installed: run `npm install ibm_db`/.test(e.message) && /downloads IBM's Data Server CLI driver/.test(e.message));
    }
    const missing = createDb2Dialect(async () => { throw Object.assign(new Error('Cannot find package \'ibm_db\''), { code: 'ERR_MODULE_NOT_FOUND' }); });
    await assert.rejects(missing.createPool(settings(), serviceSecret(), env()), (e: unknown) => e instanceof UsageError && /npm install ibm_db/.test(e.message));
  });

  test('the CLI connection string: SSL with the CA file and host-name validation, values braced; TLS without a CA refused (6951)', () => {
    const { connStr, plain } = db2ConnectionString(settings(), 'pw;x=y', env());
    assert.equal(plain, false);
    assert.equal(connStr, `DATABASE={erp};HOSTNAME={db.example.test};PORT=50001;PROTOCOL=TCPIP;UID={pwsync};PWD={pw;x=y};CONNECTTIMEOUT=5;SECURITY=SSL;SSLServerCertificate={${caFile}};SSLClientHostnameValidation=Basic;`);
    assert.throws(() => db2ConnectionString(settings({ tls: {} }), 'x', env()), (e: unknown) => e instanceof PwsyncError && e.eventId === 6951 && /needs tls\.ca/.test(e.message));
    assert.throws(() => db2ConnectionString(settings(), 'a}b', env()), (e: unknown) => e instanceof PwsyncError && e.eventId === 6950 && !e.message.includes('a}b'));
    assert.equal(db2ConnectionString(settings({ tls: {} }), 'x', env(false)).plain, true);
  });

  test('login mode is refused with 6928 pointing to table mode; statements use ? in order', async () => {
    const calls: Array<[string, unknown[]]> = [];
    const fake = {
      Pool: class {
        open(_c: string, cb: (e: unknown, c: unknown) => void) {
          cb(null, {
            query: (sql: string, p: unknown[], qcb: (e: unknown, rows: unknown[]) => void) => { calls.push([sql, p]); qcb(null, [{ ID: 'a' }]); },
            prepare: (sql: string, pcb: (e: unknown, s: unknown) => void) => pcb(null, { executeNonQuery: (p: unknown[], ecb: (e: unknown, n: number) => void) => { calls.push([sql, p]); ecb(null, 0); } }),
            close: (ccb: (e: unknown) => void) => ccb(null),
          });
        }
        close(cb: (e?: unknown) => void) { cb(); }
      },
    };
    const s = await sessionOf(createDb2Dialect(async () => fake as never));
    await failsWith(s.setLoginPassword('alice', secret('p')), 6928, /operating system or LDAP.*builtin:sql-table/, false);
    const upd = await s.query('UPDATE app_users SET pwhash = :hash WHERE login = :login AND tenant = :t', { login: 'bob', hash: 'h', t: 3n });
    assert.deepEqual(calls[0], ['UPDATE app_users SET pwhash = ? WHERE login = ? AND tenant = ?', ['h', 'bob', '3']]);
    assert.equal(upd.rowCount, 0);
  });

  test('ibm_db error shapes: SQLSTATE 08001/08003/40001/57033 retried, 42501 → 6942, 23xxx and SQL0438N → 6927, GSKit → 6951', () => {
    const err = (state: string, sqlcode: number, message: string) => Object.assign(new Error(message), { error: '[node-ibm_db] SQL_ERROR', state, sqlcode });
    const ctx = { connector: 'erp', operation: 'update the password hash', object: 'bob' };
    const cases: Array<[Error, number, boolean]> = [
      [err('08001', -30081, '[IBM][CLI Driver] SQL30081N  A communication error has been detected. Communication protocol being used: "TCP/IP".  Location where the error was detected: "127.0.0.1".  Communication function detecting the error: "connect".  Protocol specific error code(s): "111", "*", "*".  SQLSTATE=08001'), 6940, true],
      [err('08003', -1024, '[IBM][CLI Driver] CLI0106E  Connection is closed. SQLSTATE=08003'), 6940, true],
      [err('40001', -911, '[IBM][CLI Driver][DB2/LINUXX8664] SQL0911N  The current transaction has been rolled back because of a deadlock or timeout.  Reason code "2".  SQLSTATE=40001'), 6940, true],
      [err('57033', -913, '[IBM][CLI Driver][DB2/LINUXX8664] SQL0913N  Unsuccessful execution caused by deadlock or timeout.  Reason code "68".  SQLSTATE=57033'), 6940, true],
      [err('42501', -551, '[IBM][CLI Driver][DB2/LINUXX8664] SQL0551N  The statement failed because the authorization ID does not have the required authorization or privilege to perform the operation.  Authorization ID: "PWSYNC".  Operation: "UPDATE". Object: "APP.USERS".  SQLSTATE=42501'), 6942, false],
      [err('23513', -545, '[IBM][CLI Driver][DB2/LINUXX8664] SQL0545N  The requested operation is not allowed because a row does not satisfy the check constraint "APP.USERS.PWLEN".  SQLSTATE=23513'), 6927, false],
      [err('75001', -438, '[IBM][CLI Driver][DB2/LINUXX8664] SQL0438N  Application raised error or warning with diagnostic text: "password reused".  SQLSTATE=75001'), 6927, false],
      [err('08001', -30081, '[IBM][CLI Driver] SQL30081N  A communication error has been detected. Communication protocol being used: "SSL".  Communication API being used: "SOCKETS".  Location where the error was detected: "".  Communication function detecting the error: "sqlccSSLSocketSetup".  Protocol specific error code(s): "414", "*", "*".  SQLSTATE=08001'), 6951, false],
    ];
    for (const [e, eventId, retryable] of cases) {
      const m = db2Dialect.mapError(e, ctx);
      assert.equal(m.eventId, eventId, e.message);
      assert.equal(m.retryable, retryable, e.message);
    }
  });
});
