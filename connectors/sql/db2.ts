import { describeError, PwsyncError, UsageError } from '../../core/errors.ts';
import { PolicyViolationError, TargetUnavailableError, UnsupportedOperationError } from '../../core/extension.ts';
import type { Secret } from '../../core/secret.ts';
import type {
  DialectEnv, SqlConnectionSettings, SqlDialect, SqlFailureContext, SqlPool, SqlResult, SqlSession, SqlValue,
} from './contract.ts';
import { bindNamed } from './params.ts';

/**
 * DB2 through `ibm_db`, an optional peer dependency: its install downloads IBM's CLI driver, so it
 * is not installed with pwsync. It is imported only when a db2 connector opens; missing, that is a
 * UsageError naming the install line.
 *
 * TLS: `SECURITY=SSL` with `SSLServerCertificate=<tls.ca>` (the CLI driver reads the PEM file
 * itself) and host-name validation; plain only when the connector sets requireSecureConnection: false.
 * DB2 authenticates logins against the operating system or LDAP: it keeps no password of its own
 * to set, so login mode is refused (6928) and table mode is the way to reach a DB2 application.
 */

/** The narrow part of ibm_db the dialect uses (callback API, present in every ibm_db release). */
export interface Db2ConnectionLike {
  query(sql: string, params: unknown[], cb: (err: unknown, rows: Array<Record<string, unknown>>) => void): void;
  prepare(sql: string, cb: (err: unknown, stmt: Db2StatementLike) => void): void;
  close(cb: (err: unknown) => void): void;
}
export interface Db2StatementLike {
  executeNonQuery(params: unknown[], cb: (err: unknown, affected: number) => void): void;
  closeSync?(): void;
}
export interface Db2PoolLike {
  open(connStr: string, cb: (err: unknown, conn: Db2ConnectionLike) => void): void;
  close(cb: (err?: unknown) => void): void;
}
export interface Db2Module {
  Pool: new (options?: { maxPoolSize?: number; connectTimeout?: number }) => Db2PoolLike;
}

const IBM_DB = 'ibm_db';

async function importIbmDb(): Promise<Db2Module> {
  const m = await import(IBM_DB) as { default?: Db2Module } & Db2Module;
  return m.default ?? m;
}

/** ibm_db, or a UsageError naming what to install. */
export async function loadIbmDb(connector: string, load: () => Promise<Db2Module> = importIbmDb): Promise<Db2Module> {
  try {
    return await load();
  } catch (e) {
    const code = (e as { code?: unknown } | undefined)?.code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new UsageError(`connector ${connector}: the db2 driver is not installed: run \`npm install ibm_db\` next to pwsync `
        + '(its install downloads IBM\'s Data Server CLI driver, so the machine needs to reach IBM\'s download site or have IBM_DB_HOME point at an installed CLI driver)', { cause: e });
    }
    throw new UsageError(`connector ${connector}: the db2 driver (ibm_db) cannot be loaded: ${describeError(e)}`, { cause: e });
  }
}

interface Db2ErrorShape { state?: unknown; sqlcode?: unknown; message?: unknown; code?: unknown }

const RETRY_STATES = new Set(['08001', '08003', '08004', '08S01', '40001', '40003', '57011', '57033', '57019', 'HYT00', 'HYT01']);
const RETRY_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

