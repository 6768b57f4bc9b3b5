import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { storedHash } from '../../cli/demo.ts';
import { DOMAIN, Lab, REPO, spawnPwsync, until } from '../../cli/lab.ts';
import { sampleConnectors } from '../../cli/samples.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { verifyPassword } from '../../extensions/examples/scrypt-hash/verify.ts';
import { queryStatus } from '../../hub/admin.ts';
import { SETTLED_STATES, type OperationStatus } from '../../hub/records.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * One password change the whole way, each service in its own process, over real gRPC/TLS on
 * loopback: `pwsync hook` → notifier → hub → joins → file and DSML targets.
 */
const csvOf = (rows: string[]): string => `id,login,pwdHash\n${rows.map((r, i) => `${i + 1},${r},`).join('\n')}\n`;
const people = ['alice', 'bob', 'carol', 'dave', 'erin'];

let lab: Lab;
let broker: ReturnType<typeof openSqliteBroker>;
let state: HubState;

async function hook(sam: string, password: Buffer, changeTime?: number): Promise<string> {
  const args = ['hook', '--socket', lab.hookSocket, '--domain', DOMAIN, '--sam', sam];
  if (changeTime) args.push('--time', String(changeTime));
  const p = spawnPwsync(args, { stdin: Buffer.concat([password, Buffer.from('\n')]) });
  const code = await p.exited;
  assert.equal(code, 0, `pwsync hook failed: ${p.stderr()}`);
  return code === 0 ? 'ok' : 'failed';
}

async function ops(sam: string, connector: string): Promise<OperationStatus[]> {
  return (await queryStatus(state, { account: { samAccountName: sam }, connector })).operations;
}

async function settled(sam: string, connector: string, count: number): Promise<OperationStatus[]> {
  return until(`${count} settled operation(s) for ${sam} on ${connector}`, 30_000, async () => {
    const o = await ops(sam, connector);
    return o.length >= count && o.every((x) => SETTLED_STATES.has(x.state)) ? o : undefined;
  });
}

before(async () => {
  const files = sampleConnectors().filter((c) => c.name === 'hr-csv' || c.name === 'portal-dsml' || c.name === 'dir-ldif');
  lab = await Lab.create({
    root: testDir('e2e'),
    connectors: [
      ...files,
      { name: 'no-ext', kind: 'delimited', file: 'noext.csv', content: csvOf(people), join: [{ target: 'login', source: 'sAMAccountName' }], extension: null },
      { name: 'no-set', kind: 'delimited', file: 'noset.csv', content: csvOf(people), join: [{ target: 'login', source: 'sAMAccountName' }], extensionModule: path.join(REPO, 'test/fixtures/extensions/no-set.ts'), extension: {} },
      { name: 'strict', kind: 'delimited', file: 'strict.csv', content: csvOf(['dave']), join: [{ target: 'login', source: 'sAMAccountName' }], extension: { attribute: 'pwdHash', cost: 1024, minLength: 40 } },
      // pwsync's own policy, checked at the hub before the extension sees the password.
      { name: 'policed', kind: 'delimited', file: 'policed.csv', content: csvOf(['dave']), join: [{ target: 'login', source: 'sAMAccountName' }], policy: { minLength: 40, notContainingAccountName: true } },
      { name: 'off', kind: 'delimited', file: 'off.csv', content: csvOf(['erin']), join: [{ target: 'login', source: 'sAMAccountName' }], enabled: false },
      { name: 'gone', kind: 'delimited', file: 'gone.csv', content: csvOf(['bob']), join: [{ target: 'login', source: 'sAMAccountName' }], retry: { count: 5, interval: '1s' } },
      { name: 'flaky', kind: 'delimited', file: 'flaky.csv', content: csvOf(['bob', 'carol']), join: [{ target: 'login', source: 'sAMAccountName' }], retry: { count: 5, interval: '2s' } },
    ],
    targets: [{ name: 'lab-hub' }, { name: 'standby', enabled: false }],
  });
  await lab.startHub();
  await lab.startNotifier();
  broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
  state = await HubState.open(broker);
});

after(async () => {
  await broker?.close();
  await lab?.stopAll();
});

