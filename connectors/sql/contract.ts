import type { PwsyncError } from '../../core/errors.ts';
import type { Secret } from '../../core/secret.ts';

/**
 * The SQL core's contracts: one dialect per database driver, loaded lazily, so an install
 * without database drivers starts; a pool per connector; statements with named parameters.
 * The connector (connectors/sql/sql.ts) and the two password extensions (login, table) are the
 * same code for every dialect; only what is below SqlDialect differs.
 */

export type SqlValue = string | number | bigint | boolean | Buffer | null;

export interface SqlResult {
  readonly rows: ReadonlyArray<Readonly<Record<string, unknown>>>;
  /** Rows changed (UPDATE) or returned (SELECT). */
  readonly rowCount: number;
}

/** One pooled connection, lent for a batch. */
export interface SqlSession {
  readonly dialect: DialectName;
  /**
   * Runs one statement. Parameters are named in the SQL as `:name` (letters, digits, _) and are
   * always bound by the driver, never interpolated; a `:name` without a value is an error.
   */
  query(sql: string, params?: Readonly<Record<string, SqlValue>>): Promise<SqlResult>;
  /**
   * Sets a database login's own password (login mode) the way this dialect can do it safely:
   * PostgreSQL a client-side SCRAM-SHA-256 verifier; MariaDB, SQL Server, Oracle, DB2 through the
   * dialect's one audited quoting function, refusing (6927, PolicyViolationError) a password it
   * cannot quote safely. Throws the dialect's mapped PwsyncError on failure (6923: no such login).
   */
  setLoginPassword(login: string, password: Secret, options?: Readonly<Record<string, string>>): Promise<void>;
}

export interface SqlPool {
  /** A session for one batch; `release` returns it (or drops it when it failed mid-way). */
  acquire(): Promise<{ session: SqlSession; release(broken?: boolean): Promise<void> }>;
  close(): Promise<void>;
}

export type DialectName = 'postgresql' | 'mariadb' | 'mssql' | 'oracle' | 'db2';

/** What every dialect's connection settings share (connectors/kinds-schema.ts: SqlConnection). */
export interface SqlConnectionSettings {
  readonly host: string;
  readonly port?: number;
  readonly database: string;
  readonly user: string;
  /** TLS: the CA that signed the server's certificate, and the name to verify in it. */
  readonly tls: { readonly ca?: string; readonly serverName?: string };
  readonly poolSize: number;
  /** Longest one statement or connect may take, in ms (parsed from the YAML duration). */
  readonly timeoutMs: number;
}

/** What the dialect needs besides its settings. */
export interface DialectEnv {
  /** The connector's name, for messages. */
  readonly connector: string;
  /** False only when the target set requireSecureConnection: false. */
  readonly requireSecureConnection: boolean;
  resolvePath(p: string): string;
}

/** What a statement was doing, for error messages. */
export interface SqlFailureContext {
  readonly connector: string;
  /** "set the password of login alice", "run the list query" … */
  readonly operation: string;
  /** The object or login the statement was for, when there is one. */
  readonly object?: string;
}

export interface SqlDialect {
  readonly name: DialectName;
  /** The npm package that carries the driver (for the "install it" message). */
  readonly driverPackage: string;
  /**
   * Opens a pool of settings.poolSize connections, encrypted and verified unless the env allows
   * plain: a connection that cannot be verified is refused with 6951 before any password is sent.
   * `password` is the service account's, owned by the pool from now on (disposed on close).
   */
  createPool(settings: SqlConnectionSettings, password: Secret, env: DialectEnv): Promise<SqlPool>;
  /** This driver's error → a PwsyncError: policy 6927, no such login/row 6923, connection/timeout/deadlock retryable (6940), missing privilege 6942 naming it, TLS 6951. */
  mapError(e: unknown, ctx: SqlFailureContext): PwsyncError;
}