/** An ibm_db error → the PwsyncError an admin can act on. */
export function mapDb2Error(e: unknown, ctx: SqlFailureContext): PwsyncError {
  if (e instanceof PwsyncError) return e;
  const s = (typeof e === 'object' && e !== null ? e : {}) as Db2ErrorShape;
  const state = typeof s.state === 'string' ? s.state : '';
  const text = typeof s.message === 'string' ? s.message : describeError(e);
  const where = `connector ${ctx.connector}: cannot ${ctx.operation}${ctx.object !== undefined ? ` (${ctx.object})` : ''}`;
  // GSKit's errors (SQL30081N with a secure-socket reason, SQL5042N, "GSKit") come before "connection": they are not retried.
  if (/GSKit|SQL5042N|SSL|certificate/i.test(text) && (state.startsWith('08') || state === '')) {
    return new PwsyncError(6951, `${where}: the TLS connection to DB2 could not be set up and verified (${text}); nothing was sent. `
      + 'Enable SSL on the server (SSL_SVCENAME), set tls.ca to the PEM file of the CA that signed its certificate and connect to a host name in it', { cause: e });
  }
  // SQL0438N: the application's own trigger or procedure refused the value (SIGNAL), e.g. a password rule.
  if (/SQL0438N/.test(text) || state.startsWith('23')) return new PolicyViolationError(`DB2 refused it: ${text} (connector ${ctx.connector})`, { cause: e });
  if (state === '42501' || state === '42502') {
    return new PwsyncError(6942, `${where}: the service account lacks a privilege (${text}): GRANT the privilege it names (UPDATE, SELECT on the table) TO the service account, then \`pwsync retry\``, { cause: e });
  }
  if (/SQL30082N/.test(text)) {
    return new PwsyncError(6942, `${where}: DB2 refused the service account (${text}): check connection.user and the password file`, { cause: e });
  }
  if (RETRY_STATES.has(state) || (typeof s.code === 'string' && RETRY_CODES.has(s.code))) {
    return new TargetUnavailableError(`${where}: DB2 is unavailable (${text}); retried`, { cause: e });
  }
  if (state === '42704' || state === '42703' || state === '42601' || state === '42S02') {
    return new PwsyncError(6950, `${where}: DB2 cannot run the statement (${text}): fix the statement or query in the hub YAML`, { cause: e });
  }
  return new PwsyncError(6940, `${where}: ${text}`, { cause: e, retryable: false });
}

/**
 * One keyword value of a CLI connection string: braced, so `;` and `=` are data. A `}` cannot be
 * escaped inside braces, and NUL ends the string in the CLI driver: both refused.
 */
function cliValue(v: string, what: string, connector: string): string {
  if (v.includes('}') || v.includes('\0')) throw new PwsyncError(6950, `connector ${connector}: ${what} contains } or NUL, which a DB2 CLI connection string cannot carry`);
  return `{${v}}`;
}

/** The CLI connection string (holds the service password: built for one open() call only). */
export function db2ConnectionString(settings: SqlConnectionSettings, password: string, env: DialectEnv): { connStr: string; plain: boolean } {
  const plain = !env.requireSecureConnection && settings.tls.ca === undefined;
  if (!plain && settings.tls.ca === undefined) {
    throw new PwsyncError(6951, `connector ${env.connector}: DB2 over TLS needs tls.ca (the CLI driver does not read the system CAs without a GSKit keystore): set it to the PEM file of the CA that signed the server's certificate; nothing was sent`);
  }
  const v = (x: string, what: string): string => cliValue(x, what, env.connector);
  const parts = [
    `DATABASE=${v(settings.database, 'connection.database')}`, `HOSTNAME=${v(settings.host, 'connection.host')}`,
    `PORT=${settings.port ?? (plain ? 50000 : 50001)}`, 'PROTOCOL=TCPIP',
    `UID=${v(settings.user, 'connection.user')}`, `PWD=${v(password, 'the service account\'s password')}`,
    `CONNECTTIMEOUT=${Math.max(1, Math.ceil(settings.timeoutMs / 1000))}`,
  ];
  if (!plain) {
    parts.push('SECURITY=SSL', `SSLServerCertificate=${v(env.resolvePath(settings.tls.ca!), 'tls.ca')}`, 'SSLClientHostnameValidation=Basic');
  }
  return { connStr: `${parts.join(';')};`, plain };
}

function toDb2(v: SqlValue): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'boolean') return v ? 1 : 0;
  return v;
}