test('a change reaches every joined target and verifies there; an unjoined target is untouched', async () => {
  const ldifBefore = readFileSync(lab.targetFile('dir-ldif'));
  const pw = testPassword('alice-1 çà£');
  await hook('alice', pw);
  for (const c of ['hr-csv', 'portal-dsml']) {
    const [op] = await settled('alice', c, 1);
    assert.equal(op!.state, 'successful', `${c}: ${op!.reason}`);
    assert.equal(op!.envelope, undefined, 'a delivered operation keeps no sealed password');
    const hash = await storedHash(lab.hubConfig, c, 'alice');
    assert.ok(hash, `${c} holds a hash for alice`);
    assert.equal(await verifyPassword(hash!, pw), true, `${c}: the stored hash verifies the new password`);
    assert.equal(await verifyPassword(hash!, testPassword('alice-wrong')), false);
  }
  const sync = (await queryStatus(state, { account: { samAccountName: 'alice' } })).sync;
  assert.equal(sync.find((s) => s.connector === 'dir-ldif')?.state, 'not-joined');
  assert.match(sync.find((s) => s.connector === 'dir-ldif')!.reason!, /no object has uid "alice"/);
  assert.deepEqual(readFileSync(lab.targetFile('dir-ldif')), ldifBefore, 'the unjoined target file is byte for byte the same');
});

test('6921, 6922, 6927, 6928 fail once with their event and are not retried', async () => {
  await hook('dave', testPassword('short'));
  await hook('erin', testPassword('erin-1'));
  const expect: Array<[string, string, number]> = [['dave', 'no-ext', 6922], ['dave', 'no-set', 6928], ['dave', 'strict', 6927], ['dave', 'policed', 6927], ['erin', 'off', 6921]];
  for (const [sam, connector, eventId] of expect) {
    const [op] = await settled(sam, connector, 1);
    assert.equal(op!.state, 'failed');
    assert.equal(op!.eventId, eventId, `${connector}: ${op!.reason}`);
    assert.ok(op!.attempts <= 1, `${connector}: tried ${op!.attempts} times`);
  }
  await new Promise((r) => setTimeout(r, 2500));
  for (const [sam, connector] of expect) {
    const [op] = await ops(sam, connector);
    assert.equal(op!.state, 'failed', `${connector} stays failed, never retried`);
    assert.ok(op!.attempts <= 1);
  }
  const [policed] = await ops('dave', 'policed');
  assert.match(policed!.reason!, /too short: fewer than 40 characters \(pwsync policy of connector policed\)/);
  assert.doesNotMatch(readFileSync(path.join(lab.root, 'targets', 'policed.csv'), 'utf8'), /scrypt/, 'nothing was written to the target');
  for (const [sam, connector, eventId] of expect) {
    const [op] = await ops(sam, connector);
    const lines = readFileSync(lab.hubLog, 'utf8').split('\n').filter((l) => l.includes(op!.opId) && l.includes(`"eventId":${eventId}`));
    assert.equal(lines.length, 1, `${connector}: event ${eventId} is logged once for operation ${op!.opId}`);
  }
});

test('a record that vanished from the target gives 6923; `pwsync retry` re-queues it once it is back', async () => {
  await hook('bob', testPassword('bob-1'));
  assert.equal((await settled('bob', 'gone', 1))[0]!.state, 'successful');
  const file = lab.targetFile('gone');
  const original = readFileSync(file, 'utf8');
  renameSync(file, `${file}.away`);
  const pw = testPassword('bob-2 ç');
  await hook('bob', pw);
  await until('the first attempt failed while the file was away', 30_000, async () => (await ops('bob', 'gone')).find((x) => x.state === 'retrying'));
  // The file comes back without bob: the queued operation's object no longer exists.
  writeFileSync(`${file}.away`, original.split('\n').filter((l) => !l.includes(',bob,')).join('\n'));
  renameSync(`${file}.away`, file);
  const failed = (await settled('bob', 'gone', 2)).find((x) => x.state === 'failed');
  assert.equal(failed?.eventId, 6923, JSON.stringify(await ops('bob', 'gone')));
  const status = spawnPwsync(['status', '--config', lab.hubConfig, '--account', `${DOMAIN}\\bob`, '--failed']);
  assert.equal(await status.exited, 3, `a failed operation shown: exit 3; ${status.stderr()}`);
  assert.match(status.stdout(), new RegExp(`${failed!.opId}.*gone.*failed.*6923`));
  // bob is back in the file: an admin re-queues the failed operation and it lands.
  writeFileSync(file, original);
  const retry = spawnPwsync(['retry', '--config', lab.hubConfig, failed!.opId]);
  assert.equal(await retry.exited, 0, retry.stderr());
  const done = await until('the retried operation landed', 30_000, async () => (await ops('bob', 'gone')).find((x) => x.opId === failed!.opId && x.state === 'successful'));
  assert.equal(done.attempts, 1, 'a retried operation starts counting again');
  assert.equal(await verifyPassword((await storedHash(lab.hubConfig, 'gone', 'bob'))!, pw), true);
});

