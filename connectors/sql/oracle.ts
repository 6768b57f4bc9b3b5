import { readFileSync } from 'node:fs';
import oracledb from 'oracledb';
import { describeError, PwsyncError } from '../../core/errors.ts';
import { ObjectNotFoundError, PolicyViolationError, TargetUnavailableError } from '../../core/extension.ts';
import type { Secret } from '../../core/secret.ts';
import type {
  DialectEnv, SqlConnectionSettings, SqlDialect, SqlFailureContext, SqlPool, SqlResult, SqlSession, SqlValue,
} from './contract.ts';
import { bindNamed } from './params.ts';

/**
 * Oracle through `oracledb` in thin mode (pure JavaScript: initOracleClient is never called, so no
 * Instant Client). This module imports the driver statically; the connector (sql.ts) imports it only
 * when an oracle connector is configured.
 *
 * TLS: TCPS through an Easy Connect string `tcps://host:port/service`; the driver always verifies
 * the chain (rejectUnauthorized) and, with sslServerDNMatch, the host name in the certificate. The
 * CA goes in as `walletContent` (PEM): thin mode has no separate CA option. oracledb 6.x hands that
 * one PEM to Node as cert, key and ca alike, so a CA-only PEM fails to load (NJS-505). A PEM that
 * holds a private key (orapki's ewallet.pem export) is passed as it is; for a CA-only PEM,
 * `thinWallet` puts a throwaway client identity in front of the CA (see there). tls.serverName
 * holding a distinguished name (CN=…,O=…) is matched in full (sslServerCertDN); a plain name must be
 * the host itself, since thin mode checks the host it connects to.
 *
 * Login mode: Oracle cannot bind the password of ALTER USER … IDENTIFIED BY, so it goes in as a
 * quoted identifier through `quotePassword`, the one audited quoting function of this dialect. The
 * statement holds the clear password: a SQL trace (event 10046), and unified auditing of statement
 * text where the server does not redact it, would record it: keep them off (README).
 */

/** The narrow part of oracledb the dialect uses; tests hand in a recorder (driver boundary). */
export interface OracleConnectionLike {
  callTimeout: number;
  execute(sql: string, binds: Record<string, unknown>, options: Record<string, unknown>): Promise<{ rows?: unknown[]; rowsAffected?: number; metaData?: Array<{ name: string }> }>;
  close(options?: { drop?: boolean }): Promise<void>;
}
export interface OraclePoolLike {
  getConnection(): Promise<OracleConnectionLike>;
  close(drainTime?: number): Promise<void>;
}
export type OracleDriver = (attributes: oracledb.PoolAttributes) => Promise<OraclePoolLike>;

const realDriver: OracleDriver = async (attributes) => await oracledb.createPool(attributes) as unknown as OraclePoolLike;

/** Oracle's limit on an identifier (12.2+) and on a password. */
const MAX_NAME_BYTES = 128;
const MAX_PASSWORD_BYTES = 1024;

/** Why a password cannot be a quoted identifier safely, or undefined. */
export function unquotablePassword(bytes: Buffer): string | undefined {
  if (bytes.length === 0) return 'the password is empty';
  if (bytes.includes(0)) return 'the password contains a NUL character, which an Oracle password cannot hold';
  if (bytes.includes(0x22)) return 'the password contains a double quote ("), which an Oracle password (a quoted identifier) cannot hold';
  if (bytes.length > MAX_PASSWORD_BYTES) return `the password is ${bytes.length} bytes long; Oracle takes at most ${MAX_PASSWORD_BYTES}`;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return 'the password is not valid UTF-8 (or holds a lone surrogate), so Oracle would store other characters than the ones a login sends';
  }
  return undefined;
}

/**
 * The audited quoting function: a password as a quoted identifier "…". Nothing ends one but `"`,
 * which unquotablePassword refuses along with NUL, so there is no escaping to get wrong.
 */
export function quotePassword(bytes: Buffer): string {
  const refused = unquotablePassword(bytes);
  if (refused) throw new PolicyViolationError(refused);
  return `"${bytes.toString('utf8')}"`;
}

/**
 * A user name as a quoted identifier, or undefined when it cannot be one. Quoted, the name is taken
 * as written: Oracle stores unquoted names in upper case (CREATE USER alice makes ALICE), so the
 * objects query must return the name as DBA_USERS.USERNAME holds it (SELECT username AS id …).
 */
