import { readFileSync } from 'node:fs';
import pg from 'pg';
import { describeError, PwsyncError } from '../../core/errors.ts';
import { ObjectNotFoundError, PolicyViolationError, TargetUnavailableError } from '../../core/extension.ts';
import type { Secret } from '../../core/secret.ts';
import type {
  DialectEnv, SqlConnectionSettings, SqlDialect, SqlFailureContext, SqlPool, SqlResult, SqlSession, SqlValue,
} from './contract.ts';
import { bindNamed } from './params.ts';
import { isValidScramVerifier, scramSha256Verifier } from './scram.ts';

/**
 * The PostgreSQL dialect (driver `pg`): TLS verify-full unless the connector allows plain; login
 * mode sends a client-side SCRAM-SHA-256 verifier (ALTER ROLE takes no bind parameters, and a
 * clear password would land in the server's log), quoted by pg's escapeLiteral/escapeIdentifier.
 */

const LOGIN_OPTIONS = ['validUntil'] as const;

/** The SQLSTATEs of connection trouble worth retrying: the server may be back next time. */
const RETRYABLE_STATES = /^(08|53|57P0[1-3]|40001|40P01|55P03|57014)/;
const RETRYABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND']);
const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|CERT_|ERR_OSSL_)/;

interface PgErrorShape {
  code?: string;
  message?: string;
  routine?: string;
}

/**
 * A pg error → the PwsyncError an admin can act on. `account` is the service account, named in
 * privilege failures; `statement` the statement's first word (UPDATE), named in the grant to add.
 */
export function mapPgError(e: unknown, ctx: SqlFailureContext, account?: string, statement?: string): PwsyncError {
  if (e instanceof PwsyncError) return e;
  const err = (typeof e === 'object' && e !== null ? e : {}) as PgErrorShape;
  const code = typeof err.code === 'string' ? err.code : '';
  const msg = describeError(e);
  const where = `connector ${ctx.connector}: cannot ${ctx.operation}`;
  const who = account === undefined ? 'the service account' : `the service account ${JSON.stringify(account)}`;
  if (code === '22023' && err.routine === 'check_password') return new PolicyViolationError(`PostgreSQL refused it: ${msg}`, { cause: e });
  if (code === '42704' && ctx.object !== undefined) return new ObjectNotFoundError(ctx.object, `the PostgreSQL roles of connector ${ctx.connector}`, { cause: e });
  if (code === '42501') {
    const table = /permission denied for (?:table|relation) (\S+)/.exec(msg)?.[1];
    const grant = table !== undefined
      ? `grant ${statement ?? 'the'} privilege on table ${table}: GRANT ${statement ?? 'UPDATE'} ON ${table} TO ${account ?? '<account>'}`
      : /superuser/.test(msg)
        ? 'the login is a superuser: a CREATEROLE account may not change it; leave superusers out of the objects query'
        : `give it CREATEROLE (not superuser): ALTER ROLE ${account ?? '<account>'} CREATEROLE`;
    return new PwsyncError(6942, `${where}: PostgreSQL refused ${who} (${msg}); ${grant}`, { cause: e });
  }
  if (code === '28P01' || code === '28000') {
    if (/no encryption/.test(msg)) return new PwsyncError(6951, `${where}: the server accepts only encrypted connections (${msg}); set tls.ca, or turn requireSecureConnection back on`, { cause: e });
    return new PwsyncError(6942, `${where}: PostgreSQL refused to log ${who} in (${msg}); check connection.user and the password file, and pg_hba.conf`, { cause: e });
  }
  if (code === '42601' || code === '42P01' || code === '42703' || code === '42883') {
    return new PwsyncError(6950, `${where}: PostgreSQL cannot run the statement (${msg}); fix the statement or query in the hub YAML`, { cause: e });
  }
  const tls = (): PwsyncError => new PwsyncError(6951, `${where}: the TLS connection could not be verified (${msg}); nothing was sent. Check tls.ca (the CA that signed the server's certificate) and tls.serverName (a name in its certificate)`, { cause: e });
  const unavailable = (): PwsyncError => new TargetUnavailableError(`${where}: PostgreSQL is unavailable (${msg})`, { cause: e });
  // Codes first (a server message may mention SSL in passing), then what pg says in words only.
  if (TLS_CODES.test(code)) return tls();
  if (RETRYABLE_STATES.test(code) || RETRYABLE_CODES.has(code)) return unavailable();
  if (/does not support SSL|certificate|TLS|SSL/i.test(msg)) return tls();
  if (/timeout|timed out|Connection terminated|ECONNREFUSED/i.test(msg)) return unavailable();
  return new PwsyncError(6940, `${where}: ${msg}`, { cause: e, retryable: false });
}

function statementVerb(sql: string): string | undefined {
  return /^\s*([A-Za-z]+)/.exec(sql)?.[1]?.toUpperCase();
}

class PgSession implements SqlSession {
  readonly dialect = 'postgresql' as const;

