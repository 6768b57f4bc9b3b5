import { readFileSync } from 'node:fs';
import * as mariadb from 'mariadb';
import { describeError, PwsyncError, UsageError } from '../../core/errors.ts';
import { ObjectNotFoundError, PolicyViolationError, TargetUnavailableError } from '../../core/extension.ts';
import type { Secret } from '../../core/secret.ts';
import type { SqlLexis } from '../../core/sql-params.ts';
import { bindNamed, type BoundStatement } from './params.ts';

/** The session's sql_mode keeps backslash escapes, and `#` starts a comment. */
const MARIADB_LEXIS: SqlLexis = { backslashEscapes: true, hashComments: true };
import type {
  DialectEnv, SqlConnectionSettings, SqlDialect, SqlFailureContext, SqlPool, SqlResult, SqlSession, SqlValue,
} from './contract.ts';

/**
 * MariaDB / MySQL through the `mariadb` connector (not mysql2: it ignores ssl.servername, skips the
 * host-name check unless told, and escapes wrongly under NO_BACKSLASH_ESCAPES). This module imports
 * the driver statically; the connector (sql.ts) imports this module only when a mariadb connector
 * is configured, so an install without the driver still starts.
 *
 * The server takes a login's password only as a literal in `ALTER USER … IDENTIFIED BY '…'`: it
 * cannot be a bound parameter (server-side prepared, @var, X'hex' all give 1064) and a pre-hashed
 * `IDENTIFIED BY PASSWORD '*…'` bypasses the password policy. So the one audited quoting path is the
 * connector's client-side escaping (`query()` with `?`), which follows the session's
 * NO_BACKSLASH_ESCAPES flag as the server reports it; sql_mode is also pinned at connect. The
 * statement then holds the clear password: MariaDB's general log (and a statement audit plugin)
 * would record it, so both must stay off on the server (README).
 */

/** sql_mode of every session: MariaDB 10.11's default, whatever the server's global one says. */
export const PINNED_SQL_MODE = 'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION';

/**
 * Why a password cannot be passed to ALTER USER safely, or undefined. NUL ends a C string on the
 * server's side of some paths; bytes that are not UTF-8 would be stored as another password than
 * the one a client logs in with (the hash is over the session charset's bytes).
 */
export function unquotablePassword(bytes: Buffer): string | undefined {
  if (bytes.length === 0) return 'the password is empty';
  if (bytes.includes(0)) return 'the password contains a NUL character, which MariaDB cannot take in a quoted literal';
  if (!isUtf8(bytes)) return 'the password is not valid UTF-8, so MariaDB (utf8mb4 session) would store other bytes than the ones a login sends';
  return undefined;
}

function isUtf8(b: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
}

interface DriverError { errno?: unknown; code?: unknown; sqlState?: unknown; fatal?: unknown; text?: unknown; sqlMessage?: unknown; message?: unknown }

const asDriverError = (e: unknown): DriverError | undefined => (typeof e === 'object' && e !== null ? e as DriverError : undefined);

const TLS_NODE_CODES = new Set([
  'ERR_TLS_CERT_ALTNAME_INVALID', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_TLS_HANDSHAKE_TIMEOUT', 'CERT_UNTRUSTED', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
]);
/** Driver-side codes (45xxx) about TLS. */
const TLS_DRIVER_ERRNOS = new Set([45008, 45023, 45056, 45057, 45058, 45059, 45060]);
const RETRY_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'EAI_AGAIN', 'ECONNABORTED']);
/** Server errnos that mean "try again later". */
const RETRY_ERRNOS: Readonly<Record<number, string>> = {
  1040: 'the server has too many connections',
  1053: 'the server is shutting down',
  1205: 'a lock wait timed out',
  1213: 'a deadlock was detected (the transaction was rolled back)',
  1927: 'the connection was killed',
  1969: 'the statement took longer than max_statement_time',
  2006: 'the server has gone away',
  2013: 'the connection was lost during the statement',
};

function serverText(d: DriverError): string {
  return typeof d.text === 'string' ? d.text : typeof d.sqlMessage === 'string' ? d.sqlMessage : '';
}