export function quoteUser(name: string): string | undefined {
  if (name.length === 0 || Buffer.byteLength(name) > MAX_NAME_BYTES || name.includes('"') || name.includes('\0')) return undefined;
  return `"${name}"`;
}

interface OracleErrorShape { errorNum?: unknown; code?: unknown; message?: unknown }

const RETRY_CODES = new Set(['NJS-500', 'NJS-501', 'NJS-503', 'NJS-510', 'NJS-511', 'NJS-521', 'NJS-040', 'NJS-123']);
const TLS_CODES = new Set(['NJS-505', 'NJS-506', 'NJS-507', 'NJS-508']);
/** ORA- numbers worth retrying: the server or the network may be back next time. */
const RETRY_NUMBERS: Readonly<Record<number, string>> = {
  60: 'a deadlock was detected',
  51: 'a resource wait timed out',
  1033: 'Oracle is starting or shutting down',
  1034: 'Oracle is not available',
  1089: 'Oracle is shutting down',
  3113: 'the connection ended (end-of-file on the communication channel)',
  3114: 'the connection is gone',
  3135: 'the connection was lost',
  3136: 'the inbound connection timed out',
  12170: 'the connect timed out',
  12514: 'the listener does not know the service yet',
  12516: 'the listener found no free handler',
  12519: 'the listener found no free handler',
  12520: 'the listener found no free handler',
  12521: 'the listener does not know the instance yet',
  12528: 'the instance is blocking new connections',
  12537: 'the connection was closed',
  12541: 'no listener',
  12543: 'the destination host is unreachable',
  12571: 'a packet could not be written',
  25408: 'the call cannot be safely replayed',
};

/** The first line of an Oracle message, without the help link thin mode appends. */
function firstLine(m: string): string {
  return m.split('\n').filter((l) => !l.startsWith('Help: ')).join('; ');
}

/**
 * An oracledb error → the PwsyncError an admin can act on. `quote: false` for statements that held a
 * password: then no server text is repeated.
 */
export function mapOracleError(e: unknown, ctx: SqlFailureContext, quote = true): PwsyncError {
  if (e instanceof PwsyncError) return e;
  const s = (typeof e === 'object' && e !== null ? e : {}) as OracleErrorShape;
  const code = typeof s.code === 'string' ? s.code : '';
  const num = code.startsWith('ORA-') && typeof s.errorNum === 'number' ? s.errorNum : code.startsWith('ORA-') ? Number(code.slice(4)) : undefined;
  const text = firstLine(typeof s.message === 'string' ? s.message : describeError(e));
  const where = `connector ${ctx.connector}: cannot ${ctx.operation}${ctx.object !== undefined ? ` (${ctx.object})` : ''}`;
  const said = quote ? text : `${code || 'error'}; its text is not shown because the statement held the password`;

  // 28003 and the verify function's own ORA-20001…20010 name the rule, never the password.
  if (num === 28003 || num === 28007 || num === 988 || (num !== undefined && num >= 20001 && num <= 20010)) {
    return new PolicyViolationError(`${text} (connector ${ctx.connector}${ctx.object !== undefined ? `, user ${ctx.object}` : ''})`, { cause: e });
  }
  if (num === 1918) return new ObjectNotFoundError(ctx.object ?? '?', `the Oracle users of connector ${ctx.connector} (ORA-01918)`, { cause: e });
  if (num === 1031) {
    const grant = ctx.operation.includes('password') ? 'GRANT ALTER USER TO the service account' : 'GRANT the privilege the statement needs (UPDATE, SELECT on the table) TO the service account';
    return new PwsyncError(6942, `${where}: the service account lacks a privilege (ORA-01031 insufficient privileges): ${grant}, then \`pwsync retry\``, { cause: e });
  }
  if (num === 1017 || num === 28000 || num === 28001 || num === 1045) {
    return new PwsyncError(6942, `${where}: Oracle refused the service account (${text}): check connection.user and the password file, and that the account is open and may CREATE SESSION`, { cause: e });
  }
  if (TLS_CODES.has(code) || (code.startsWith('NJS-') && /certificate|\bTLS\b|\bSSL\b|wallet/i.test(text))) {
    return new PwsyncError(6951, `${where}: the TCPS connection to Oracle could not be set up and verified (${text}); nothing was sent. `
      + 'Enable TCPS on the listener, set tls.ca to a PEM wallet holding the CA that signed its certificate, and connect to a host name in that certificate (or set tls.serverName to its full DN)', { cause: e });
  }
  if (num !== undefined && RETRY_NUMBERS[num] !== undefined) {
    return new TargetUnavailableError(`${where}: ${RETRY_NUMBERS[num]} (${code}); retried`, { cause: e });
  }
  if (RETRY_CODES.has(code)) return new TargetUnavailableError(`${where}: Oracle is unavailable (${text}); retried`, { cause: e });
  if (num === 942 || num === 904 || num === 900 || num === 933 || num === 936 || num === 1036) {
    return new PwsyncError(6950, `${where}: Oracle cannot run the statement (${said}): fix the statement or query in the hub YAML`, { cause: e });
  }
  return new PwsyncError(6940, `${where}: ${said}`, { cause: e, retryable: false });
}