test('a joined object that moved (new anchor) is rejoined and the change still lands', async () => {
  const file = lab.targetFile('hr-csv');
  const before = readFileSync(file, 'utf8');
  assert.match(before, /^1000,ALICE,/m);
  writeFileSync(file, before.replace(/^1000,ALICE,/m, '7777,ALICE,'));
  const pw = testPassword('alice-moved');
  await hook('alice', pw);
  const op = await until('the change for the moved object landed', 30_000, async () => (await ops('alice', 'hr-csv')).find((x) => x.objectId === '7777' && x.state === 'successful'));
  assert.equal(op.attempts, 1);
  assert.equal(await verifyPassword((await storedHash(lab.hubConfig, 'hr-csv', 'alice'))!, pw), true);
});

test('a target that fails twice then recovers gets the password on the third try', async () => {
  await hook('carol', testPassword('carol-1'));
  assert.equal((await settled('carol', 'flaky', 1))[0]!.state, 'successful');
  const file = lab.targetFile('flaky');
  renameSync(file, `${file}.away`);
  const pw = testPassword('carol-2 €');
  await hook('carol', pw);
  await until('two failed attempts', 30_000, async () => {
    const o = (await ops('carol', 'flaky')).find((x) => x.state === 'retrying' && x.attempts === 2);
    return o;
  });
  renameSync(`${file}.away`, file);
  const o = await settled('carol', 'flaky', 2);
  const second = o.find((x) => x.attempts > 1);
  assert.equal(second?.state, 'successful', JSON.stringify(o));
  assert.equal(second?.attempts, 3);
  assert.equal(await verifyPassword((await storedHash(lab.hubConfig, 'flaky', 'carol'))!, pw), true);
});

test('a change older than the one applied is superseded (6919) and is not applied', async () => {
  const now = Date.now();
  const newer = testPassword('alice-newer');
  await hook('alice', newer, now);
  await until('the newer change applied', 30_000, async () => (await ops('alice', 'hr-csv')).find((x) => x.changeTime === now && x.state === 'successful'));
  await hook('alice', testPassword('alice-older'), now - 60_000);
  const stale = await until('the older change settled', 30_000, async () => (await ops('alice', 'hr-csv')).find((x) => x.changeTime === now - 60_000 && x.state === 'superseded'));
  assert.equal(stale.eventId, 6919);
  assert.equal(await verifyPassword((await storedHash(lab.hubConfig, 'hr-csv', 'alice'))!, newer), true, 'the newer password stays');
});

test('a disabled notifier target receives nothing and keeps nothing queued', async () => {
  const nb = openSqliteBroker({ file: path.join(lab.root, 'notifier-data', 'notifier.db') });
  try {
    // A new durable consumer sees every message ever stored on its subject (and not yet cleaned up).
    const probe = await nb.consumer('probe-standby', 'deliver.standby');
    assert.equal((await probe.info()).pending, 0);
    assert.deepEqual(await probe.fetch({ max: 10, expiresMs: 100 }), []);
  } finally {
    await nb.close();
  }
  assert.doesNotMatch(readFileSync(lab.notifierLog, 'utf8'), /"target":"standby"[^\n]*"msg":"[^"]*deliver/i);
});

test('hub and notifier stop cleanly on SIGTERM: exit 0, nothing in flight lost', async () => {
  await hook('carol', testPassword('carol-last'));
  assert.equal(await lab.stop(lab.notifier), 0, lab.notifier!.stderr());
  assert.equal(await lab.stop(lab.hub), 0, lab.hub!.stderr());
  assert.equal(existsSync(lab.hookSocket), false, 'the notifier removed its socket');
  // Whatever was acknowledged to the hook is delivered after a restart.
  await lab.startHub();
  await lab.startNotifier();
  const pw = testPassword('carol-last');
  const op = await until('carol\'s last change applied', 30_000, async () => {
    const hash = await storedHash(lab.hubConfig, 'hr-csv', 'carol');
    return hash && await verifyPassword(hash, pw) ? true : undefined;
  });
  assert.equal(op, true);
});
