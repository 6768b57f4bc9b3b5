import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import type { NotifierConfig } from '../../config/schema.ts';
import type { AccountRef } from '../../core/extension.ts';
import { LdapDirectory, LdapError } from '../../core/ldap.ts';
import { Secret } from '../../core/secret.ts';
import { ScopeUnavailable, type Scope } from '../../notifier/scope.ts';
import { LdapScope, scopeFromConfig } from '../../notifier/scope-ldap.ts';
import { testPassword } from '../lib/passwords.ts';
import { startSambaDc, type SambaDc, type SambaUser } from '../lib/samba.ts';
import { capturingLog } from '../notifier/helpers.ts';

/**
 * The scope check against a real Samba AD DC (run inside a network namespace:
 * bash test/env/in-netns.sh node --import tsx --test test/samba/scope.test.ts). Fixture:
 * grp-inner ⊂ grp-mid ⊂ pwsync-sync with alice in grp-inner; bob, carol, erin directly in
 * pwsync-sync; carol in pwsync-exclude; dave in no group but his primary group, Domain Users.
 */

let dc: SambaDc;
let scope: Scope;
let now = 1_000_000;

const account = (u: SambaUser, over: Partial<AccountRef> = {}): AccountRef => {
  const a = dc.users[u];
  return { domain: 'pwsync.test', samAccountName: a.sam, objectGuid: a.objectGuid, objectSid: a.objectSid, upn: a.upn, dn: a.dn, ...over };
};

function config(targets: Array<{ name: string; scope?: { include: string; exclude?: string } }>, directory: Partial<NonNullable<NotifierConfig['notifier']['directory']>> = {}): Pick<NotifierConfig, 'notifier' | 'targets'> {
  const f = dc.facts;
  return {
    notifier: {
      domain: 'pwsync.test', scopeCacheTtl: 60_000,
      directory: {
        url: f.ldapsUrl, startTls: false, ca: f.caPem, serverName: f.dcHost, bindDn: f.reader.bindDn,
        password: { fromFile: f.reader.passwordFile }, timeout: 5_000, ...directory,
      },
    } as NotifierConfig['notifier'],
    targets: targets as NotifierConfig['targets'],
  };
}

function sambaTool(...args: string[]): void {
  execFileSync('samba-tool', [...args, '-s', dc.facts.smbConf], { env: { ...process.env, ...dc.env }, stdio: 'pipe', timeout: 60_000 });
}

before(async () => {
  dc = await startSambaDc();
  scope = scopeFromConfig(config([
    { name: 'hub1', scope: { include: 'pwsync-sync', exclude: 'pwsync-exclude' } },
    { name: 'by-dn', scope: { include: dc.facts.groups['pwsync-sync'] } },
    { name: 'everyone', scope: { include: 'Domain Users', exclude: 'pwsync-exclude' } },
    { name: 'no-such-group', scope: { include: 'pwsync-nope' } },
    { name: 'no-such-dn', scope: { include: 'CN=pwsync-nope,CN=Users,DC=pwsync,DC=test' } },
    { name: 'unscoped' },
  ]), '/', capturingLog().log, () => now);
  assert.ok(scope instanceof LdapScope);
});

after(async () => {
  await scope?.close?.();
  await dc?.stop();
});

test('inclusion group with nesting: alice (two levels down) and bob (direct) are sent', async () => {
  assert.deepEqual(await scope.decide(account('alice'), 'hub1'), { send: true });
  assert.deepEqual(await scope.decide(account('bob'), 'hub1'), { send: true });
  assert.deepEqual(await scope.decide(account('erin'), 'hub1'), { send: true });
  assert.deepEqual(await scope.decide(account('alice'), 'by-dn'), { send: true });
});

test('exclusion wins, and a non-member is out: each with the reason the hub will show', async () => {
  assert.deepEqual(await scope.decide(account('carol'), 'hub1'), { send: false, reason: 'out of scope: member of exclusion group pwsync-exclude' });
  assert.deepEqual(await scope.decide(account('dave'), 'hub1'), { send: false, reason: 'out of scope: not a member of inclusion group pwsync-sync' });
  assert.deepEqual(await scope.decide(account('dave'), 'by-dn'), { send: false, reason: `out of scope: not a member of inclusion group ${dc.facts.groups['pwsync-sync']}` });
});

test('the primary group counts: with Domain Users as inclusion group, dave is sent (tokenGroups)', async () => {
  assert.deepEqual(await scope.decide(account('dave'), 'everyone'), { send: true });
  assert.deepEqual(await scope.decide(account('carol'), 'everyone'), { send: false, reason: 'out of scope: member of exclusion group pwsync-exclude' });
});

test('a distribution group (never in tokenGroups) counts through in-chain nesting', async () => {
  sambaTool('group', 'add', 'pwsync-dist', '--group-type=Distribution');
  sambaTool('group', 'addmembers', 'pwsync-dist', 'grp-inner');
  const dist = scopeFromConfig(config([{ name: 'hub1', scope: { include: 'pwsync-dist' } }]), '/', capturingLog().log);
  try {
    assert.deepEqual(await dist.decide(account('alice'), 'hub1'), { send: true });
    assert.deepEqual(await dist.decide(account('bob'), 'hub1'), { send: false, reason: 'out of scope: not a member of inclusion group pwsync-dist' });
  } finally {
    await dist.close?.();
  }
});