/** The driver's error → a PwsyncError. The server's text is quoted only for statements that carry no password. */
export function mapMariadbError(e: unknown, ctx: SqlFailureContext): PwsyncError {
  if (e instanceof PwsyncError) return e;
  const where = `connector ${ctx.connector}`;
  const what = `cannot ${ctx.operation}${ctx.object !== undefined ? ` (${ctx.object})` : ''}`;
  if (e instanceof UsageError) return new PwsyncError(6922, `${where}: ${what}: ${e.message}`, { cause: e });
  const d = asDriverError(e);
  const errno = typeof d?.errno === 'number' ? d.errno : undefined;
  const code = typeof d?.code === 'string' ? d.code : undefined;
  const text = d ? serverText(d) : '';
  const msg = d && typeof d.message === 'string' ? d.message : describeError(e);
  const quoted = text ? ` (MariaDB ${errno ?? code}: ${text})` : ` (${errno ?? code ?? describeError(e)})`;

  if ((code && TLS_NODE_CODES.has(code)) || (errno !== undefined && TLS_DRIVER_ERRNOS.has(errno))
    // Only a client-side error (no server errno) is read for TLS words: a server text may quote anything.
    || ((errno === undefined || errno >= 45000) && /certificate|self[- ]signed|\bTLS\b|\bSSL\b/i.test(msg))) {
    // Node's and the driver's TLS texts name the certificate problem and the names checked; they hold no secret.
    const detail = text || (code ? `${code}: ${msg}` : msg);
    return new PwsyncError(6951, `${where}: ${what}: the TLS connection to the server could not be set up and verified (${detail}): `
      + 'enable TLS on the server (ssl_cert, ssl_key), set tls.ca to the CA that signed its certificate and tls.serverName to a name in it; nothing was sent', { cause: e });
  }
  if (code && RETRY_NODE_CODES.has(code)) {
    return new TargetUnavailableError(`${where}: ${what}: the server cannot be reached (${code}); retried`, { cause: e });
  }
  switch (errno) {
    case 1819:
      return new PolicyViolationError(`${text || 'refused by the server\'s password validation'} (${where})`, { cause: e });
    case 1396:
      return new ObjectNotFoundError(ctx.object ?? '?', `${where} (MariaDB 1396: ${text}; no such user@host, check the login and the host option)`, { cause: e });
    case 1227:
      return new PwsyncError(6942, `${where}: ${what}: the service account lacks the CREATE USER privilege (${text}): GRANT CREATE USER ON *.* TO the service account, then \`pwsync retry\``, { cause: e });
    case 1142:
      return new PwsyncError(6942, `${where}: ${what}: the service account lacks a table privilege (${text}): GRANT the named command (UPDATE, SELECT) ON that table TO the service account, then \`pwsync retry\``, { cause: e });
    case 1044:
      return new PwsyncError(6942, `${where}: ${what}: the service account has no access to that database (${text}): GRANT it the privileges its statements need there (table mode: UPDATE on the table; login mode: CREATE USER ON *.*), then \`pwsync retry\``, { cause: e });
    case 1045:
      return new PwsyncError(6942, `${where}: ${what}: the server refused the service account (${text}): check its user name and password file; `
        + 'MariaDB gives the same 1045 when require_secure_transport=ON and the connection is not TLS, so check tls.ca as well', { cause: e });
    case 1130:
      return new PwsyncError(6942, `${where}: ${what}: the service account may not connect from this host (${text}): create it for this client's address`, { cause: e });
    case 1406:
      return new PwsyncError(6950, `${where}: ${what}: a value is too long for its column (${text}): widen the column`, { cause: e });
    case 1054: case 1064: case 1146: case 1049:
      return new PwsyncError(6922, `${where}: ${what}: the configured statement is wrong (MariaDB ${errno}: ${text}): fix it in the connector's YAML`, { cause: e });
    default:
      break;
  }
  if (errno !== undefined && RETRY_ERRNOS[errno]) {
    return new TargetUnavailableError(`${where}: ${what}: ${RETRY_ERRNOS[errno]} (MariaDB ${errno}); retried`, { cause: e });
  }
  // Timeouts, closed sockets and every other fatal (connection-level) error: the set may or may not have landed.
  return new TargetUnavailableError(`${where}: ${what}: ${d?.fatal === true ? 'the connection failed' : 'the server answered an error'}${quoted}; retried`, { cause: e });
}

type Conn = mariadb.Connection;

class MariadbSession implements SqlSession {
  readonly dialect = 'mariadb' as const;
  /** Set when a statement failed in a way that leaves the connection unusable (fatal, timed out). */
  broken = false;

  constructor(readonly conn: Conn, private readonly connector: string, private readonly timeoutMs: number) {}

