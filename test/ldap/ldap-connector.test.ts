import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import {
  isIncrementalObjectSource, isNativePasswordSetter, isObjectSource,
  type Connector, type IncrementalObjectSource, type NativePasswordSetter, type ObjectSource,
} from '../../connectors/contract.ts';
import { createConnector } from '../../connectors/registry.ts';
import type { OperationContext, TargetObject } from '../../core/extension.ts';
import { silentLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { testDir } from '../lib/dirs.ts';
import { bindsWith, lossyRelay, refusal } from '../lib/ldap-checks.ts';
import { testPassword } from '../lib/passwords.ts';

const run = promisify(execFile);
const SCRIPT = path.resolve(import.meta.dirname, '../env/slapd.sh');
const dir = testDir('ldap-connector');
let env: Record<string, string> = {};
const open: Array<Connector> = [];

type Ldap = Connector & ObjectSource & IncrementalObjectSource & NativePasswordSetter;

function ctx(): OperationContext {
  return {
    operationId: 'op-1', changeId: 'ch-1', changeTime: Date.now(), connector: 'openldap', log: silentLogger(),
    account: { domain: 'corp.example.com', samAccountName: 'x', objectGuid: '', objectSid: '', upn: '', dn: '' },
  };
}

function dnOf(uid: string): string {
  return `uid=${uid},${env.SLAPD_PEOPLE}`;
}

/** An object as a set-operation after a read has it: anchored by entryUUID, with the DN read. */
function target(uid: string): TargetObject {
  return { id: `uuid-of-${uid}`, attributes: { uid, dn: dnOf(uid) } };
}

function secret(label: string): Secret {
  return Secret.adopt(testPassword(label));
}

async function connector(settings: Record<string, unknown> = {}): Promise<Ldap> {
  const c = createConnector('openldap', 'ldap', {
    url: env.SLAPD_LDAPS_URL, ca: env.SLAPD_CA, bindDn: env.SLAPD_SERVICE_DN,
    password: { fromFile: env.SLAPD_SERVICE_PASSWORD_FILE }, baseDn: env.SLAPD_PEOPLE, timeout: '5s', ...settings,
  }, { log: silentLogger(), resolvePath: (p) => path.resolve(dir, p) });
  assert.ok(isNativePasswordSetter(c) && isObjectSource(c));
  open.push(c);
  await c.open();
  return c as Ldap;
}

/** A simple bind as the user, on its own connection: true when the password works. */
function bindsAs(uid: string, label: string): Promise<boolean> {
  return bindsWith({ url: env.SLAPD_LDAPS_URL!, ca: env.SLAPD_CA! }, dnOf(uid), testPassword(label));
}

async function set(c: Ldap, uid: string, label: string): Promise<void> {
  const pw = secret(label);
  try {
    await c.setPassword(target(uid), pw, ctx());
  } finally {
    pw.dispose();
  }
}

/** An ldap tool run as the rootDN (the test's own admin steps: renames, deletions). */
async function rootLdap(tool: string, ...args: string[]): Promise<void> {
  await run(tool, ['-x', '-H', env.SLAPD_LDAP_URL!, '-D', `cn=admin,${env.SLAPD_SUFFIX}`, '-y', path.join(env.SLAPD_DIR!, 'root.password'), ...args], { timeout: 10_000 });
}

before(async () => {
  const { stdout } = await run(SCRIPT, ['start', dir], { timeout: 60_000 });
  env = Object.fromEntries(stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  assert.ok(env.SLAPD_LDAPS_URL, stdout);
});

after(async () => {
  for (const c of open) await c.close().catch(() => undefined);
  await run(SCRIPT, ['stop', dir], { timeout: 30_000 });
});

describe('ldap connector against slapd (ppolicy, TLS, a service account with write on userPassword)', () => {
  test('a set lands: the user binds with the new password, the old one fails', async () => {
    const c = await connector();
    assert.equal(c.securityLevel(), 'encrypted');
    assert.match(await c.test(), /Password Modify extended operation offered; password policy control offered/);
    await set(c, 'alice', 'alice-first-pass');
    assert.ok(await bindsAs('alice', 'alice-first-pass'));
    await set(c, 'alice', 'alice-second-pass');
    assert.ok(await bindsAs('alice', 'alice-second-pass'));
    assert.equal(await bindsAs('alice', 'alice-first-pass'), false);
  });

  test('non-ASCII letters, quotes and backslashes arrive intact', async () => {
    const c = await connector();
    const label = 'é-ß-€-日本-"q"-\\b\\-' + 'x'.repeat(100);
    await set(c, 'bob', label);
    assert.ok(await bindsAs('bob', label));
    assert.equal(await bindsAs('bob', label.normalize('NFD')), false, 'a decomposed é is another password');
  });

  test('too short → 6927 "too short"; reused → 6927 "in history"; neither retried', async () => {
    const c = await connector();
    const short = await refusal(set(c, 'carol', 'a'));
    assert.equal(short.eventId, 6927);
    assert.equal(short.retryable, false);
    assert.match(short.message, /too short/);
    await set(c, 'carol', 'carol-first-pass');
    await set(c, 'carol', 'carol-second-pass');
    const reused = await refusal(set(c, 'carol', 'carol-first-pass'));
    assert.equal(reused.eventId, 6927);
    assert.equal(reused.retryable, false);
    assert.match(reused.message, /in history/);
    assert.ok(await bindsAs('carol', 'carol-second-pass'));
  });

  test('setWith: userPassword replaces userPassword: slapd hashes it and applies its policy the same', async () => {
    const c = await connector({ setWith: 'userPassword' });
    assert.match(await c.test(), /userPassword is replaced \(setWith\)/);
    await set(c, 'dave', 'dave-replace-pass');
    assert.ok(await bindsAs('dave', 'dave-replace-pass'));
    const { stdout } = await run('ldapsearch', ['-x', '-LLL', '-H', env.SLAPD_LDAP_URL!, '-D', `cn=admin,${env.SLAPD_SUFFIX}`, '-y', path.join(env.SLAPD_DIR!, 'root.password'), '-b', dnOf('dave'), '-s', 'base', 'userPassword'], { timeout: 10_000 });
    assert.match(Buffer.from(/userPassword:: (\S+)/.exec(stdout)![1]!, 'base64').toString('utf8'), /^\{SSHA\}/, 'stored hashed, not in clear');
    const short = await refusal(set(c, 'dave', 'a'));
    assert.equal(short.eventId, 6927);
    assert.match(short.message, /too short/);
    await set(c, 'dave', 'dave-replace-pass-2');
    const reused = await refusal(set(c, 'dave', 'dave-replace-pass'));
    assert.equal(reused.eventId, 6927);
    assert.match(reused.message, /in history/);
  });

  test('an unknown DN → 6923', async () => {
    const c = await connector();
    const e = await refusal(set(c, 'nobody', 'nobody-pass-long'));
    assert.equal(e.eventId, 6923);
    assert.equal(e.retryable, false);
    assert.match(e.message, /uid=nobody/);
  });

  test('a plain ldap:// URL is refused at open with 6951, and nothing reaches the server', async () => {
    let connections = 0;
    const server = net.createServer((s) => { connections++; s.destroy(); });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const c = createConnector('plain', 'ldap', {
        url: `ldap://127.0.0.1:${port}`, ca: env.SLAPD_CA, bindDn: env.SLAPD_SERVICE_DN,
        password: { fromFile: env.SLAPD_SERVICE_PASSWORD_FILE }, baseDn: env.SLAPD_PEOPLE,
      }, { log: silentLogger(), resolvePath: (p) => path.resolve(dir, p) }) as Ldap;
      assert.equal(c.securityLevel(), 'plain');
      const e = await refusal(c.open());
      assert.equal(e.eventId, 6951);
      assert.match(e.message, /ldaps:\/\/|startTls/);
      const later = await refusal(set(c, 'alice', 'never-sent-pass'));
      assert.notEqual(later.eventId, 6947);
      assert.equal(connections, 0, 'no connection was opened to the server');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('StartTLS on ldap:// with the CA is encrypted and sets the password', async () => {
    const c = await connector({ url: env.SLAPD_LDAP_URL, startTls: true });
    assert.equal(c.securityLevel(), 'encrypted');
    await set(c, 'erin', 'erin-starttls-pass');
    assert.ok(await bindsAs('erin', 'erin-starttls-pass'));
  });

  test('a retry after the answer was lost is refused as already used, confirmed by a bind, and succeeds', async () => {
    const relay = await lossyRelay(Number(new URL(env.SLAPD_LDAPS_URL!).port));
    try {
      const c = await connector({ url: `ldaps://127.0.0.1:${relay.port}`, poolSize: 1 });
      await c.test(); // connected, bound, root DSE read: the next answer is the set's
      relay.arm();
      const lost = await refusal(set(c, 'dave', 'dave-lost-answer'));
      assert.equal(lost.eventId, 6940);
      assert.equal(lost.retryable, true);
      assert.ok(await bindsAs('dave', 'dave-lost-answer'), 'the first attempt did land');
      await set(c, 'dave', 'dave-lost-answer'); // the retry: success, not 6927
      const strict = await connector({ verifyBind: false });
      const e = await refusal(set(strict, 'dave', 'dave-lost-answer'));
      assert.equal(e.eventId, 6927, 'without verifyBind the refusal stands');
    } finally {
      await relay.close();
    }
  });

  test('list, find and version for joins; objects are anchored by entryUUID', async () => {
    const c = await connector();
    const all: TargetObject[] = [];
    for await (const o of c.list()) all.push(o);
    assert.deepEqual(all.map((o) => o.attributes.uid).sort(), ['alice', 'bob', 'carol', 'dave', 'erin']);
    const alice = all.find((o) => o.attributes.uid === 'alice')!;
    assert.match(alice.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'the anchor is the entryUUID');
    assert.equal(alice.attributes.dn, dnOf('alice'));
    assert.equal(alice.attributes.mail, 'alice@pwsync.test');
    assert.deepEqual(await c.attributes(), ['dn', 'entryUUID', 'uid', 'mail', 'cn']);
    assert.deepEqual((await c.find('uid', 'ALICE', true)).map((o) => o.id), [alice.id]);
    assert.deepEqual(await c.find('uid', 'ALICE', false), []);
    assert.deepEqual(await c.find('uid', '*', true), [], 'the value is escaped, not a wildcard');
    assert.deepEqual(await c.find('mail', 'x)(uid=*', true), []);
    assert.deepEqual((await c.find('dn', dnOf('bob'), true)).map((o) => o.attributes.uid), ['bob']);
    assert.deepEqual(await c.find('dn', dnOf('nobody'), true), []);
    const v1 = await c.version();
    await new Promise((resolve) => setTimeout(resolve, 1100)); // modifyTimestamp has a one-second resolution
    await set(c, 'erin', 'erin-version-pass');
    assert.notEqual(await c.version(), v1, 'a changed entry changes the version');
  });

  test('changedSince reads only what changed; a renamed entry keeps its anchor and a set by anchor lands at its new DN', async () => {
    const c = await connector();
    assert.ok(isIncrementalObjectSource(c));
    const all = await c.changedSince(undefined);
    assert.equal(all.complete, true);
    assert.equal(all.objects.length, 5);
    const carol = all.objects.find((o) => o.attributes.uid === 'carol')!;
    await new Promise((resolve) => setTimeout(resolve, 1100)); // modifyTimestamp has a one-second resolution
    await set(c, 'dave', 'dave-delta-pass');
    const dave = await c.changedSince(all.token);
    assert.equal(dave.complete, false);
    const uids = (d: { objects: readonly TargetObject[] }): string[] => d.objects.map((o) => o.attributes.uid!);
    // Entries changed in the token's own second are read again, so one changed by an earlier test may be here; carol, untouched, is not.
    assert.ok(uids(dave).includes('dave') && !uids(dave).includes('carol') && dave.objects.length < 5, uids(dave).join());
    await new Promise((resolve) => setTimeout(resolve, 1100));
    // The token's own second is read again (an entry changed later in that second is not missed).
    const none = await c.changedSince(dave.token);
    assert.deepEqual(uids(none), ['dave']);
    const stale = await connector();
    await stale.changedSince(undefined); // knows carol at her old DN
    await rootLdap('ldapmodrdn', '-r', dnOf('carol'), 'uid=carol.new');
    const moved = await c.changedSince(none.token);
    assert.deepEqual(moved.objects.filter((o) => o.attributes.uid !== 'dave').map((o) => [o.id, o.attributes.dn]), [[carol.id, `uid=carol.new,${env.SLAPD_PEOPLE}`]]);
    // Three ways to the new DN: from the read (c), by a search by entryUUID (a fresh connector),
    // and again after noSuchObject at the old DN (stale).
    for (const [label, conn] of [['a', c], ['b', await connector()], ['c', stale]] as const) {
      const pw = secret(`carol-moved-${label}-pass`);
      try {
        await conn.setPassword({ id: carol.id, attributes: {} }, pw, ctx());
      } finally {
        pw.dispose();
      }
      assert.ok(await bindsAs('carol.new', `carol-moved-${label}-pass`), `set ${label} landed at the new DN`);
    }
    await rootLdap('ldapmodrdn', '-r', `uid=carol.new,${env.SLAPD_PEOPLE}`, 'uid=carol');
    const e = await refusal(c.setPassword({ id: '00000000-0000-0000-0000-000000000000', attributes: {} }, secret('nobody-pass'), ctx()));
    assert.equal(e.eventId, 6923);
    assert.match(e.message, /entryUUID 00000000-0000-0000-0000-000000000000/);
  });

  test('a service account without the right → 6942 naming it and the right, not retried', async () => {
    const c = await connector({ bindDn: env.SLAPD_NORIGHTS_DN, password: { fromFile: env.SLAPD_NORIGHTS_PASSWORD_FILE } });
    const e = await refusal(set(c, 'alice', 'alice-denied-pass'));
    assert.equal(e.eventId, 6942);
    assert.equal(e.retryable, false);
    assert.ok(e.message.includes(env.SLAPD_NORIGHTS_DN!), e.message);
    assert.match(e.message, /write on userPassword/);
    assert.ok(await bindsAs('alice', 'alice-second-pass'), 'the password did not change');
  });

  test('a service account with a wrong password → 6942 naming it', async () => {
    const wrong = path.join(dir, 'wrong.password');
    writeFileSync(wrong, readFileSync(env.SLAPD_NORIGHTS_PASSWORD_FILE!, 'utf8').split('').reverse().join(''), { mode: 0o600 });
    const c = await connector({ password: { fromFile: wrong } });
    const e = await refusal(set(c, 'alice', 'alice-denied-pass'));
    assert.equal(e.eventId, 6942);
    assert.equal(e.retryable, false);
    assert.ok(e.message.includes(env.SLAPD_SERVICE_DN!), e.message);
  });
});
