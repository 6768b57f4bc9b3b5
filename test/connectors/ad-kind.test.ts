import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isExtensionHost, isIncrementalObjectSource, isNativePasswordSetter, isObjectSource, type ObjectSource } from '../../connectors/contract.ts';
import { createConnector, knownKinds } from '../../connectors/registry.ts';
import { UsageError } from '../../core/errors.ts';
import { silentLogger } from '../../core/log.ts';

/** The `ad` kind as registered: its defaults and capabilities, without a DC (the DC tests are in test/samba/ad-target.test.ts). */
const env = { log: silentLogger(), resolvePath: (p: string) => `/srv/pwsync/${p}` };
const base = { url: 'ldaps://dc1.corp.example.com', ca: 'ca.pem', bindDn: 'svc-pwsync@corp.example.com', password: { fromFile: 'svc.pw' }, baseDn: 'OU=People,DC=corp,DC=example,DC=com' };

test('ad is a known kind that sets and changes passwords natively and reads objects incrementally', () => {
  assert.ok(knownKinds().includes('ad'));
  const c = createConnector('corp-ad', 'ad', base, env);
  assert.equal(c.kind, 'ad');
  assert.ok(isNativePasswordSetter(c));
  assert.equal(typeof c.changePassword, 'function');
  assert.ok(isObjectSource(c) && isIncrementalObjectSource(c));
  assert.ok(!isExtensionHost(c), 'no password extension: AD hashes and checks the password itself');
  assert.equal(c.securityLevel(), 'encrypted');
  assert.equal(createConnector('corp-ad', 'ad', { ...base, url: 'ldap://dc1.corp.example.com', startTls: true }, env).securityLevel(), 'encrypted');
  assert.equal(createConnector('corp-ad', 'ad', { ...base, url: 'ldap://dc1.corp.example.com' }, env).securityLevel(), 'plain');
});

test('AD\'s defaults: people by objectCategory, anchored by objectGUID, with the attributes joins use', async () => {
  const c = createConnector('corp-ad', 'ad', base, env) as unknown as ObjectSource & { s: Record<string, unknown> };
  assert.equal(c.s.filter, '(&(objectCategory=person)(objectClass=user))');
  assert.equal(c.s.anchor, 'objectGUID');
  assert.deepEqual(await c.attributes(), ['dn', 'objectGUID', 'sAMAccountName', 'userPrincipalName', 'mail']);
  const ldap = createConnector('dir', 'ldap', base, env) as unknown as { s: Record<string, unknown> };
  assert.equal(ldap.s.anchor, 'entryUUID', 'the ldap kind keeps its own defaults');
});

test('wrong settings are a UsageError naming the setting', () => {
  assert.throws(() => createConnector('corp-ad', 'ad', { ...base, url: 'dc1.corp.example.com' }, env), (e: unknown) => e instanceof UsageError && /connection\.url/.test(e.message));
  assert.throws(() => createConnector('corp-ad', 'ad', { ...base, filter: 'objectClass=user' }, env), (e: unknown) => e instanceof UsageError && /connection\.filter/.test(e.message));
  assert.throws(() => createConnector('corp-ad', 'ad', { ...base, bindDn: undefined }, env), (e: unknown) => e instanceof UsageError && /connection\.bindDn/.test(e.message));
});
