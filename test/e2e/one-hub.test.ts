import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { storedHash } from '../../cli/demo.ts';
import { DOMAIN, Lab, spawnPwsync, until } from '../../cli/lab.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { verifyPassword } from '../../extensions/examples/scrypt-hash/verify.ts';
import { AuditTrail } from '../../hub/audit.ts';
import type { OperationStatus } from '../../hub/records.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';
import { editYaml } from '../lib/yaml.ts';

/**
 * One data folder, one hub (issue 15, part 2): a second hub on the same hub.dataDir is refused
 * naming the first's PID, a kill -9 leaves no lock behind, a failed start leaves no folder, an
 * operation stuck "retrying" with no delivery is recovered at start, and `pwsync retry` takes a
 * retrying operation.
 */
const csvOf = (rows: string[]): string => `id,login,pwdHash\n${rows.map((r, i) => `${i + 1},${r},`).join('\n')}\n`;
const people = ['alice', 'bob', 'carol'];

let lab: Lab;

async function hook(sam: string, password: Buffer, changeTime?: number): Promise<void> {
  const args = ['hook', '--socket', lab.hookSocket, '--domain', DOMAIN, '--sam', sam];
  if (changeTime) args.push('--time', String(changeTime));
  const p = spawnPwsync(args, { stdin: Buffer.concat([password, Buffer.from('\n')]) });
  assert.equal(await p.exited, 0, `pwsync hook failed: ${p.stderr()}`);
}

/** Reads the hub's state as `pwsync status` does, with the hub running or not. */
async function withState<T>(fn: (s: HubState, b: ReturnType<typeof openSqliteBroker>) => Promise<T>): Promise<T> {
  const broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
  try {
    return await fn(await HubState.open(broker), broker);
  } finally {
    await broker.close();
  }
}

const ops = (sam: string, connector: string): Promise<OperationStatus[]> => withState(async (s) =>
  (await s.listOperations()).filter((o) => o.account.samAccountName === sam && o.connector === connector));

const opWith = (what: string, sam: string, connector: string, pick: (o: OperationStatus) => boolean): Promise<OperationStatus> =>
  until(what, 30_000, async () => (await ops(sam, connector)).find(pick));

before(async () => {
  lab = await Lab.create({
    root: testDir('one-hub'),
    connectors: [
      { name: 'csv', kind: 'delimited', file: 'people.csv', content: csvOf(people), join: [{ target: 'login', source: 'sAMAccountName' }], retry: { count: 1000, interval: '500ms' } },
      { name: 'slow', kind: 'delimited', file: 'slow.csv', content: csvOf(people), join: [{ target: 'login', source: 'sAMAccountName' }], retry: { count: 10, interval: '1h' } },
    ],
  });
  await lab.startHub();
  await lab.startNotifier();
});

after(async () => {
  await lab?.stopAll();
});

test('a second hub on the same data folder exits non-zero naming the first\'s PID; the first keeps working', async () => {
  const first = lab.hub!;
  const second = spawnPwsync(['hub', '--config', lab.hubConfig]);
  assert.equal(await second.exited, 1, second.stderr());
  assert.match(second.stderr(), new RegExp(`hub\\.dataDir \\S+hub-data is held by another hub \\(PID ${first.proc.pid} on `));
  assert.match(readFileSync(lab.hubLog, 'utf8'), /"eventId":6982/);
  assert.equal(first.proc.exitCode, null, 'the first hub still runs');
  // The CLI shares the store with the running hub: status works.
  const status = spawnPwsync(['status', '--config', lab.hubConfig]);
  assert.equal(await status.exited, 0, status.stderr());
  const pw = testPassword('bob-1');
  await hook('bob', pw);
  const op = await opWith('bob\'s change applied by the first hub', 'bob', 'csv', (o) => o.state === 'successful');
  assert.equal(op.attempts, 1, 'applied once');
  assert.equal(await verifyPassword((await storedHash(lab.hubConfig, 'csv', 'bob'))!, pw), true);
});

test('a hub killed with -9 leaves no lock that blocks its restart', async () => {
  const killed = lab.hub!.proc.pid;
  await lab.kill(lab.hub);
  const pidFile = path.join(lab.root, 'hub-data', 'hub.pid');
  assert.match(readFileSync(pidFile, 'utf8'), new RegExp(`^${killed} `), 'the killed hub\'s PID file is still there');
  await lab.startHub();
  assert.match(readFileSync(pidFile, 'utf8'), new RegExp(`^${lab.hub!.proc.pid} `));
});

test('a failed start leaves no data folder behind, and a refused one keeps the folder it found', async () => {
  const config = path.join(lab.root, 'broken.yaml');
  copyFileSync(lab.hubConfig, config);
  editYaml(config, (doc) => {
    doc.hub.dataDir = 'fresh/data';
    doc.hub.listen = '127.0.0.1:0';
    // A join rule on an attribute the file lacks: refused after the folder is made and locked.
    doc.connectors[0].join = [{ target: 'nosuch', source: 'sAMAccountName' }];
  });
  const hub = spawnPwsync(['hub', '--config', config]);
  assert.notEqual(await hub.exited, 0);
  assert.match(hub.stderr(), /join rule names attribute nosuch/);
  assert.equal(existsSync(path.join(lab.root, 'fresh')), false, 'neither fresh/data nor its parent is left');
  const again = spawnPwsync(['hub', '--config', lab.hubConfig]);
  assert.equal(await again.exited, 1);
  assert.match(again.stderr(), /is held by another hub/);
  assert.equal(existsSync(path.join(lab.root, 'hub-data', 'hub.db')), true, 'the running hub\'s folder is untouched');
});

