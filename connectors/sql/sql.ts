import { createHash } from 'node:crypto';
import { parseDuration } from '../../core/duration.ts';
import { resolveSecret } from '../../core/secret-ref.ts';
import { describeError, PwsyncError, UsageError } from '../../core/errors.ts';
import type { ExtensionConnection, TargetObject } from '../../core/extension.ts';
import type {
  Connector, ConnectorEnv, ConnectorKind, ExtensionHost, IncrementalObjectSource, ObjectDelta, ObjectSource, SecurityLevel,
} from '../contract.ts';
import type { SqlSettings } from '../kinds-schema.ts';
import type { DialectName, SqlConnectionSettings, SqlDialect, SqlPool, SqlSession } from './contract.ts';

/**
 * The SQL connector: one class for every database. Objects come from the configured query, read
 * as an IncrementalObjectSource: a database has no generic change log, so each read is the whole
 * query, answered as "nothing changed" when its digest is the last one. What that buys: the join
 * index reads once per refresh (not a version() read plus a list() read), and an account already
 * joined needs no read at all, because a row that is gone comes back from the set as 6923 (no such
 * login; 0 rows updated) and the join is dropped then.
 * Passwords
 * passwords are set by a password extension (builtin:sql-login, builtin:sql-table) through the
 * session `connect()` lends it. Everything database-specific is behind SqlDialect, and each
 * dialect (with its driver) is loaded only when a connector of its kind opens, so an install
 * without a database driver still starts.
 */

interface DialectModule {
  /** The npm package the dialect needs, for the "install it" message. */
  readonly driverPackage: string;
  load(): Promise<SqlDialect>;
}

/** kind → dialect, loaded lazily. Other dialects add their line here. */
export const SQL_DIALECTS: Readonly<Partial<Record<DialectName, DialectModule>>> = {
  postgresql: { driverPackage: 'pg', load: async () => (await import('./postgresql.ts')).postgresqlDialect },
  mariadb: { driverPackage: 'mariadb', load: async () => (await import('./mariadb.ts')).mariadbDialect },
  mssql: { driverPackage: 'mssql', load: async () => (await import('./mssql.ts')).mssqlDialect },
  oracle: { driverPackage: 'oracledb', load: async () => (await import('./oracle.ts')).oracleDialect },
  // ibm_db itself loads when a db2 connector opens (db2.ts): loading the dialect needs no driver.
  db2: { driverPackage: 'ibm_db', load: async () => (await import('./db2.ts')).db2Dialect },
};

/** Loads a dialect; a driver that is not installed is a UsageError naming the npm install line. */
export async function loadDialect(kind: DialectName, connector: string): Promise<SqlDialect> {
  const m = SQL_DIALECTS[kind];
  if (!m) throw new UsageError(`connector ${connector}: no SQL dialect ${JSON.stringify(kind)} in this build`);
  try {
    return await m.load();
  } catch (e) {
    const code = (e as { code?: string } | undefined)?.code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new UsageError(`connector ${connector}: the ${kind} driver is not installed: run \`npm install ${m.driverPackage}\` next to pwsync (${describeError(e)})`, { cause: e });
    }
    throw new UsageError(`connector ${connector}: the ${kind} driver cannot be loaded: ${describeError(e)}`, { cause: e });
  }
}

type Pooled = SqlPool & { readonly plain?: boolean };
type Columns = { readonly columns?: readonly string[] };

export class SqlConnector implements Connector, ObjectSource, IncrementalObjectSource, ExtensionHost {
  private readonly settings: SqlConnectionSettings;
  private dialect: SqlDialect | undefined;
  private pool: Pooled | undefined;
  private opening: Promise<Pooled> | undefined;

  constructor(readonly name: string, readonly kind: DialectName, private readonly s: SqlSettings, private readonly env: ConnectorEnv) {
    let timeoutMs: number;
    try {
      timeoutMs = parseDuration(s.timeout);
    } catch {
      throw new UsageError(`connector ${name}: connection.timeout ${JSON.stringify(s.timeout)} is not a duration: write one such as 500ms, 10s, 1m`);
    }
    this.settings = {
      host: s.host, ...(s.port === undefined ? {} : { port: s.port }), database: s.database, user: s.user,
      tls: { ...(s.tls.ca === undefined ? {} : { ca: s.tls.ca }), ...(s.tls.serverName === undefined ? {} : { serverName: s.tls.serverName }) },
      poolSize: s.poolSize, timeoutMs,
    };
  }