function toOracle(v: SqlValue): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'boolean') return v ? 1 : 0; // no BOOLEAN column type before 23ai
  return v;
}

class OracleSession implements SqlSession {
  readonly dialect = 'oracle' as const;
  broken = false;

  constructor(private readonly conn: OracleConnectionLike, private readonly env: DialectEnv) {}

  private async execute(sql: string, binds: Record<string, unknown>, ctx: SqlFailureContext, quote = true): Promise<Awaited<ReturnType<OracleConnectionLike['execute']>>> {
    try {
      return await this.conn.execute(sql, binds, { outFormat: oracledb.OUT_FORMAT_OBJECT, autoCommit: true });
    } catch (e) {
      const mapped = mapOracleError(e, ctx, quote);
      if (mapped.retryable) this.broken = true;
      throw mapped;
    }
  }

  async query(sql: string, params: Readonly<Record<string, SqlValue>> = {}): Promise<SqlResult & { columns: string[] }> {
    const ctx = { connector: this.env.connector, operation: `run ${JSON.stringify(sql.slice(0, 60))}` };
    let bound;
    try {
      // Oracle binds :name itself; bindNamed checks every name has a value and keeps only the used ones (extra binds are NJS-098).
      bound = bindNamed(sql, params, 'colon');
    } catch (e) {
      throw new PwsyncError(6950, `connector ${ctx.connector}: cannot ${ctx.operation}: ${describeError(e)}`, { cause: e });
    }
    const binds: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(bound.named)) binds[name] = toOracle(value);
    const r = await this.execute(bound.text, binds, ctx);
    const rows = (r.rows ?? []) as Array<Record<string, unknown>>;
    return { rows, rowCount: r.rows ? rows.length : r.rowsAffected ?? 0, columns: (r.metaData ?? []).map((m) => m.name) };
  }

  async setLoginPassword(login: string, password: Secret, options: Readonly<Record<string, string>> = {}): Promise<void> {
    const ctx = { connector: this.env.connector, operation: 'set the password of a user', object: login };
    if (Object.keys(options).length > 0) throw new PwsyncError(6950, `connector ${ctx.connector}: unknown login option ${Object.keys(options).join(', ')}; Oracle takes none`);
    const user = quoteUser(login);
    if (user === undefined) throw new ObjectNotFoundError(login, `the Oracle users of connector ${ctx.connector} (a user name is 1 to ${MAX_NAME_BYTES} bytes without " or NUL)`);
    const refused = password.use((b) => unquotablePassword(b));
    if (refused) throw new PolicyViolationError(`${refused} (connector ${ctx.connector}, user ${login}); nothing was sent`);
    // The statement string holds the password for this call only; it is never logged nor put in an error.
    await password.use((b) => this.execute(`ALTER USER ${user} IDENTIFIED BY ${quotePassword(b)}`, {}, ctx, false));
  }
}

class OraclePool implements SqlPool {
  constructor(readonly plain: boolean, private readonly pool: OraclePoolLike, private readonly settings: SqlConnectionSettings, private readonly env: DialectEnv) {}

  async acquire(): Promise<{ session: SqlSession; release(broken?: boolean): Promise<void> }> {
    let conn: OracleConnectionLike;
    try {
      conn = await this.pool.getConnection();
    } catch (e) {
      throw mapOracleError(e, { connector: this.env.connector, operation: `connect to ${this.settings.host}:${this.settings.port ?? 1521}` });
    }
    conn.callTimeout = this.settings.timeoutMs;
    const session = new OracleSession(conn, this.env);
    let released = false;
    return {
      session,
      release: async (broken?: boolean) => {
        if (released) return;
        released = true;
        try {
          await conn.close(broken === true || session.broken ? { drop: true } : undefined);
        } catch {
          // A connection that died cannot be returned; the pool replaces it.
        }
      },
    };
  }