const call = <T>(fn: (cb: (err: unknown, v?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));

class Db2Session implements SqlSession {
  readonly dialect = 'db2' as const;

  constructor(private readonly conn: Db2ConnectionLike, private readonly env: DialectEnv) {}

  async query(sql: string, params: Readonly<Record<string, SqlValue>> = {}): Promise<SqlResult> {
    const ctx = { connector: this.env.connector, operation: `run ${JSON.stringify(sql.slice(0, 60))}` };
    let bound;
    try {
      bound = bindNamed(sql, params, 'question');
    } catch (e) {
      throw new PwsyncError(6950, `connector ${ctx.connector}: cannot ${ctx.operation}: ${describeError(e)}`, { cause: e });
    }
    const values = bound.positional.map(toDb2);
    try {
      if (/^\s*(SELECT|WITH|VALUES)\b/i.test(bound.text)) {
        const rows = await call<Array<Record<string, unknown>>>((cb) => this.conn.query(bound.text, values, cb));
        return { rows, rowCount: rows.length };
      }
      const stmt = await call<Db2StatementLike>((cb) => this.conn.prepare(bound.text, cb));
      try {
        const affected = await call<number>((cb) => stmt.executeNonQuery(values, cb));
        return { rows: [], rowCount: affected };
      } finally {
        stmt.closeSync?.();
      }
    } catch (e) {
      throw mapDb2Error(e, ctx);
    }
  }

  async setLoginPassword(login: string, _password: Secret): Promise<void> {
    throw new UnsupportedOperationError(`setting the password of login ${JSON.stringify(login)} on DB2 (connector ${this.env.connector}): `
      + 'DB2 authenticates logins against the operating system or LDAP and keeps no password of its own; set it there (an ldap/ad target), or use builtin:sql-table for an application\'s own user table');
  }
}

class Db2Pool implements SqlPool {
  constructor(readonly plain: boolean, private readonly pool: Db2PoolLike, private readonly open: () => Promise<Db2ConnectionLike>, private readonly env: DialectEnv) {}

  async acquire(): Promise<{ session: SqlSession; release(broken?: boolean): Promise<void> }> {
    const conn = await this.open();
    let released = false;
    return {
      session: new Db2Session(conn, this.env),
      release: async () => {
        if (released) return;
        released = true;
        // close() returns the connection to ibm_db's pool, which tests it before lending it again.
        await call<unknown>((cb) => conn.close(cb)).catch(() => undefined);
      },
    };
  }

  async close(): Promise<void> {
    await call<unknown>((cb) => this.pool.close(cb)).catch(() => undefined);
  }
}

/** The dialect; `load` is replaced only by the stand-in test (test/sql/standins.test.ts). */
export function createDb2Dialect(load?: () => Promise<Db2Module>): SqlDialect {
  return {
    name: 'db2',
    driverPackage: 'ibm_db',
    async createPool(settings, password, env) {
      const ibmdb = await loadIbmDb(env.connector, load);
      // Refuses a missing CA (and unquotable settings) before anything is opened.
      const { plain } = db2ConnectionString(settings, '', env);
      const pool = new ibmdb.Pool({ maxPoolSize: settings.poolSize, connectTimeout: Math.max(1, Math.ceil(settings.timeoutMs / 1000)) });
      const open = async (): Promise<Db2ConnectionLike> => {
        const ctx = { connector: env.connector, operation: `connect to ${settings.host}` };
        try {
          // The connection string holds the password for this open() call only.
          return await password.use((b) => {
            const { connStr } = db2ConnectionString(settings, b.toString('utf8'), env);
            return call<Db2ConnectionLike>((cb) => pool.open(connStr, cb));
          });
        } catch (e) {
          throw mapDb2Error(e, ctx);
        }
      };
      const p = new Db2Pool(plain, pool, open, env);
      const close = p.close.bind(p);
      p.close = async () => { try { await close(); } finally { password.dispose(); } };
      return p;
    },
    mapError: mapDb2Error,
  };
}

export const db2Dialect = createDb2Dialect();