test('a target without a scope receives everyone', async () => {
  assert.deepEqual(await scope.decide(account('dave'), 'unscoped'), { send: true });
});

test('an account is found by objectGUID or sAMAccountName when the change has no DN, or a stale one', async () => {
  assert.deepEqual(await scope.decide(account('alice', { dn: '' }), 'hub1'), { send: true });
  assert.deepEqual(await scope.decide(account('carol', { dn: 'CN=carol-old,CN=Users,DC=pwsync,DC=test' }), 'hub1'),
    { send: false, reason: 'out of scope: member of exclusion group pwsync-exclude' });
  assert.deepEqual(await scope.decide(account('bob', { dn: '', objectGuid: '' }), 'hub1'), { send: true });
  const ghost = await scope.decide(account('dave', { samAccountName: 'nobody', objectGuid: '', dn: '' }), 'hub1');
  assert.ok(!ghost.send && /the account was not found in the directory under DC=pwsync,DC=test/.test(ghost.reason));
});

test('a configured group that does not exist: ScopeUnavailable naming the group and the fix', async () => {
  await assert.rejects(scope.decide(account('alice'), 'no-such-group'), (e: unknown) =>
    e instanceof ScopeUnavailable && /inclusion group pwsync-nope of target no-such-group does not exist under DC=pwsync,DC=test \(ldaps:\/\/127\.0\.0\.1:636 as pwsync-reader@pwsync\.test\): create it, or correct targets\[\]\.scope\.include/.test(e.message));
  await assert.rejects(scope.decide(account('alice'), 'no-such-dn'), (e: unknown) =>
    e instanceof ScopeUnavailable && /group CN=pwsync-nope,CN=Users,DC=pwsync,DC=test of target no-such-dn does not exist/.test(e.message));
});

test('StartTLS on ldap:// works the same; a plain ldap:// URL and a wrong bind password are refused with what to fix', async () => {
  const f = dc.facts;
  const starttls = scopeFromConfig(config([{ name: 'hub1', scope: { include: 'pwsync-sync', exclude: 'pwsync-exclude' } }],
    { url: 'ldap://127.0.0.1:389', startTls: true }), '/', capturingLog().log);
  try {
    assert.deepEqual(await starttls.decide(account('alice'), 'hub1'), { send: true });
  } finally {
    await starttls.close?.();
  }
  assert.throws(() => scopeFromConfig(config([{ name: 'hub1', scope: { include: 'pwsync-sync' } }], { url: 'ldap://127.0.0.1:389', startTls: false }), '/', capturingLog().log),
    /notifier\.directory: ldap:\/\/127\.0\.0\.1:389 is a plain connection: the bind password would travel in clear/);
  const wrong = new LdapDirectory({
    url: f.ldapsUrl, startTls: false, ca: f.caPem, serverName: f.dcHost, bindDn: f.reader.bindDn,
    password: Secret.adopt(testPassword('scope-wrong-bind')), timeoutMs: 5_000,
  });
  await assert.rejects(wrong.search(f.baseDn, { scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'] }), (e: unknown) => {
    assert.ok(e instanceof LdapError);
    assert.match(e.message, /ldaps:\/\/127\.0\.0\.1:636 \(bind as pwsync-reader@pwsync\.test\): the directory refused the bind as pwsync-reader@pwsync\.test \(invalid credentials\)/);
    assert.doesNotMatch(e.message, /Zé€/);
    return true;
  });
  await wrong.close();
  const noServerName = scopeFromConfig(config([{ name: 'hub1', scope: { include: 'pwsync-sync' } }], { serverName: undefined }), '/', capturingLog().log);
  await assert.rejects(noServerName.decide(account('alice'), 'hub1'), (e: unknown) =>
    e instanceof ScopeUnavailable && /certificate does not name 127\.0\.0\.1.*set serverName/.test(e.message));
  await noServerName.close?.();
});

test('answers are cached for scopeCacheTtl: a membership change shows after it, not before', async () => {
  assert.deepEqual(await scope.decide(account('dave'), 'hub1'), { send: false, reason: 'out of scope: not a member of inclusion group pwsync-sync' });
  sambaTool('group', 'addmembers', 'pwsync-sync', 'dave');
  try {
    assert.deepEqual(await scope.decide(account('dave'), 'hub1'), { send: false, reason: 'out of scope: not a member of inclusion group pwsync-sync' });
    now += 61_000;
    assert.deepEqual(await scope.decide(account('dave'), 'hub1'), { send: true });
  } finally {
    sambaTool('group', 'removemembers', 'pwsync-sync', 'dave');
  }
});

test('a directory that does not answer: ScopeUnavailable (the change waits); it decides again once the DC is back', async () => {
  await dc.stop();
  try {
    now += 61_000;
    await assert.rejects(scope.decide(account('bob'), 'hub1'), (e: unknown) =>
      e instanceof ScopeUnavailable && /cannot decide whether pwsync\.test\\bob is in the scope of target hub1: ldaps:\/\/127\.0\.0\.1:636 .*(cannot reach|connection was lost)/.test(e.message));
  } finally {
    await dc.start();
  }
  assert.deepEqual(await scope.decide(account('bob'), 'hub1'), { send: true });
});