  async close(): Promise<void> {
    await this.pool.close(0);
  }
}

/**
 * The walletContent for thin mode. oracledb gives the wallet PEM to Node as `cert`, `key` and `ca`
 * at once, so it must hold a key. A CA-only PEM (the usual `tls.ca`) gets a throwaway P-256 key
 * and a self-signed certificate for it in front: Node then loads the context, trusts the CA (and
 * the throwaway certificate, whose key exists only in this process and signs nothing), and
 * presents that certificate only if the listener asks for a client certificate, which it would
 * not trust. A PEM that already holds a private key (an orapki ewallet.pem export) is kept as is.
 */
export async function thinWallet(pem: string): Promise<string> {
  if (/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(pem)) return pem;
  if (!/-----BEGIN CERTIFICATE-----/.test(pem)) return pem;
  const { generateClientIdentity } = await import('../../core/tls-gen.ts');
  const id = await generateClientIdentity('pwsync oracle thin client');
  return `${id.certPem}${id.keyPem}${pem.endsWith('\n') ? pem : `${pem}\n`}`;
}

/** The driver's pool attributes: TCPS unless the env allows plain. Exported for the stand-in test. */
export function oracleAttributes(settings: SqlConnectionSettings, password: string, env: DialectEnv): { attributes: oracledb.PoolAttributes; plain: boolean } {
  const plain = !env.requireSecureConnection && settings.tls.ca === undefined;
  const port = settings.port ?? (plain ? 1521 : 2484);
  let wallet: string | undefined;
  if (settings.tls.ca !== undefined) {
    const file = env.resolvePath(settings.tls.ca);
    try {
      wallet = readFileSync(file, 'utf8');
    } catch (e) {
      throw new PwsyncError(6951, `connector ${env.connector}: cannot read tls.ca ${file} (${describeError(e)}); nothing was sent. Point tls.ca at the PEM wallet holding the CA that signed the listener's certificate`, { cause: e });
    }
  }
  const serverName = settings.tls.serverName;
  if (!plain && serverName !== undefined && !serverName.includes('=') && serverName.toLowerCase() !== settings.host.toLowerCase()) {
    throw new PwsyncError(6951, `connector ${env.connector}: tls.serverName ${JSON.stringify(serverName)} differs from host, and Oracle thin mode checks the certificate against the host it connects to: set host to a name in the certificate, or tls.serverName to the certificate's full DN (CN=…,O=…)`);
  }
  const timeoutS = Math.max(1, Math.ceil(settings.timeoutMs / 1000));
  return {
    plain,
    attributes: {
      user: settings.user,
      password,
      connectString: `${plain ? '' : 'tcps://'}${settings.host}:${port}/${settings.database}`,
      poolMin: 0,
      poolMax: settings.poolSize,
      poolIncrement: 1,
      queueTimeout: settings.timeoutMs,
      connectTimeout: timeoutS,
      transportConnectTimeout: timeoutS,
      ...(plain ? {} : {
        sslServerDNMatch: true,
        ...(wallet !== undefined ? { walletContent: wallet } : {}),
        ...(serverName !== undefined && serverName.includes('=') ? { sslServerCertDN: serverName } : {}),
      }),
    } as oracledb.PoolAttributes,
  };
}

/** The dialect; `driver` is replaced only by the stand-in test (test/sql/standins.test.ts). */
export function createOracleDialect(driver: OracleDriver = realDriver): SqlDialect {
  return {
    name: 'oracle',
    driverPackage: 'oracledb',
    async createPool(settings, password, env) {
      // The service account's password is a string for the pool's attributes; oracledb keeps it to open connections.
      const { attributes, plain } = password.use((b) => oracleAttributes(settings, b.toString('utf8'), env));
      if (typeof attributes.walletContent === 'string') attributes.walletContent = await thinWallet(attributes.walletContent);
      let pool: OraclePoolLike;
      try {
        pool = await driver(attributes);
      } catch (e) {
        throw mapOracleError(e, { connector: env.connector, operation: `connect to ${settings.host}` });
      }
      const p = new OraclePool(plain, pool, settings, env);
      const close = p.close.bind(p);
      p.close = async () => { try { await close(); } finally { password.dispose(); } };
      return p;
    },
    mapError: (e, ctx) => mapOracleError(e, ctx),
  };
}

export const oracleDialect = createOracleDialect();
