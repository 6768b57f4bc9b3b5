import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Lab, spawnPwsync, until } from '../../cli/lab.ts';
import { isNativePasswordSetter, isObjectSource, type Connector, type NativePasswordSetter, type ObjectSource } from '../../connectors/contract.ts';
import { createConnector } from '../../connectors/registry.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import type { OperationContext, TargetObject } from '../../core/extension.ts';
import { silentLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { queryStatus } from '../../hub/admin.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';
import { bindsWith, lossyRelay, refusal } from '../lib/ldap-checks.ts';
import { startSambaDc, type SambaDc, type SambaPerson } from '../lib/samba.ts';

/**
 * The `ad` connector against a real Samba AD DC (its own, in this file's network namespace):
 * unicodePwd replaced by pwsync-svc, which holds only "Reset Password" on OU=People; a user's
 * change (old deleted, new added); the DC's policy and rights refusals as events; joins by
 * objectGUID. Each password is proven by a simple bind as the user over LDAPS.
 */
const run = promisify(execFile);
type Ad = Connector & ObjectSource & NativePasswordSetter & Required<Pick<NativePasswordSetter, 'changePassword'>>;

let dc: SambaDc;
const dir = testDir('ad-target');
const open: Connector[] = [];

function ctx(): OperationContext {
  return {
    operationId: 'op-1', changeId: 'ch-1', changeTime: Date.now(), connector: 'corp-ad', log: silentLogger(),
    account: { domain: 'pwsync.test', samAccountName: 'x', objectGuid: '', objectSid: '', upn: '', dn: '' },
  };
}

async function connector(settings: Record<string, unknown> = {}): Promise<Ad> {
  const f = dc.facts;
  const c = createConnector('corp-ad', 'ad', {
    url: f.ldapsUrl, serverName: f.dcHost, ca: f.caPem, bindDn: f.svc.bindDn, password: { fromFile: f.svc.passwordFile },
    baseDn: f.people.ou, timeout: '10s', ...settings,
  }, { log: silentLogger(), resolvePath: (p) => path.resolve(dir, p) });
  assert.ok(isNativePasswordSetter(c) && isObjectSource(c) && typeof c.changePassword === 'function');
  open.push(c);
  await c.open();
  return c as Ad;
}

/** The person's object as joins see it (found by sAMAccountName). */
async function object(c: Ad, who: SambaPerson): Promise<TargetObject> {
  const [o] = await c.find('sAMAccountName', who, true);
  assert.ok(o, `${who} is found`);
  return o;
}

/** A simple bind as the user over LDAPS, on its own connection: true when the password works, false on 49. */
function bindsAs(who: SambaPerson, password: Buffer): Promise<boolean> {
  return bindsWith({ url: dc.facts.ldapsUrl, ca: dc.facts.caPem, serverName: dc.facts.dcHost }, dc.people[who].upn, password);
}

async function set(c: Ad, o: TargetObject, password: Buffer): Promise<void> {
  const s = Secret.adopt(Buffer.from(password));
  try {
    await c.setPassword(o, s, ctx());
  } finally {
    s.dispose();
  }
}

async function change(c: Ad, o: TargetObject, oldPassword: Buffer, newPassword: Buffer): Promise<void> {
  const [a, b] = [Secret.adopt(Buffer.from(oldPassword)), Secret.adopt(Buffer.from(newPassword))];
  try {
    await c.changePassword(o, a, b, ctx());
  } finally {
    a.dispose();
    b.dispose();
  }
}

before(async () => {
  dc = await startSambaDc();
  // Samba accepts the previous password for an hour after a change (NTLM, and so simple binds);
  // without that grace a bind with the old password proves it is gone.
  await dc.stop();
  const conf = readFileSync(dc.facts.smbConf, 'utf8');
  writeFileSync(dc.facts.smbConf, conf.replace(/^\[global\]\n/m, '[global]\n\told password allowed period = 0\n'));
  await dc.start();
});

after(async () => {
  for (const c of open) await c.close().catch(() => undefined);
  await dc?.stop();
});

describe('ad connector against a Samba AD DC', () => {
  test('an admin set (unicodePwd replace) as pwsync-svc lands: the user binds with the new password, the old one fails', async () => {
    const c = await connector();
    assert.equal(c.securityLevel(), 'encrypted');
    assert.match(await c.test(), /bound over TLS to an Active Directory DC; passwords written as unicodePwd; 5 objects under OU=People/);
    const frank = await object(c, 'frank');
    const next = testPassword('fr-set-1');
    await set(c, frank, next);
    assert.ok(await bindsAs('frank', next));
    assert.equal(await bindsAs('frank', dc.people.frank.password), false);
  });

  test('é, ß, €, 日本, a double quote, a backslash and 127 characters arrive intact', async () => {
    const c = await connector();
    const grace = await object(c, 'grace');
    const long = testPassword('gr-long-'.padEnd(120, 'é'));
    assert.equal([...long.toString('utf8')].length, 127);
    for (const pw of [testPassword('gr-é-ß-€-日本'), testPassword('gr-"quoted"'), testPassword('gr-back\\slash\\'), long]) {
      await set(c, grace, pw);
      assert.ok(await bindsAs('grace', pw), `binds after a set of ${[...pw.toString('utf8')].length} characters`);
    }
    const decomposed = Buffer.from(long.toString('utf8').normalize('NFD'), 'utf8');
    assert.equal(await bindsAs('grace', decomposed), false, 'a decomposed é is another password');
  });

  test('a user\'s change (old deleted, new added) works with the right old password; a wrong one → 6927', async () => {
    const c = await connector();
    const heidi = await object(c, 'heidi');
    const next = testPassword('he-chg-1');
    await change(c, heidi, dc.people.heidi.password, next);
    assert.ok(await bindsAs('heidi', next));
    assert.equal(await bindsAs('heidi', dc.people.heidi.password), false);
    const e = await refusal(change(c, heidi, testPassword('he-not-it'), testPassword('he-chg-2')));
    assert.equal(e.eventId, 6927);
    assert.equal(e.retryable, false);
    assert.match(e.message, /the old password is wrong/);
    assert.ok(await bindsAs('heidi', next), 'the password did not change');
  });

  test('a change that landed but whose answer was lost: the retry is refused (old password gone), a bind as the user confirms it', async () => {
    const relay = await lossyRelay(Number(new URL(dc.facts.ldapsUrl).port));
    try {
      const c = await connector({ url: `ldaps://127.0.0.1:${relay.port}`, poolSize: 1 });
      const heidi = await object(c, 'heidi'); // connected, bound, searched: the next answer is the change's
      const [from, to] = [testPassword('he-chg-1'), testPassword('he-lost-1')];
      relay.arm();
      const lost = await refusal(change(c, heidi, from, to));
      assert.equal(lost.eventId, 6940);
      assert.equal(lost.retryable, true);
      assert.ok(await bindsAs('heidi', to), 'the first attempt did land');
      await change(c, heidi, from, to); // the retry: success, not 6927
      const strict = await connector({ verifyBind: false });
      const e = await refusal(change(strict, heidi, from, to));
      assert.equal(e.eventId, 6927, 'without verifyBind the refusal stands');
    } finally {
      await relay.close();
    }
  });

  test('too short and in history → 6927 with the reason, not retried', async () => {
    const c = await connector();
    const ivan = await object(c, 'ivan');
    const samba = (...args: string[]): Promise<unknown> =>
      run('samba-tool', ['domain', 'passwordsettings', 'set', ...args, '-s', dc.facts.smbConf], { env: { ...process.env, ...dc.env }, timeout: 60_000 });
    await samba('--min-pwd-length=14'); // the test passwords' prefix alone has 7
    try {
      const short = await refusal(set(c, ivan, testPassword('iv-s')));
      assert.equal(short.eventId, 6927);
      assert.equal(short.retryable, false);
      assert.match(short.message, /too short: the domain requires at least 14 characters/);
    } finally {
      await samba('--min-pwd-length=7');
    }
    // An admin set ignores history (AD semantics); a change is checked against it.
    const first = testPassword('iv-chg-1');
    await change(c, ivan, dc.people.ivan.password, first);
    const reused = await refusal(change(c, ivan, first, dc.people.ivan.password));
    assert.equal(reused.eventId, 6927);
    assert.equal(reused.retryable, false);
    assert.match(reused.message, /in history/);
    assert.ok(await bindsAs('ivan', first));
  });

  test('an object that is not there → 6923', async () => {
    const c = await connector();
    const gone = { id: randomUUID(), attributes: { dn: `CN=nobody,${dc.facts.people.ou}`, sAMAccountName: 'nobody' } };
    const e = await refusal(set(c, gone, testPassword('nobody-1')));
    assert.equal(e.eventId, 6923);
    assert.equal(e.retryable, false);
    assert.ok(e.message.includes(gone.attributes.dn), e.message);
  });

  test('a service account without "Reset Password" → 6942 naming it and the right, not retried', async () => {
    const f = dc.facts;
    const c = await connector({ bindDn: f.reader.bindDn, password: { fromFile: f.reader.passwordFile } });
    const e = await refusal(set(c, await object(c, 'frank'), testPassword('fr-denied-1')));
    assert.equal(e.eventId, 6942);
    assert.equal(e.retryable, false);
    assert.ok(e.message.includes(f.reader.bindDn), e.message);
    assert.match(e.message, /"Reset Password"/);
    assert.ok(await bindsAs('frank', testPassword('fr-set-1')), 'the password did not change');
  });

  test('a plain ldap:// URL is refused (6951) before anything is sent', async () => {
    let connections = 0;
    const server = net.createServer((s) => { connections++; s.destroy(); });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const f = dc.facts;
      const c = createConnector('plain-ad', 'ad', {
        url: `ldap://127.0.0.1:${port}`, ca: f.caPem, bindDn: f.svc.bindDn, password: { fromFile: f.svc.passwordFile }, baseDn: f.people.ou,
      }, { log: silentLogger(), resolvePath: (p) => path.resolve(dir, p) }) as Ad;
      assert.equal(c.securityLevel(), 'plain');
      const e = await refusal(c.open());
      assert.equal(e.eventId, 6951);
      assert.match(e.message, /ldaps:\/\/|startTls/);
      assert.notEqual((await refusal(set(c, { id: randomUUID(), attributes: { dn: dc.people.frank.dn } }, testPassword('never-sent-1')))).eventId, 6947);
      assert.equal(connections, 0, 'no connection was opened');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('list and find map DN, sAMAccountName, mail and objectGUID (as text, the anchor); version moves with uSNChanged', async () => {
    const c = await connector();
    const all: TargetObject[] = [];
    for await (const o of c.list()) all.push(o);
    assert.deepEqual(all.map((o) => o.attributes.sAMAccountName).sort(), ['frank', 'grace', 'heidi', 'ivan', 'judy']);
    for (const o of all) {
      const p = dc.people[o.attributes.sAMAccountName as SambaPerson];
      assert.equal(o.id, p.objectGuid, 'the anchor is objectGUID as text');
      assert.equal(o.attributes.objectGUID, p.objectGuid);
      assert.equal(o.attributes.dn, p.dn);
      assert.equal(o.attributes.mail, p.mail);
      assert.equal(o.attributes.userPrincipalName, p.upn);
    }
    assert.deepEqual(await c.attributes(), ['dn', 'objectGUID', 'sAMAccountName', 'userPrincipalName', 'mail']);
    assert.deepEqual((await c.find('mail', 'JUDY@pwsync.test', true)).map((o) => o.id), [dc.people.judy.objectGuid]);
    assert.deepEqual(await c.find('sAMAccountName', 'JUDY', false), []);
    assert.deepEqual(await c.find('sAMAccountName', '*', true), [], 'the value is escaped, not a wildcard');
    assert.deepEqual((await c.find('dn', dc.people.judy.dn, true)).map((o) => o.attributes.sAMAccountName), ['judy']);
    assert.deepEqual(await c.find('sAMAccountName', 'alice', true), [], 'alice is outside baseDn');
    assert.deepEqual((await c.find('objectGUID', dc.people.judy.objectGuid.toUpperCase(), false)).map((o) => o.attributes.sAMAccountName), ['judy'], 'a GUID is found by its bytes');
    assert.deepEqual(await c.find('objectGUID', 'not-a-guid', true), []);
    const v1 = await c.version();
    await set(c, await object(c, 'judy'), testPassword('ju-set-1'));
    assert.notEqual(await c.version(), v1, 'a set moves uSNChanged');
  });

  test('end to end: `pwsync hook` → notifier → hub → the DC as an ad target; the user binds with the new password', async () => {
    const f = dc.facts;
    const lab = await Lab.create({
      root: testDir('ad-e2e'), domain: f.domain, connectors: [],
      hubConnectors: [{
        name: 'corp-ad', kind: 'ad', enabled: true,
        connection: {
          url: f.ldapsUrl, serverName: f.dcHost, ca: f.caPem, bindDn: f.svc.bindDn, password: { fromFile: f.svc.passwordFile }, baseDn: f.people.ou,
        },
        join: [{ target: 'sAMAccountName', source: 'sAMAccountName' }],
        retry: { count: 3, interval: '1s' }, concurrency: 2, batchSize: 50,
      }],
    });
    let broker: ReturnType<typeof openSqliteBroker> | undefined;
    try {
      await lab.startHub();
      await lab.startNotifier();
      broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
      const state = await HubState.open(broker);
      // One after another for judy, each proven by a bind before the next: é ß € 日本, quotes,
      // backslashes, 127 characters, all through the hook, the notifier's seal and the hub.
      const passwords = [
        testPassword('ju-e2e-1 ✓'), testPassword('ju-é-ß-€-日本'), testPassword('ju-"quoted"'),
        testPassword('ju-back\\slash\\'), testPassword('ju-long-'.padEnd(120, 'ß')),
      ];
      assert.equal([...passwords.at(-1)!.toString('utf8')].length, 127);
      let previous = testPassword('ju-set-1');
      for (const [i, pw] of passwords.entries()) {
        const hook = spawnPwsync(['hook', '--socket', lab.hookSocket, '--domain', f.domain, '--sam', 'judy'], { stdin: Buffer.concat([pw, Buffer.from('\n')]) });
        assert.equal(await hook.exited, 0, hook.stderr());
        const ops = await until(`set-operation ${i + 1} for judy to settle`, 60_000, async () => {
          const o = (await queryStatus(state, { account: { samAccountName: 'judy' }, connector: 'corp-ad' })).operations;
          return o.length > i && o.every((x) => x.state === 'successful' || x.state === 'failed' || x.state === 'superseded') ? o : undefined;
        });
        assert.ok(ops.every((o) => o.state === 'successful'), ops.map((o) => o.reason).join('; '));
        assert.ok(await bindsAs('judy', pw), `judy binds with password ${i + 1} (${[...pw.toString('utf8')].length} characters)`);
        assert.equal(await bindsAs('judy', previous), false, 'the one before no longer works');
        previous = pw;
      }
    } finally {
      await broker?.close();
      await lab.stopAll();
    }
  });
});
