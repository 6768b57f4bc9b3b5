import { readFileSync } from 'node:fs';
import mssql from 'mssql';
import { describeError, PwsyncError } from '../../core/errors.ts';
import { ObjectNotFoundError, PolicyViolationError, TargetUnavailableError } from '../../core/extension.ts';
import type { Secret } from '../../core/secret.ts';
import type {
  DialectEnv, SqlConnectionSettings, SqlDialect, SqlFailureContext, SqlPool, SqlResult, SqlSession, SqlValue,
} from './contract.ts';
import { bindNamed } from './params.ts';

/**
 * SQL Server through `mssql` (tedious underneath). This module imports the driver statically; the
 * connector (sql.ts) imports it only when an mssql connector is configured.
 *
 * TLS: `encrypt: true` with `trustServerCertificate: false`, the CA from tls.ca and the name from
 * tls.serverName; plain only when the connector sets requireSecureConnection: false. tedious with
 * `encrypt: true` goes on unencrypted when the server's pre-login answers that it cannot encrypt, so
 * every connection is guarded (requireTlsBeforeLogin): its login is not sent until TLS is up.
 *
 * Login mode: T-SQL cannot bind the password of ALTER LOGIN, so it is put into the batch through
 * `quoteNString`, the one audited quoting function of this dialect, and sent as a plain batch (not
 * sp_executesql). The batch then holds the clear password: SQL Server Audit and Extended Events
 * capturing sql_batch_completed text, and Profiler/trace, would record it (SQL Server masks ALTER
 * LOGIN passwords in its default trace and Profiler, not in every XEvent): keep them off (README).
 */

/** The narrow part of an mssql ConnectionPool the dialect uses; tests hand in a recorder (driver boundary). */
export interface MssqlRequestLike {
  input(name: string, value: unknown): MssqlRequestLike;
  query(text: string): Promise<{ recordset?: unknown; rowsAffected?: number[] }>;
  batch(text: string): Promise<{ recordset?: unknown; rowsAffected?: number[] }>;
}
export interface MssqlPoolLike {
  request(): MssqlRequestLike;
  close(): Promise<void>;
}
/** Opens a pool with this config (the real one: `new mssql.ConnectionPool(config).connect()`). */
export type MssqlDriver = (config: mssql.config) => Promise<MssqlPoolLike>;

/**
 * Guards one tedious connection (mssql's `beforeConnect`, called right after `connect()` starts):
 * LOGIN7, the first packet with a secret in it (the service account's password), goes out only
 * once TLS is negotiated; otherwise the connection fails with EENCRYPT (→ 6951) and nothing is sent.
 * It relies on tedious' `sendLogin7Packet` and `messageIo.tlsNegotiationComplete` (tedious 19),
 * and fails closed when a tedious release no longer has them.
 */
export function requireTlsBeforeLogin(conn: unknown): void {
  const c = conn as { sendLogin7Packet?: unknown; messageIo?: { tlsNegotiationComplete?: unknown } };
  const send = c.sendLogin7Packet;
  const refuse = (why: string): never => {
    throw Object.assign(new Error(why), { code: 'EENCRYPT' });
  };
  if (typeof send !== 'function') {
    c.sendLogin7Packet = () => refuse('this tedious release has no sendLogin7Packet, so pwsync cannot make sure the login is encrypted; the login was not sent');
    return;
  }
  c.sendLogin7Packet = function guardedLogin(this: typeof c, ...args: unknown[]): unknown {
    if (this.messageIo?.tlsNegotiationComplete !== true) {
      refuse('SQL Server did not negotiate TLS (its pre-login said it cannot encrypt); the login was not sent');
    }
    return (send as (...a: unknown[]) => unknown).apply(this, args);
  };
}

const realDriver: MssqlDriver = async (config) => {
  const pool = new mssql.ConnectionPool(config);
  // An idle connection the server drops must not crash the hub; the next request reconnects.
  pool.on('error', () => {});
  await pool.connect();
  return pool as unknown as MssqlPoolLike;
};

/** SQL Server's own limit on a login name and on a password (sysname, 128 characters). */
const MAX_NAME = 128;
const MAX_PASSWORD = 128;

/** Why a password cannot be put in an N'…' literal safely, or undefined. */
export function unquotablePassword(bytes: Buffer): string | undefined {
  if (bytes.length === 0) return 'the password is empty';
  if (bytes.includes(0)) return 'the password contains a NUL character, which cannot be put in a T-SQL literal safely';
  let text: string;
  try {
    // fatal: invalid UTF-8, and surrogates encoded on their own (CESU), are refused instead of becoming U+FFFD.
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return 'the password is not valid UTF-8 (or holds a lone surrogate), so SQL Server would store other characters than the ones a login sends';
  }
  if (text.length > MAX_PASSWORD) return `the password is ${text.length} UTF-16 code units long; SQL Server takes at most ${MAX_PASSWORD}`;
  return undefined;
}

