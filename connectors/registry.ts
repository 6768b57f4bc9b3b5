import { Value } from '@sinclair/typebox/value';
import { UsageError } from '../core/errors.ts';
import { adKind } from './ad/ad.ts';
import type { Connector, ConnectorEnv, ConnectorKind } from './contract.ts';
import { dsmlKind } from './dsml/dsml.ts';
import { avpKind } from './files/avp.ts';
import { delimitedKind } from './files/delimited.ts';
import { fixedWidthKind } from './files/fixed-width.ts';
import { ldifKind } from './files/ldif.ts';
import { ldapKind } from './ldap/ldap.ts';
import { remoteKind } from './remote/remote.ts';
import { sqlKind } from './sql/sql.ts';
import { CONNECTION_SCHEMAS } from './kinds-schema.ts';

/**
 * The connector kinds this build knows, by name. A kind's `connection:` schema lives in
 * kinds-schema.ts (so config can validate without loading drivers); its runtime registers here.
 */
const KINDS = new Map<string, ConnectorKind<never>>();

/** Adds a kind (other folders register theirs: ldap, sql). A second kind with one name is a bug. */
export function registerKind<S>(kind: ConnectorKind<S>): void {
  if (KINDS.has(kind.kind)) throw new Error(`connector kind ${kind.kind} is registered twice`);
  KINDS.set(kind.kind, kind as ConnectorKind<never>);
}

for (const kind of [delimitedKind, fixedWidthKind, avpKind, ldifKind, dsmlKind]) registerKind(kind);
registerKind(ldapKind);
registerKind(adKind);
// SQL kinds: the dialect and its driver load when a connector of the kind opens.
registerKind(sqlKind('postgresql'));
registerKind(sqlKind('mariadb'));
registerKind(sqlKind('mssql'));
registerKind(sqlKind('oracle'));
registerKind(sqlKind('db2'));
// A target behind a connector worker, reached through NATS.
registerKind(remoteKind);

export function knownKinds(): string[] {
  return [...KINDS.keys()].sort();
}

/**
 * A connector of `kind`. Settings are normally defaulted and validated by the config loader
 * already; they are checked again here so a caller outside config (a test, a tool) gets the same
 * clear error instead of a connector built on bad settings.
 */
export function createConnector(name: string, kind: string, settings: unknown, env: ConnectorEnv): Connector {
  const k = KINDS.get(kind);
  if (!k) throw new UsageError(`connector ${name}: unknown kind ${JSON.stringify(kind)}; known kinds: ${knownKinds().join(', ')}`);
  const schema = CONNECTION_SCHEMAS[kind];
  let checked: unknown = settings;
  if (schema) {
    checked = Value.Default(schema, Value.Clone(settings ?? {}));
    const first = Value.Errors(schema, checked).First();
    if (first) {
      throw new UsageError(`connector ${name}: connection${first.path.replaceAll('/', '.')}: ${first.message}; fix connectors[].connection in the hub YAML`);
    }
  }
  return k.create(name, checked as never, env);
}
