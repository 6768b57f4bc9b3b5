import { PwsyncError } from '../../core/errors.ts';
import type { ExtensionConnection, SqlStatements, TargetObject } from '../../core/extension.ts';
import { defineExtension } from '../sdk/mod.ts';

/**
 * builtin:sql-login — sets the database login's own password (ALTER ROLE, ALTER USER, ALTER LOGIN)
 * through the dialect's setLoginPassword, which knows how to do it without the clear password
 * reaching the statement text where it can avoid it (PostgreSQL: a SCRAM verifier).
 *
 * settings:
 *   login:   the object attribute that holds the login name (default `id`, the anchor)
 *   options: passed to setLoginPassword (PostgreSQL: validUntil)
 */

interface Settings {
  readonly login: string;
  readonly options: Readonly<Record<string, string>>;
}

function readSettings(raw: Readonly<Record<string, unknown>>): Settings {
  const unknown = Object.keys(raw).filter((k) => k !== 'login' && k !== 'options');
  if (unknown.length > 0) throw new Error(`unknown setting ${unknown.join(', ')}; the settings are login, options`);
  const login = raw.login ?? 'id';
  if (typeof login !== 'string' || login === '') throw new Error('login must name the object attribute that holds the login name (id: the anchor)');
  const options = raw.options ?? {};
  if (typeof options !== 'object' || options === null || Array.isArray(options) || Object.values(options).some((v) => typeof v !== 'string')) {
    throw new Error('options must be a map of names to strings, e.g. { validUntil: "2030-01-01" }');
  }
  return { login, options: options as Record<string, string> };
}

/** What init() would refuse in these settings, without a connection: for `pwsync config check`. */
export function settingsProblem(raw: Readonly<Record<string, unknown>>): string | undefined {
  try {
    readSettings(raw);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/** The login name of an object: its anchor, or one of its attributes. */
export function attributeOf(object: TargetObject, attribute: string, connector: string): string {
  const v = attribute === 'id' ? object.id : object.attributes[attribute];
  if (v === undefined || v === '') {
    throw new PwsyncError(6950, `connector ${connector}: object ${JSON.stringify(object.id)} has no attribute ${attribute}; select it in objects.query or fix the extension's settings`);
  }
  return v;
}

export default defineExtension(() => {
  let settings: Settings = { login: 'id', options: {} };
  let connector = '';
  let session: SqlStatements | undefined;
  return {
    // One statement at a time on the batch's connection: a login change is one short round trip.
    concurrentSets: 1,
    init(raw, env) {
      settings = readSettings(raw);
      connector = env.connector;
    },
    beginConnection(connection: ExtensionConnection) {
      if (connection.kind !== 'sql') throw new Error(`builtin:sql-login needs a database connector, not a ${connection.kind} one`);
      session = connection.session;
    },
    async setPassword(object, password, ctx) {
      if (!session) throw new Error('setPassword was called outside a batch (before beginConnection)');
      const login = attributeOf(object, settings.login, connector);
      await session.setLoginPassword(login, password, settings.options);
      ctx.log.debug({ object: object.id }, 'database login password set');
    },
    endConnection() {
      session = undefined;
    },
  };
});