/**
 * The audited quoting function: a password as an N'…' (nvarchar) literal. Only `'` ends such a
 * literal in T-SQL, and it is doubled; N keeps every character (no code-page conversion that could
 * turn a look-alike quote into `'`). A password unquotablePassword refuses never gets here.
 */
export function quoteNString(bytes: Buffer): string {
  const refused = unquotablePassword(bytes);
  if (refused) throw new PolicyViolationError(refused);
  return `N'${bytes.toString('utf8').replaceAll('\'', '\'\'')}'`;
}

/** A login name as a bracketed identifier (`]` doubled), or undefined when it cannot be one. */
export function quoteName(name: string): string | undefined {
  if (name.length === 0 || name.length > MAX_NAME || name.includes('\0')) return undefined;
  return `[${name.replaceAll(']', ']]')}]`;
}

interface MssqlErrorShape {
  number?: unknown;
  code?: unknown;
  message?: unknown;
  originalError?: unknown;
  cause?: unknown;
}

const shape = (e: unknown): MssqlErrorShape => (typeof e === 'object' && e !== null ? e as MssqlErrorShape : {});

const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|CERT_|ERR_OSSL_)/;
const TLS_TEXT = /certificate|self[- ]signed|\bTLS\b|\bSSL\b|altnames|Hostname\/IP does not match/i;
const RETRY_CODES = new Set(['ETIMEOUT', 'ESOCKET', 'ECONNCLOSED', 'ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'ENOTOPEN', 'EINSTLOOKUP', 'ECANCEL']);
const POLICY_NUMBERS = new Set([15114, 15115, 15116, 15118, 15119]);
/** Server errors worth retrying: deadlock victim, lock timeout, server busy/starting/failing over. */
const RETRY_NUMBERS: Readonly<Record<number, string>> = {
  1205: 'the statement was chosen as a deadlock victim',
  1222: 'a lock request timed out',
  40197: 'the service had an error processing the request',
  40501: 'the service is busy',
  40613: 'the database is not currently available',
  4060: 'the database cannot be opened (it may be starting)',
};

/** Codes of the error and the errors it wraps (mssql → tedious → Node's TLS error). */
function codesOf(e: unknown): string[] {
  const out: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; depth < 4 && typeof cur === 'object' && cur !== null; depth++) {
    const s = shape(cur);
    if (typeof s.code === 'string') out.push(s.code);
    cur = s.originalError ?? s.cause;
  }
  return out;
}

function textsOf(e: unknown): string {
  const out: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; depth < 4 && typeof cur === 'object' && cur !== null; depth++) {
    const s = shape(cur);
    if (typeof s.message === 'string' && !out.includes(s.message)) out.push(s.message);
    cur = s.originalError ?? s.cause;
  }
  return out.join(' / ');
}

/**
 * An mssql error → the PwsyncError an admin can act on. `quote: false` for statements that held a
 * password: then no server text is repeated (a syntax error may quote the batch).
 */
