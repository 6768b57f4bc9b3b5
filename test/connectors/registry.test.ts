import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isExtensionHost, isNativePasswordSetter, isObjectSource } from '../../connectors/contract.ts';
import { CONNECTOR_KINDS } from '../../connectors/kinds-schema.ts';
import { createConnector, knownKinds } from '../../connectors/registry.ts';
import { SQL_DIALECTS } from '../../connectors/sql/sql.ts';
import { UsageError } from '../../core/errors.ts';
import { silentLogger } from '../../core/log.ts';

const env = { log: silentLogger(), resolvePath: (p: string) => `/srv/pwsync/${p}` };

test('registry: every file kind is known and builds a connector that lists and hosts extensions', () => {
  for (const kind of ['delimited', 'fixed-width', 'avp', 'ldif', 'dsml']) assert.ok(knownKinds().includes(kind), kind);
  for (const kind of CONNECTOR_KINDS.filter((k) => knownKinds().includes(k) && k !== 'ldap' && k !== 'ad' && k !== 'remote' && !(k in SQL_DIALECTS))) {
    const settings = kind === 'fixed-width' ? { path: 'f', fields: [{ name: 'id', width: 4 }] } : { path: 'f' };
    const c = createConnector(`c-${kind}`, kind, settings, env);
    assert.equal(c.kind, kind);
    assert.equal(c.name, `c-${kind}`);
    assert.ok(isObjectSource(c), `${kind} lists objects`);
    assert.ok(isExtensionHost(c), `${kind} hosts a password extension`);
    assert.ok(!isNativePasswordSetter(c), `${kind} does not set passwords natively`);
  }
});

test('registry: an unknown kind is a UsageError listing the known kinds', () => {
  assert.throws(() => createConnector('x', 'mainframe', {}, env), (e: unknown) => {
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /unknown kind "mainframe"/);
    for (const k of knownKinds()) assert.ok(e.message.includes(k), k);
    return true;
  });
});

test('registry: settings are defaulted, and wrong settings are a UsageError naming the setting', () => {
  assert.throws(() => createConnector('x', 'delimited', { path: 'a.csv', delimiter: ';;' }, env), (e: unknown) => e instanceof UsageError && /connection\.delimiter/.test(e.message));
  assert.throws(() => createConnector('x', 'fixed-width', { path: 'a.txt' }, env), (e: unknown) => e instanceof UsageError && /fields/.test(e.message));
  assert.throws(() => createConnector('x', 'fixed-width', { path: 'a.txt', fields: [{ name: 'a', width: 1 }, { name: 'a', width: 2 }] }, env), /names a twice/);
  const c = createConnector('x', 'delimited', { path: 'a.csv' }, env) as unknown as { path: string };
  assert.equal(c.path, '/srv/pwsync/a.csv', 'the path is resolved against the YAML folder');
});