  constructor(private readonly client: pg.PoolClient, private readonly settings: SqlConnectionSettings, private readonly env: DialectEnv) {}

  async query(sql: string, params: Readonly<Record<string, SqlValue>> = {}): Promise<SqlResult & { columns: string[] }> {
    const ctx = { connector: this.env.connector, operation: `run ${JSON.stringify(sql.slice(0, 60))}` };
    let bound;
    try {
      bound = bindNamed(sql, params, 'dollar');
    } catch (e) {
      throw new PwsyncError(6950, `connector ${ctx.connector}: cannot ${ctx.operation}: ${describeError(e)}`, { cause: e });
    }
    try {
      const r = await this.client.query({ text: bound.text, values: bound.positional.map(toPg) });
      return { rows: r.rows as Array<Record<string, unknown>>, rowCount: r.rowCount ?? r.rows.length, columns: r.fields.map((f) => f.name) };
    } catch (e) {
      throw mapPgError(e, ctx, this.settings.user, statementVerb(sql));
    }
  }

  async setLoginPassword(login: string, password: Secret, options: Readonly<Record<string, string>> = {}): Promise<void> {
    const ctx = { connector: this.env.connector, operation: `set the password of role ${JSON.stringify(login)}`, object: login };
    const unknown = Object.keys(options).filter((k) => !(LOGIN_OPTIONS as readonly string[]).includes(k));
    if (unknown.length > 0) throw new PwsyncError(6950, `connector ${ctx.connector}: unknown login option ${unknown.join(', ')}; PostgreSQL takes ${LOGIN_OPTIONS.join(', ')}`);
    const verifier = password.use((bytes) => scramSha256Verifier(bytes));
    // A malformed verifier would be stored as if it were the clear password (and logged as one).
    if (!isValidScramVerifier(verifier)) throw new PwsyncError(6950, `connector ${ctx.connector}: the computed SCRAM verifier is malformed; nothing was sent`);
    let sql = `ALTER ROLE ${this.client.escapeIdentifier(login)} PASSWORD ${this.client.escapeLiteral(verifier)}`;
    if (options.validUntil !== undefined) sql += ` VALID UNTIL ${this.client.escapeLiteral(options.validUntil)}`;
    try {
      await this.client.query(sql);
    } catch (e) {
      throw mapPgError(e, ctx, this.settings.user);
    }
  }
}

function readCa(file: string, connector: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new PwsyncError(6951, `connector ${connector}: cannot read tls.ca ${file} (${describeError(e)}); nothing was sent. Point tls.ca at the PEM file of the CA that signed the server's certificate`, { cause: e });
  }
}

function toPg(v: SqlValue): unknown {
  return typeof v === 'bigint' ? v.toString() : v;
}

class PgPool implements SqlPool {
  readonly plain: boolean;
  private readonly pool: pg.Pool;

  constructor(private readonly settings: SqlConnectionSettings, private readonly password: Secret, private readonly env: DialectEnv) {
    this.plain = !env.requireSecureConnection && settings.tls.ca === undefined;
    const ca = settings.tls.ca === undefined ? undefined : readCa(env.resolvePath(settings.tls.ca), env.connector);
    this.pool = new pg.Pool({
      host: settings.host,
      port: settings.port ?? 5432,
      database: settings.database,
      user: settings.user,
      // pg asks for it per connection; the string lives only for that handshake.
      password: () => password.use((b) => b.toString('utf8')),
      // verify-full: the chain against ca (or the system CAs) and the name.
      ssl: this.plain ? false : { ...(ca === undefined ? {} : { ca }), rejectUnauthorized: true, servername: settings.tls.serverName ?? settings.host },
      max: settings.poolSize,
      connectionTimeoutMillis: settings.timeoutMs,
      statement_timeout: settings.timeoutMs,
      query_timeout: settings.timeoutMs + 1000,
      application_name: 'pwsync',
    });
    // An idle connection the server drops must not crash the hub; the next acquire reconnects.
    this.pool.on('error', () => {});
  }

  async acquire(): Promise<{ session: SqlSession; release(broken?: boolean): Promise<void> }> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw mapPgError(e, { connector: this.env.connector, operation: `connect to ${this.settings.host}:${this.settings.port ?? 5432}` }, this.settings.user);
    }
    let released = false;
    return {
      session: new PgSession(client, this.settings, this.env),
      release: async (broken?: boolean) => {
        if (released) return;
        released = true;
        client.release(broken === true ? true : undefined);
      },
    };
  }

  async close(): Promise<void> {
    try {
      await this.pool.end();
    } finally {
      this.password.dispose();
    }
  }
}

export const postgresqlDialect: SqlDialect = {
  name: 'postgresql',
  driverPackage: 'pg',
  async createPool(settings, password, env) {
    return new PgPool(settings, password, env);
  },
  mapError: (e, ctx) => mapPgError(e, ctx),
};