  securityLevel(): SecurityLevel {
    if (this.pool?.plain === true) return 'plain';
    return this.env.requireSecureConnection === false && this.s.tls.ca === undefined ? 'plain' : 'encrypted';
  }

  async open(): Promise<void> {
    await this.ensurePool();
  }

  private ensurePool(): Promise<Pooled> {
    if (this.pool) return Promise.resolve(this.pool);
    this.opening ??= (async () => {
      this.dialect ??= await loadDialect(this.kind, this.name);
      const password = resolveSecret(this.s.password, `connector ${this.name}: connection.password`, this.env.resolvePath('.'));
      let pool: Pooled;
      try {
        pool = await this.dialect.createPool(this.settings, password, {
          connector: this.name,
          requireSecureConnection: this.env.requireSecureConnection !== false,
          resolvePath: (p) => this.env.resolvePath(p),
        });
      } catch (e) {
        password.dispose();
        throw e;
      }
      this.pool = pool;
      return pool;
    })().finally(() => { this.opening = undefined; });
    return this.opening;
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.close();
  }

  async test(): Promise<string> {
    const pool = await this.ensurePool();
    const port = this.settings.port === undefined ? '' : `:${this.settings.port}`;
    const channel = pool.plain === true ? 'PLAIN (not encrypted: requireSecureConnection is false)'
      : `TLS, certificate verified against ${this.s.tls.ca ?? 'the system CAs'} for ${this.s.tls.serverName ?? this.s.host}`;
    const { rows, columns } = await this.withSession(async (session) => {
      const r = await session.query(this.s.objects.query) as Awaited<ReturnType<SqlSession['query']>> & Columns;
      return { rows: r.rows, columns: r.columns ?? Object.keys(r.rows[0] ?? {}) };
    });
    const anchorNote = columns.includes(this.s.objects.anchor) ? '' : `; the anchor column ${this.s.objects.anchor} is NOT among them: fix objects.anchor or the query`;
    const check = PRIVILEGE_CHECKS[this.kind];
    const privileges = check ? await this.withSession((session) => check(session, this.s.user))
      : `privileges not checked for ${this.kind}`;
    return `${this.kind} ${this.s.host}${port}/${this.s.database} as ${this.s.user}: connected over ${channel}; the objects query returned ${rows.length} row(s) with columns ${columns.join(', ') || '(none)'}${anchorNote}; ${privileges}; ${NOT_CHECKED}`;
  }

  private async withSession<T>(fn: (session: SqlSession) => Promise<T>): Promise<T> {
    const pool = await this.ensurePool();
    const { session, release } = await pool.acquire();
    let broken = false;
    try {
      return await fn(session);
    } catch (e) {
      broken = e instanceof PwsyncError && e.retryable;
      throw e;
    } finally {
      await release(broken);
    }
  }

  private async rows(): Promise<{ objects: TargetObject[]; columns: readonly string[] }> {
    return this.withSession(async (session) => {
      const r = await session.query(this.s.objects.query) as Awaited<ReturnType<SqlSession['query']>> & Columns;
      const anchor = this.s.objects.anchor;
      const seen = new Set<string>();
      const objects: TargetObject[] = [];
      for (const row of r.rows) {
        const id = row[anchor];
        if (id === null || id === undefined) {
          throw new PwsyncError(6950, `connector ${this.name}: the objects query returned a row without the anchor column ${anchor}; select it (… AS ${anchor}) or fix objects.anchor`);
        }
        const key = text(id);
        if (seen.has(key)) throw new PwsyncError(6950, `connector ${this.name}: the objects query returned ${JSON.stringify(key)} twice in the anchor column ${anchor}; the anchor must be unique`);
        seen.add(key);
        const attributes: Record<string, string> = {};
        for (const [k, v] of Object.entries(row)) if (v !== null && v !== undefined) attributes[k] = text(v);
        objects.push({ id: key, attributes });
      }
      return { objects, columns: r.columns ?? Object.keys(r.rows[0] ?? {}) };
    });
  }

  async *list(): AsyncGenerator<TargetObject> {
    for (const o of (await this.rows()).objects) yield o;
  }