  /** Runs fn, destroying the connection when it outlives the timeout (the driver has no per-call timeout that works with ALTER USER). */
  private async timed<T>(fn: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.broken = true;
        this.conn.destroy();
        reject(Object.assign(new Error(`no answer within ${this.timeoutMs} ms`), { code: 'ETIMEDOUT' }));
      }, this.timeoutMs);
    });
    try {
      return await Promise.race([fn(), timeout]);
    } catch (e) {
      if (asDriverError(e)?.fatal === true) this.broken = true;
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  async query(sql: string, params?: Readonly<Record<string, SqlValue>>): Promise<SqlResult> {
    const ctx = { connector: this.connector, operation: 'run a statement' };
    let bound: BoundStatement;
    try {
      bound = bindNamed(sql, params ?? {}, 'question', MARIADB_LEXIS);
    } catch (e) {
      throw mapMariadbError(new UsageError(describeError(e), { cause: e }), ctx);
    }
    try {
      // execute(): server-side prepared, the values are bound by the server and never part of the SQL text.
      const res: unknown = await this.timed(() => this.conn.execute(bound.text, bound.positional));
      if (Array.isArray(res)) {
        // The column names even when no row came back (`pwsync connector test` reports them).
        const meta = (res as { meta?: Array<{ name?: unknown }> }).meta;
        const columns = Array.isArray(meta) ? meta.map((m) => String(typeof m.name === 'function' ? (m.name as () => string)() : m.name)) : undefined;
        return { rows: res as Record<string, unknown>[], rowCount: res.length, ...(columns ? { columns } : {}) } as SqlResult;
      }
      const affected = (res as { affectedRows?: unknown }).affectedRows;
      return { rows: [], rowCount: typeof affected === 'number' ? affected : Number(affected ?? 0) };
    } catch (e) {
      throw mapMariadbError(e, ctx);
    }
  }

  async setLoginPassword(login: string, password: Secret, options?: Readonly<Record<string, string>>): Promise<void> {
    const host = options?.host ?? '%';
    const ctx = { connector: this.connector, operation: 'set the password of a login', object: `'${login}'@'${host}'` };
    const refused = password.use((b) => unquotablePassword(b));
    if (refused) throw new PolicyViolationError(`${refused} (connector ${this.connector}, ${ctx.object}); nothing was sent`);
    try {
      // The one place the password becomes a JS string: the connector's client-side escaping (query()
      // with ?) needs one, and this is the audited quoting path (see the module comment). It lives for
      // this call only; the statement text is never logged (logParam: false) nor put in an error.
      await this.timed(() => password.use((b) => this.conn.query('ALTER USER ?@? IDENTIFIED BY ?', [login, host, b.toString('utf8')])));
    } catch (e) {
      const d = asDriverError(e);
      if (d?.errno === 1396 && !this.broken) throw await this.whyAlterFailed(e, ctx);
      if (typeof d?.errno === 'number' && d.errno < 45000 && ![1227, 1044, 1142, 1045, 1130, 1213, 1205, 1040, 1053, 1927, 1969].includes(d.errno)) {
        // Any other server error (a parse error above all) may quote the statement, password included: keep neither text nor cause.
        throw new PwsyncError(6942, `connector ${this.connector}: cannot ${ctx.operation} (${ctx.object}): MariaDB error ${d.errno} (${String(d.code)}); its text is not shown because the statement held the password`);
      }
      throw mapMariadbError(e, ctx);
    }
  }

  /** 1396 means "no such user" and "refused by the password policy" alike: the warnings of the same session tell. */
  private async whyAlterFailed(e: unknown, ctx: SqlFailureContext): Promise<PwsyncError> {
    let warnings: Array<{ Code?: unknown; Message?: unknown }>;
    try {
      warnings = await this.timed(() => this.conn.query('SHOW WARNINGS'));
    } catch (w) {
      return mapMariadbError(w, ctx);
    }
    const policy = warnings.filter((w) => Number(w.Code) === 1819).map((w) => String(w.Message));
    if (policy.length > 0) {
      // The detailed reasons ("Too short password (< 8)") come first, the generic 1819 line last.
      const reasons = policy.filter((m) => !/does not satisfy the current policy/i.test(m));
      return new PolicyViolationError(`${(reasons.length ? reasons : policy).join('; ')} (connector ${ctx.connector}, ${ctx.object}: MariaDB 1396 with warning 1819)`, { cause: e });
    }
    if (warnings.some((w) => Number(w.Code) === 1410)) {
      return new ObjectNotFoundError(ctx.object ?? '?', `connector ${ctx.connector} (MariaDB 1396 with warning 1410: no such user@host; check the login and the host option)`, { cause: e });
    }
    if (warnings.some((w) => Number(w.Code) === 1290)) {
      return new PwsyncError(6942, `connector ${ctx.connector}: cannot ${ctx.operation} (${ctx.object}): the server refused it under --strict-password-validation (MariaDB 1290)`, { cause: e });
    }
    return new ObjectNotFoundError(ctx.object ?? '?', `connector ${ctx.connector} (MariaDB 1396 without a telling warning: ${warnings.map((w) => String(w.Code)).join(', ') || 'none'})`, { cause: e });
  }
}

class MariadbPool implements SqlPool {
  /** Read by the connector (sql.ts) for `securityLevel()` and `pwsync connector test`. */
  readonly plain: boolean;
  #idle: Conn[] = [];
  #open = 0;
  #waiters: Array<() => void> = [];
  #closed = false;