export function mapMssqlError(e: unknown, ctx: SqlFailureContext, quote = true): PwsyncError {
  if (e instanceof PwsyncError) return e;
  const s = shape(e);
  const num = typeof s.number === 'number' ? s.number : undefined;
  const codes = codesOf(e);
  const text = textsOf(e) || describeError(e);
  const where = `connector ${ctx.connector}: cannot ${ctx.operation}${ctx.object !== undefined ? ` (${ctx.object})` : ''}`;
  const said = quote ? `SQL Server ${num ?? codes[0] ?? 'error'}: ${text}` : `SQL Server ${num ?? codes[0] ?? 'error'}; its text is not shown because the statement held the password`;

  if (num !== undefined && POLICY_NUMBERS.has(num)) {
    // These texts name the rule broken (complexity, length, history), never the password.
    return new PolicyViolationError(`${text} (${where.replace(': cannot ', ', ')}; SQL Server ${num})`, { cause: e });
  }
  if (num === 15151) {
    if (/does not exist/i.test(text)) {
      return new ObjectNotFoundError(ctx.object ?? '?', `the SQL Server logins of connector ${ctx.connector} (SQL Server 15151: no such login, or the service account lacks ALTER ANY LOGIN)`, { cause: e });
    }
    return new PwsyncError(6942, `${where}: the service account may not alter that login (${said}): GRANT ALTER ANY LOGIN TO the service account, then \`pwsync retry\``, { cause: e });
  }
  if (num === 229 || num === 230 || num === 15247 || num === 300 || num === 297) {
    const permission = /The (\w+(?: \w+)*) permission was denied/i.exec(text)?.[1];
    const grant = permission !== undefined && quote
      ? `GRANT ${permission.toUpperCase()} on that object TO the service account`
      : ctx.operation.includes('password') ? 'GRANT ALTER ANY LOGIN TO the service account' : 'GRANT the privilege the statement needs TO the service account';
    return new PwsyncError(6942, `${where}: the service account lacks a permission (${said}): ${grant}, then \`pwsync retry\``, { cause: e });
  }
  if (num === 18456 || codes.includes('ELOGIN')) {
    return new PwsyncError(6942, `${where}: SQL Server refused to log the service account in (${quote ? text : 'login failed'}): check connection.user and the password file, and that the server allows SQL Server authentication`, { cause: e });
  }
  if (codes.some((c) => TLS_CODE.test(c)) || codes.includes('EENCRYPT')
    || (num === undefined && (codes.includes('ESOCKET') || codes.length === 0) && TLS_TEXT.test(text))) {
    return new PwsyncError(6951, `${where}: the TLS connection to SQL Server could not be set up and verified (${text}); nothing was sent. `
      + 'Turn encryption on at the server, set tls.ca to the CA that signed its certificate and tls.serverName to a name in it', { cause: e });
  }
  if (num !== undefined && RETRY_NUMBERS[num] !== undefined) {
    return new TargetUnavailableError(`${where}: ${RETRY_NUMBERS[num]} (SQL Server ${num}); retried`, { cause: e });
  }
  if (num === undefined && codes.some((c) => RETRY_CODES.has(c))) {
    return new TargetUnavailableError(`${where}: SQL Server is unavailable (${codes[0]}: ${text}); retried`, { cause: e });
  }
  if (num === 102 || num === 207 || num === 208 || num === 2812 || num === 137 || num === 156) {
    return new PwsyncError(6950, `${where}: SQL Server cannot run the statement (${said}): fix the statement or query in the hub YAML`, { cause: e });
  }
  if (codes.includes('EPARAM') || codes.includes('EARGS')) {
    return new PwsyncError(6950, `${where}: a parameter cannot be bound (${said})`, { cause: e });
  }
  return new PwsyncError(6940, `${where}: ${said}`, { cause: e, retryable: false });
}

function toMssql(v: SqlValue): unknown {
  return typeof v === 'bigint' ? v.toString() : v;
}

class MssqlSession implements SqlSession {
  readonly dialect = 'mssql' as const;

  constructor(private readonly pool: MssqlPoolLike, private readonly env: DialectEnv) {}

  async query(sql: string, params: Readonly<Record<string, SqlValue>> = {}): Promise<SqlResult & { columns: string[] }> {
    const ctx = { connector: this.env.connector, operation: `run ${JSON.stringify(sql.slice(0, 60))}` };
    let bound;
    try {
      bound = bindNamed(sql, params, 'at');
    } catch (e) {
      throw new PwsyncError(6950, `connector ${ctx.connector}: cannot ${ctx.operation}: ${describeError(e)}`, { cause: e });
    }
    try {
      const request = this.pool.request();
      for (const [name, value] of Object.entries(bound.named)) request.input(name, toMssql(value));
      const r = await request.query(bound.text);
      const rows = Array.isArray(r.recordset) ? r.recordset as Array<Record<string, unknown>> : [];
      const meta = (r.recordset as { columns?: Record<string, unknown> } | undefined)?.columns;
      const affected = (r.rowsAffected ?? []).reduce((a, b) => a + b, 0);
      return { rows, rowCount: Array.isArray(r.recordset) ? rows.length : affected, columns: meta ? Object.keys(meta) : Object.keys(rows[0] ?? {}) };
    } catch (e) {
      throw mapMssqlError(e, ctx);
    }
  }

  async setLoginPassword(login: string, password: Secret, options: Readonly<Record<string, string>> = {}): Promise<void> {
    const ctx = { connector: this.env.connector, operation: 'set the password of a login', object: login };
    if (Object.keys(options).length > 0) throw new PwsyncError(6950, `connector ${ctx.connector}: unknown login option ${Object.keys(options).join(', ')}; SQL Server takes none`);
    const name = quoteName(login);
    if (name === undefined) throw new ObjectNotFoundError(login, `the SQL Server logins of connector ${ctx.connector} (a login name is 1 to ${MAX_NAME} characters without NUL)`);
    const refused = password.use((b) => unquotablePassword(b));
    if (refused) throw new PolicyViolationError(`${refused} (connector ${ctx.connector}, login ${login}); nothing was sent`);
    try {
      // The batch string holds the password for this call only; it is never logged nor put in an error.
      await password.use((b) => this.pool.request().batch(`ALTER LOGIN ${name} WITH PASSWORD = ${quoteNString(b)}`));
    } catch (e) {
      const mapped = mapMssqlError(e, ctx, false);
      if (shape(e).number === 15151) throw await this.whyAlterFailed(mapped, ctx);
      throw mapped;
    }
  }