  async find(attribute: string, value: string, ignoreCase: boolean): Promise<TargetObject[]> {
    const same = ignoreCase ? (a: string) => a.toLowerCase() === value.toLowerCase() : (a: string) => a === value;
    return (await this.rows()).objects.filter((o) => {
      const v = attribute === 'id' ? o.id : o.attributes[attribute];
      return v !== undefined && same(v);
    });
  }

  async version(): Promise<string> {
    return digest((await this.rows()).objects);
  }

  async changedSince(since: string | undefined): Promise<ObjectDelta> {
    const { objects } = await this.rows();
    const token = digest(objects);
    if (since !== undefined && since === token) return { token, complete: false, objects: [], removed: [] };
    return { token, complete: true, objects, removed: [] };
  }

  async attributes(): Promise<readonly string[]> {
    const { columns } = await this.rows();
    return [...new Set(['id', ...columns])];
  }

  async connect(): Promise<{ connection: ExtensionConnection; release(): Promise<void> }> {
    const pool = await this.ensurePool();
    const lent = await pool.acquire();
    return {
      connection: { kind: 'sql', session: lent.session },
      release: () => lent.release(),
    };
  }
}

/** What `pwsync connector test` cannot know without changing something or parsing the YAML's SQL. */
const NOT_CHECKED = 'not checked: whether the table-mode UPDATE statement may run (its table and columns are not parsed; nothing is written), and rights on individual logins';

/**
 * Read-only privilege checks, per dialect: what the service account may do for builtin:sql-login.
 * Each reads catalog data only; nothing is written.
 */
const PRIVILEGE_CHECKS: Readonly<Partial<Record<DialectName, (session: SqlSession, user: string) => Promise<string>>>> = {
  postgresql: async (session, user) => {
    const r = await session.query('SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user');
    const row = r.rows[0];
    if (!row) return `privileges unknown: role ${user} is not in pg_roles`;
    if (row.rolsuper === true) return `role ${user} is a SUPERUSER: it may set any password, but grant it CREATEROLE alone (least privilege)`;
    return row.rolcreaterole === true
      ? `role ${user} has CREATEROLE: login mode may ALTER ROLE … PASSWORD of non-superuser roles`
      : `role ${user} lacks CREATEROLE: login mode (builtin:sql-login) will fail with 6942; run ALTER ROLE ${user} CREATEROLE (table mode needs only UPDATE on its table)`;
  },
  mariadb: async (session, user) => {
    const r = await session.query('SHOW GRANTS');
    // Only the privilege and object of each GRANT: the lines can also hold the account's password hash.
    const grants = r.rows.map((row) => /^GRANT (.+?) ON (\S+) TO /i.exec(String(Object.values(row)[0] ?? ''))).filter((m) => m !== null)
      .map((m) => `${m[1]} ON ${m[2]}`);
    const global = grants.filter((g) => g.endsWith(' ON *.*'));
    const canAlter = global.some((g) => /\b(ALL PRIVILEGES|CREATE USER)\b/i.test(g)) || grants.some((g) => /^(ALL PRIVILEGES|.*\bUPDATE\b.*) ON `mysql`\.\*$/i.test(g));
    return `${user} has ${grants.join('; ') || 'no grants'}: ${canAlter ? 'login mode may ALTER USER … IDENTIFIED BY'
      : `login mode (builtin:sql-login) will fail with 6942; run GRANT CREATE USER ON *.* TO the service account (table mode needs only UPDATE on its table)`}`;
  },
};

function digest(objects: readonly TargetObject[]): string {
  const h = createHash('sha256');
  for (const o of objects) h.update(JSON.stringify([o.id, o.attributes]));
  return h.digest('base64url');
}

function text(v: unknown): string {
  if (Buffer.isBuffer(v)) return v.toString('hex');
  if (v instanceof Date) return v.toISOString();
  return String(v);
}

/** The connector kind for one dialect (registered in connectors/registry.ts). */
export function sqlKind(kind: DialectName): ConnectorKind<SqlSettings> {
  return {
    kind,
    description: `A ${kind} database: objects from a query, passwords through builtin:sql-login or builtin:sql-table`,
    create: (name, settings, env) => new SqlConnector(name, kind, settings, env),
  };
}
