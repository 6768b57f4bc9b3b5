import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { storedHashes } from '../../cli/demo.ts';
import { DOMAIN, Lab, spawnPwsync, until, type Service } from '../../cli/lab.ts';
import { sampleConnectors } from '../../cli/samples.ts';
import { natsBrokerOptions } from '../../config/broker.ts';
import { loadHubConfig } from '../../config/load.ts';
import { openNatsBroker, type NatsBroker } from '../../core/broker-nats.ts';
import { Secret } from '../../core/secret.ts';
import { verifyPassword } from '../../extensions/builtin/password-hash.ts';
import { queryStatus } from '../../hub/admin.ts';
import { HubState } from '../../hub/state.ts';
import { sendHookChange } from '../../notifier/hook-client.ts';
import { testDir } from '../lib/dirs.ts';
import { editYaml } from '../lib/yaml.ts';
import { startNatsCluster, type NatsCluster } from '../lib/nats.ts';
import { testPassword } from '../lib/passwords.ts';
import { createWorkerDir, natsAuthConf, type WorkerDir } from '../lib/worker.ts';

/**
 * The scale-out promise under faults: two hubs on a 3-node JetStream cluster (R3), two targets,
 * one of them behind a connector worker. 2,000 changes over 200 accounts, and meanwhile kill -9 of
 * one hub, kill -9 of one NATS node and its restart, kill -9 of the worker and its restart.
 * Afterwards every account's latest password is in both targets, every change the notifier
 * acknowledged became one set-operation per target, and each is recorded once: applied, or
 * superseded by a newer change (6919), nothing failed.
 */
const ACCOUNTS = Array.from({ length: 200 }, (_, i) => `acct${String(i).padStart(3, '0')}`);
const ROUNDS = 10;
const people = ACCOUNTS.map((sam) => ({ sam, name: `Person ${sam}`, mail: `${sam}@example.test` }));

let nats: NatsCluster;
let lab: Lab;
let worker: WorkerDir;
let workerProc: Service | undefined;
let hub2: Service | undefined;
let broker: NatsBroker | undefined;

before(async () => {
  const secrets = { hub: randomBytes(16).toString('hex'), worker: randomBytes(16).toString('hex') };
  const files = testDir('chaos-files');
  const authConf = path.join(files, 'auth.conf');
  writeFileSync(authConf, natsAuthConf({ user: 'hub', password: secrets.hub }, [{ user: 'worker-dmz', password: secrets.worker, connector: 'dmz-csv' }]), { mode: 0o600 });
  nats = await startNatsCluster({ authConf });
  writeFileSync(path.join(files, 'hub-nats.pw'), secrets.hub, { mode: 0o600 });
  writeFileSync(path.join(files, 'nats-ca.pem'), nats.ca);
  const root = testDir('chaos');
  worker = createWorkerDir({
    dir: path.join(root, 'dmz'), connector: 'dmz-csv', people, servers: nats.urls, ca: nats.ca,
    user: 'worker-dmz', password: Secret.adopt(Buffer.from(secrets.worker)), replicas: 3, concurrency: 4,
  });
  lab = await Lab.create({
    root,
    logLevel: process.env.CHAOS_LOG_LEVEL ?? 'info',
    connectors: sampleConnectors(people).filter((c) => c.name === 'hr-csv').map((c) => ({ ...c, retry: { count: 30, interval: '1s' }, concurrency: 4 })),
    hubConnectors: [{
      name: 'dmz-csv', kind: 'remote', connection: { publicKey: worker.publicKey },
      join: [{ target: 'login', source: 'sAMAccountName' }], retry: { count: 30, interval: '1s' }, timeout: '5s', concurrency: 4,
    }],
    broker: { kind: 'nats', servers: nats.urls, tls: { ca: path.join(files, 'nats-ca.pem') }, user: 'hub', credentials: { fromFile: path.join(files, 'hub-nats.pw') }, replicas: 3 },
  });
});

after(async () => {
  await broker?.close();
  await lab?.stop(workerProc);
  await lab?.stop(hub2);
  await lab?.stopAll();
  await nats?.stop();
});