  /** 15151 says "does not exist or you do not have permission": the service account's permission tells which. */
  private async whyAlterFailed(mapped: PwsyncError, ctx: SqlFailureContext): Promise<PwsyncError> {
    let canAlter: unknown;
    try {
      const r = await this.pool.request().query('SELECT HAS_PERMS_BY_NAME(NULL, NULL, \'ALTER ANY LOGIN\') AS can_alter');
      canAlter = (r.recordset as Array<Record<string, unknown>> | undefined)?.[0]?.can_alter;
    } catch (e) {
      return mapMssqlError(e, ctx);
    }
    if (canAlter === 1) return new ObjectNotFoundError(ctx.object ?? '?', `the SQL Server logins of connector ${ctx.connector} (SQL Server 15151; the service account holds ALTER ANY LOGIN, so the login does not exist)`, { cause: mapped.cause });
    return new PwsyncError(6942, `connector ${ctx.connector}: cannot ${ctx.operation} (${ctx.object}): the service account lacks ALTER ANY LOGIN (SQL Server 15151): GRANT ALTER ANY LOGIN TO the service account, then \`pwsync retry\``, { cause: mapped.cause });
  }
}

class MssqlPool implements SqlPool {
  constructor(readonly plain: boolean, private readonly pool: MssqlPoolLike, private readonly env: DialectEnv) {}

  async acquire(): Promise<{ session: SqlSession; release(broken?: boolean): Promise<void> }> {
    // mssql lends a pooled connection per request and drops broken ones itself.
    return { session: new MssqlSession(this.pool, this.env), release: async () => {} };
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

/** The driver config: verified TLS unless the env allows plain. Exported for the stand-in test. */
export function mssqlConfig(settings: SqlConnectionSettings, password: string, env: DialectEnv): { config: mssql.config; plain: boolean } {
  const plain = !env.requireSecureConnection && settings.tls.ca === undefined;
  let ca: string | undefined;
  if (settings.tls.ca !== undefined) {
    const file = env.resolvePath(settings.tls.ca);
    try {
      ca = readFileSync(file, 'utf8');
    } catch (e) {
      throw new PwsyncError(6951, `connector ${env.connector}: cannot read tls.ca ${file} (${describeError(e)}); nothing was sent. Point tls.ca at the PEM file of the CA that signed the server's certificate`, { cause: e });
    }
  }
  return {
    plain,
    config: {
      server: settings.host,
      port: settings.port ?? 1433,
      database: settings.database,
      user: settings.user,
      password,
      pool: { max: settings.poolSize, min: 0 },
      connectionTimeout: settings.timeoutMs,
      requestTimeout: settings.timeoutMs,
      ...(plain ? {} : { beforeConnect: requireTlsBeforeLogin }),
      options: {
        encrypt: !plain,
        trustServerCertificate: false,
        ...(settings.tls.serverName !== undefined ? { serverName: settings.tls.serverName } : {}),
        ...(ca !== undefined ? { cryptoCredentialsDetails: { ca } } : {}),
        appName: 'pwsync',
      },
    },
  };
}

/** The dialect; `driver` is replaced only by the stand-in test (test/sql/standins.test.ts). */
export function createMssqlDialect(driver: MssqlDriver = realDriver): SqlDialect {
  return {
    name: 'mssql',
    driverPackage: 'mssql',
    async createPool(settings, password, env) {
      // The service account's password is a string for the driver's config; mssql keeps it to open connections.
      const { config, plain } = password.use((b) => mssqlConfig(settings, b.toString('utf8'), env));
      let pool: MssqlPoolLike;
      try {
        pool = await driver(config);
      } catch (e) {
        password.dispose();
        throw mapMssqlError(e, { connector: env.connector, operation: `connect to ${settings.host}:${settings.port ?? 1433}` });
      }
      const p = new MssqlPool(plain, pool, env);
      const close = p.close.bind(p);
      p.close = async () => { try { await close(); } finally { password.dispose(); } };
      return p;
    },
    mapError: (e, ctx) => mapMssqlError(e, ctx),
  };
}

export const mssqlDialect = createMssqlDialect();