test('an operation left "retrying" with no delivery (another process acknowledged it) is applied after a restart', async () => {
  await hook('alice', testPassword('alice-1'));
  await opWith('alice\'s first change applied', 'alice', 'csv', (o) => o.state === 'successful');
  const file = lab.targetFile('csv');
  renameSync(file, `${file}.away`);
  const pw = testPassword('alice-2 ç');
  await hook('alice', pw);
  const stuck = await opWith('alice\'s second change retrying', 'alice', 'csv', (o) => o.state === 'retrying');
  assert.equal(await lab.stop(lab.hub), 0);
  // What a second hub on the same file did: it took the delivery and acknowledged it, leaving the status behind.
  await withState(async (s, broker) => {
    const consumer = await broker.consumer('ops-csv', 'ops.csv', { ackWaitMs: 15_000 });
    const d = await until('the operation\'s delivery', 10_000, async () => (await consumer.fetch({ max: 10, expiresMs: 500 })).find((x) => x.msgId === stuck.opId));
    await d.ack();
    assert.equal((await broker.pendingMsgIds('ops-csv')).size, 0, 'nothing is queued for the connector any more');
    assert.equal((await s.getOperation(stuck.opId))!.state, 'retrying', 'the status says retrying');
  });
  renameSync(`${file}.away`, file);
  await lab.startHub();
  const done = await opWith('the stuck operation applied', 'alice', 'csv', (o) => o.opId === stuck.opId && o.state === 'successful');
  assert.ok(done.attempts > stuck.attempts, 'a recovered operation goes on counting its attempts');
  assert.equal(await verifyPassword((await storedHash(lab.hubConfig, 'csv', 'alice'))!, pw), true);
  const audit = await withState(async (_s, b) => (await AuditTrail.open(b)).list());
  const entry = audit.find((e) => e.subject === stuck.opId && e.action === 'recover');
  assert.equal(entry?.actor, 'hub lab-hub');
  assert.equal(entry?.result, 'ok');
  assert.ok(readFileSync(lab.hubLog, 'utf8').split('\n').some((l) => l.includes(stuck.opId) && l.includes('"eventId":6983')), 'the recovery is logged with event 6983');
});

test('`pwsync retry` takes a retrying operation (no need to wait for its next try); a successful or superseded one is refused with the reason', async () => {
  await hook('carol', testPassword('carol-1'));
  await opWith('carol\'s first change applied', 'carol', 'slow', (o) => o.state === 'successful');
  const file = lab.targetFile('slow');
  renameSync(file, `${file}.away`);
  const pw = testPassword('carol-2 €');
  await hook('carol', pw);
  const retrying = await opWith('carol\'s change retrying in an hour', 'carol', 'slow', (o) => o.state === 'retrying');
  assert.ok(retrying.nextAttemptAt! > Date.now() + 30 * 60_000);
  renameSync(`${file}.away`, file);
  const retry = spawnPwsync(['retry', '--config', lab.hubConfig, retrying.opId]);
  assert.equal(await retry.exited, 0, retry.stderr());
  assert.match(retry.stdout(), new RegExp(`re-queued ${retrying.opId} \\(${DOMAIN.replace(/\./g, '\\.')}\\\\carol → slow\\)`));
  const done = await opWith('the retried operation applied', 'carol', 'slow', (o) => o.opId === retrying.opId && o.state === 'successful');
  assert.equal(done.attempts, 1, 'a retried operation starts counting again');
  assert.equal(await verifyPassword((await storedHash(lab.hubConfig, 'slow', 'carol'))!, pw), true);
  const audit = await withState(async (_s, b) => (await AuditTrail.open(b)).list());
  assert.ok(audit.some((e) => e.subject === retrying.opId && e.action === 'retry' && e.result === 'ok'));

  const again = spawnPwsync(['retry', '--config', lab.hubConfig, retrying.opId]);
  assert.equal(await again.exited, 2);
  assert.match(again.stderr(), /is successful: the password is set, there is nothing to retry/);
  const now = Date.now();
  await hook('carol', testPassword('carol-3'), now);
  await opWith('carol\'s newest change applied', 'carol', 'slow', (o) => o.changeTime === now && o.state === 'successful');
  await hook('carol', testPassword('carol-old'), now - 60_000);
  const stale = await opWith('the older change superseded', 'carol', 'slow', (o) => o.changeTime === now - 60_000 && o.state === 'superseded');
  assert.equal(stale.eventId, 6919);
  const superseded = spawnPwsync(['retry', '--config', lab.hubConfig, stale.opId]);
  assert.equal(await superseded.exited, 2);
  assert.match(superseded.stderr(), /superseded by a newer change for the same object \(6919\): there is nothing to retry/);
});
