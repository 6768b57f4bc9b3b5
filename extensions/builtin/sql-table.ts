import { PwsyncError } from '../../core/errors.ts';
import { ObjectNotFoundError, type ExtensionConnection, type SqlStatements } from '../../core/extension.ts';
import { paramNames } from '../../core/sql-params.ts';
import { defineExtension } from '../sdk/mod.ts';
import { hashFromSettings, type HashFn } from './password-hash.ts';
import { attributeOf } from './sql-login.ts';

/**
 * builtin:sql-table — stores a hash of the password in an application's own user table with an
 * UPDATE from the YAML. The password never reaches the database: only the hash, bound as :hash.
 *
 * settings:
 *   statement: UPDATE app_users SET pwhash = :hash WHERE login = :login
 *   params:    { login: <object attribute> }   every :name but :hash, from the object (id: the anchor)
 *   hash:      { scheme: argon2id | bcrypt | scrypt | pbkdf2, …cost } or { module: PATH }
 */

interface Settings {
  readonly statement: string;
  readonly params: Readonly<Record<string, string>>;
}

const KNOWN = ['statement', 'params', 'hash'];

function readSettings(raw: Readonly<Record<string, unknown>>): Settings {
  const unknown = Object.keys(raw).filter((k) => !KNOWN.includes(k));
  if (unknown.length > 0) throw new Error(`unknown setting ${unknown.join(', ')}; the settings are ${KNOWN.join(', ')}`);
  const { statement, params = {} } = raw;
  if (typeof statement !== 'string' || !/^\s*UPDATE\s/i.test(statement)) throw new Error('statement must be an UPDATE, e.g. UPDATE app_users SET pwhash = :hash WHERE login = :login');
  if (typeof params !== 'object' || params === null || Array.isArray(params) || Object.values(params).some((v) => typeof v !== 'string' || v === '')) {
    throw new Error('params must map each :name of the statement to an object attribute, e.g. { login: id }');
  }
  const p = params as Record<string, string>;
  const used = paramNames(statement);
  if (!used.includes('hash')) throw new Error('statement must store :hash');
  if (Object.hasOwn(p, 'hash')) throw new Error('params must not set hash: :hash is the computed password hash');
  const missing = used.filter((n) => n !== 'hash' && !Object.hasOwn(p, n));
  if (missing.length > 0) throw new Error(`statement uses ${missing.map((m) => `:${m}`).join(', ')}; say in params which object attribute each one is`);
  const extra = Object.keys(p).filter((n) => !used.includes(n));
  if (extra.length > 0) throw new Error(`params ${extra.join(', ')} ${extra.length > 1 ? 'are' : 'is'} not used in the statement`);
  if (used.length < 2) throw new Error('statement has no WHERE parameter: it would set every row to one hash');
  return { statement, params: p };
}

/**
 * What init() would refuse in these settings, without a connection: for `pwsync config check`.
 * A hash module is only named here, not loaded: it is the admin's code.
 */
export async function settingsProblem(raw: Readonly<Record<string, unknown>>, resolvePath: (p: string) => string): Promise<string | undefined> {
  try {
    readSettings(raw);
    const hash = raw.hash as Record<string, unknown> | undefined;
    if (typeof hash === 'object' && hash !== null && hash.module !== undefined) {
      if (Object.keys(hash).length > 1) return 'hash: with module, no other setting';
      return typeof hash.module === 'string' && hash.module !== '' ? undefined : 'hash.module must be a path to the module';
    }
    await hashFromSettings(raw.hash, resolvePath);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

export default defineExtension(() => {
  let settings: Settings | undefined;
  let hash: HashFn | undefined;
  let connector = '';
  let session: SqlStatements | undefined;
  return {
    // Hashing runs on the thread pool (4 threads by default); the UPDATEs queue on the one connection.
    concurrentSets: 4,
    async init(raw, env) {
      settings = readSettings(raw);
      hash = await hashFromSettings(raw.hash, (p) => env.resolvePath(p));
      connector = env.connector;
    },
    beginConnection(connection: ExtensionConnection) {
      if (connection.kind !== 'sql') throw new Error(`builtin:sql-table needs a database connector, not a ${connection.kind} one`);
      session = connection.session;
    },
    async setPassword(object, password, ctx) {
      if (!session || !settings || !hash) throw new Error('setPassword was called outside a batch (before beginConnection)');
      const values: Record<string, string> = {};
      for (const [name, attribute] of Object.entries(settings.params)) values[name] = attributeOf(object, attribute, connector);
      const h = hash;
      const stored = await password.use((bytes) => h(bytes));
      const r = await session.query(settings.statement, { ...values, hash: stored });
      if (r.rowCount === 0) throw new ObjectNotFoundError(object.id, `the table of connector ${connector} (the UPDATE matched no row)`);
      if (r.rowCount > 1) {
        throw new PwsyncError(6950, `connector ${connector}: the UPDATE changed ${r.rowCount} rows for object ${JSON.stringify(object.id)}; its WHERE must match one row: fix the statement`);
      }
      ctx.log.debug({ object: object.id }, 'password hash stored');
    },
    endConnection() {
      session = undefined;
    },
  };
});