test('2,000 changes over 200 accounts to two targets, one behind a worker: kill -9 of a hub, a NATS node and the worker lose nothing', { timeout: 600_000 }, async () => {
  const init = spawnPwsync(['broker', 'init', '--config', lab.hubConfig]);
  assert.equal(await init.exited, 0, init.stderr());
  workerProc = await worker.startReady();
  await lab.startHub();
  // A second hub on the same NATS, with its own port, data folder and log.
  const peer = await lab.startPeerHub('lab-hub-2');
  hub2 = peer.service;
  const port2 = peer.port;
  editYaml(lab.notifierConfig, (d) => { d.targets[0].failover = [`127.0.0.1:${port2}`]; });
  await lab.startNotifier();

  const appliedLines = (): number => (readFileSync(worker.log, 'utf8').match(/set-operations applied/g) ?? []).length;
  const hubLogs = (): string => readFileSync(lab.hubLog, 'utf8') + readFileSync(path.join(lab.root, 'logs', 'lab-hub-2.log'), 'utf8');
  const latest = new Map<string, Buffer>();
  let acked = 0;
  const faults: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    if (round === 2) { await lab.kill(lab.hub); faults.push('kill -9 hub 1'); }
    if (round === 4) { await nats.killNode(2); faults.push('kill -9 NATS node 2'); }
    if (round === 6) { await nats.startNode(2); faults.push('NATS node 2 restarted'); }
    if (round === 7) {
      // While it applies: killed between taking set-operations and answering for them.
      const applied = appliedLines();
      await until('the worker to apply more set-operations', 60_000, () => (appliedLines() > applied ? true : undefined), workerProc);
      await lab.kill(workerProc);
      faults.push('kill -9 worker');
    }
    if (round === 8) {
      await until('a hub to find the worker gone', 60_000, () => (/no connector worker listens|did not answer on pwsync\.worker/.test(hubLogs()) ? true : undefined));
      workerProc = await worker.startReady();
      faults.push('worker restarted');
    }
    // Each account once per round, 50 at a time (the notifier acknowledges each once it is durable).
    for (let i = 0; i < ACCOUNTS.length; i += 50) {
      await Promise.all(ACCOUNTS.slice(i, i + 50).map(async (sam) => {
        const pw = testPassword(`${sam}-chaos-${round}`);
        await sendHookChange(lab.hookSocket, { domain: DOMAIN, samAccountName: sam }, Secret.adopt(Buffer.from(pw)), 30_000);
        latest.set(sam, pw);
        acked++;
      }));
    }
  }
  assert.equal(acked, ACCOUNTS.length * ROUNDS, 'the notifier acknowledged every change');
  assert.deepEqual(faults, ['kill -9 hub 1', 'kill -9 NATS node 2', 'NATS node 2 restarted', 'kill -9 worker', 'worker restarted']);

  const missing = async (): Promise<string[]> => {
    const [local, remote] = await Promise.all([storedHashes(lab.hubConfig, 'hr-csv', ACCOUNTS), worker.hashes(ACCOUNTS)]);
    const out: string[] = [];
    for (const sam of ACCOUNTS) {
      const pw = latest.get(sam)!;
      for (const [name, h] of [['hr-csv', local.get(sam)], ['dmz-csv', remote.get(sam)]] as const) {
        if (!h || !await verifyPassword(h, pw)) out.push(`${sam}@${name}`);
      }
    }
    return out;
  };
  let last: string[] = [];
  await until('every account\'s latest password in both targets', 240_000, async () => {
    last = await missing();
    return last.length === 0 ? true : undefined;
  }, hub2).catch((e: unknown) => {
    throw new Error(`${(e as Error).message}; still missing ${last.length}: ${last.slice(0, 10).join(', ')}`);
  });

  broker = await openNatsBroker(natsBrokerOptions(await loadHubConfig(lab.hubConfig)));
  const state = await HubState.open(broker);
  // Changes the killed hub had taken from the stream but not resolved come back after the
  // resolver's ack wait (30 s); superseded ones then settle as 6919. Wait for every operation.
  let operations: Awaited<ReturnType<typeof queryStatus>>['operations'] = [];
  const settled = (o: { state: string }): boolean => o.state === 'successful' || o.state === 'failed' || o.state === 'superseded';
  await until('every acknowledged change to become a settled set-operation in both targets', 120_000, async () => {
    operations = (await queryStatus(state, {})).operations;
    const done = ['hr-csv', 'dmz-csv'].every((c) => operations.filter((o) => o.connector === c && settled(o)).length >= ACCOUNTS.length * ROUNDS);
    return done ? true : undefined;
  }).catch((e: unknown) => {
    const count = (c: string): string => `${c}: ${operations.filter((o) => o.connector === c).length} operations, ${operations.filter((o) => o.connector === c && settled(o)).length} settled`;
    throw new Error(`${(e as Error).message}; ${count('hr-csv')}; ${count('dmz-csv')}`);
  });
  for (const connector of ['hr-csv', 'dmz-csv']) {
    const ops = operations.filter((o) => o.connector === connector);
    const wrong = ops.filter((o) => !(o.state === 'successful' || o.state === 'superseded'));
    assert.deepEqual(wrong.slice(0, 5).map((o) => `${o.account.samAccountName} ${o.state} ${o.eventId ?? ''} ${o.reason ?? ''}`), [], `${connector}: every operation applied or superseded`);
    assert.equal(ops.length, ACCOUNTS.length * ROUNDS, `${connector}: one set-operation per acknowledged change`);
    assert.equal(new Set(ops.map((o) => o.opId)).size, ops.length, `${connector}: each operation recorded once`);
    for (const sam of ACCOUNTS) {
      const mine = ops.filter((o) => o.account.samAccountName === sam);
      const newest = mine.reduce((a, b) => (b.changeTime > a.changeTime ? b : a));
      assert.equal(newest.state, 'successful', `${connector} ${sam}: the latest change was applied`);
    }
  }
});