  constructor(
    private readonly settings: SqlConnectionSettings,
    private readonly password: Secret,
    private readonly env: DialectEnv,
    private readonly ssl: false | { ca?: string; rejectUnauthorized: true; servername?: string },
  ) {
    this.plain = ssl === false;
  }

  private async connect(): Promise<Conn> {
    const s = this.settings;
    // The service account's password becomes a string for the driver's handshake only.
    const conn = await this.password.use((b) => mariadb.createConnection({
      host: s.host, port: s.port ?? 3306, user: s.user, password: b.toString('utf8'), database: s.database,
      ssl: this.ssl, connectTimeout: s.timeoutMs,
      charset: 'utf8mb4', // the hash is over the session charset's bytes (a latin1 session stores another password)
      sessionVariables: { sql_mode: PINNED_SQL_MODE },
      foundRows: true, // an UPDATE writing the same hash again still counts 1 row: 0 means "no such row"
      logParam: false, multipleStatements: false, permitLocalInfile: false, allowPublicKeyRetrieval: false,
    }));
    // A connection that dies while idle (server restart, network) emits 'error': without a listener
    // that would be an uncaught exception. Dropped here; a lent one fails its next statement instead.
    conn.on('error', () => {
      const i = this.#idle.indexOf(conn);
      if (i >= 0) {
        this.#idle.splice(i, 1);
        this.#drop(conn);
        this.#wake();
      }
    });
    return conn;
  }

  async acquire(): Promise<{ session: SqlSession; release(broken?: boolean): Promise<void> }> {
    const ctx = { connector: this.env.connector, operation: `connect to ${this.settings.host}:${this.settings.port ?? 3306}` };
    const deadline = Date.now() + this.settings.timeoutMs;
    for (;;) {
      if (this.#closed) throw new TargetUnavailableError(`connector ${this.env.connector}: its SQL pool is closed`);
      const idle = this.#idle.pop();
      let conn: Conn | undefined;
      if (idle && idle.isValid()) conn = idle;
      else if (idle) { this.#drop(idle); continue; }
      else if (this.#open < this.settings.poolSize) {
        this.#open++;
        try {
          conn = await this.connect();
        } catch (e) {
          this.#open--;
          this.#wake();
          throw mapMariadbError(e, ctx);
        }
      } else {
        const left = deadline - Date.now();
        if (left <= 0) throw new TargetUnavailableError(`connector ${this.env.connector}: all ${this.settings.poolSize} connections stayed busy for ${this.settings.timeoutMs} ms; retried`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => { this.#waiters = this.#waiters.filter((w) => w !== wake); resolve(); }, left);
          const wake = (): void => { clearTimeout(t); resolve(); };
          this.#waiters.push(wake);
        });
        continue;
      }
      const session = new MariadbSession(conn, this.env.connector, this.settings.timeoutMs);
      let released = false;
      return {
        session,
        release: async (broken?: boolean) => {
          if (released) return;
          released = true;
          if (broken || session.broken || this.#closed || !conn.isValid()) this.#drop(conn);
          else this.#idle.push(conn);
          this.#wake();
        },
      };
    }
  }

  #drop(conn: Conn): void {
    this.#open--;
    conn.destroy();
  }

  #wake(): void {
    this.#waiters.shift()?.();
  }

  async close(): Promise<void> {
    this.#closed = true;
    const idle = this.#idle.splice(0);
    await Promise.all(idle.map(async (c) => {
      this.#open--;
      try { await c.end(); } catch { c.destroy(); }
    }));
    for (const w of this.#waiters.splice(0)) w();
    this.password.dispose();
  }
}

export const mariadbDialect: SqlDialect = {
  name: 'mariadb',
  driverPackage: 'mariadb',
  async createPool(settings, password, env) {
    let ssl: false | { ca?: string; rejectUnauthorized: true; servername?: string };
    if (settings.tls.ca !== undefined || env.requireSecureConnection) {
      // Verified TLS: the configured CA (or Node's trust store when none is set) and the host name
      // (the driver checks `servername`, else the host; an IP host is checked as "localhost").
      let ca: string | undefined;
      if (settings.tls.ca !== undefined) {
        const file = env.resolvePath(settings.tls.ca);
        try {
          ca = readFileSync(file, 'utf8');
        } catch (e) {
          password.dispose();
          throw new PwsyncError(6951, `connector ${env.connector}: cannot read tls.ca ${file} (${describeError(e)}): point it at the PEM file of the CA that signed the server's certificate`, { cause: e });
        }
      }
      ssl = { rejectUnauthorized: true, ...(ca !== undefined ? { ca } : {}), ...(settings.tls.serverName !== undefined ? { servername: settings.tls.serverName } : {}) };
    } else {
      ssl = false; // requireSecureConnection: false and no CA: plain, with the start-up warning the connector logs
    }
    return new MariadbPool(settings, password, env, ssl);
  },
  mapError: mapMariadbError,
};

export default mariadbDialect;
