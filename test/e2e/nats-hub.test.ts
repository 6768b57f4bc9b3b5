import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { storedHash } from '../../cli/demo.ts';
import { DOMAIN, Lab, spawnPwsync, until, type Service } from '../../cli/lab.ts';
import { PEOPLE, sampleConnectors } from '../../cli/samples.ts';
import { natsBrokerOptions } from '../../config/broker.ts';
import { loadHubConfig } from '../../config/load.ts';
import { openNatsBroker, type NatsBroker } from '../../core/broker-nats.ts';
import { Secret } from '../../core/secret.ts';
import { verifyPassword } from '../../extensions/builtin/password-hash.ts';
import { sendHookChange } from '../../notifier/hook-client.ts';
import { queryStatus } from '../../hub/admin.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';
import { editYaml } from '../lib/yaml.ts';
import { startNatsCluster, type NatsCluster } from '../lib/nats.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * The hub on NATS JetStream (broker.kind: nats) end to end, on a private 3-node cluster (R3):
 * refused before `pwsync broker init`, then hook → notifier → hub → a file target, with the hub's
 * state read back from JetStream.
 */
let nats: NatsCluster;
let lab: Lab;
let broker: NatsBroker | undefined;
let hub2: Service | undefined;
const USERS = Array.from({ length: 20 }, (_, i) => `user${String(i).padStart(2, '0')}`);
const people = [...PEOPLE, ...USERS.map((sam) => ({ sam, name: `User ${sam}`, mail: `${sam}@example.test` }))];

before(async () => {
  nats = await startNatsCluster();
  const files = testDir('nats-hub-files');
  const secret = path.join(files, 'nats.pw');
  nats.password().use((b) => writeFileSync(secret, b, { mode: 0o600 }));
  const ca = path.join(files, 'nats-ca.pem');
  writeFileSync(ca, nats.ca);
  lab = await Lab.create({
    root: testDir('nats-hub'),
    connectors: sampleConnectors(people).filter((c) => c.name === 'hr-csv'),
    broker: { kind: 'nats', servers: nats.urls, tls: { ca }, user: 'pwsync', credentials: { fromFile: secret }, replicas: 3 },
  });
});

after(async () => {
  await lab?.stop(hub2);
  await broker?.close();
  await lab?.stopAll();
  await nats?.stop();
});

test('before `pwsync broker init` the hub refuses to start, naming the command', async () => {
  await assert.rejects(lab.startHub(30_000), /pwsync broker init/);
});

test('after `pwsync broker init`, changes travel through JetStream to the target; the latest password wins', async () => {
  const init = spawnPwsync(['broker', 'init', '--config', lab.hubConfig]);
  assert.equal(await init.exited, 0, init.stderr());
  assert.match(init.stdout(), /created/);
  await lab.startHub();
  await lab.startNotifier();
  const last = new Map<string, Buffer>();
  for (let round = 0; round < 3; round++) {
    for (const sam of ['alice', 'bob', 'carol']) {
      const pw = testPassword(`${sam}-nats-${round}`);
      const p = spawnPwsync(['hook', '--socket', lab.hookSocket, '--domain', DOMAIN, '--sam', sam], { stdin: Buffer.concat([pw, Buffer.from('\n')]) });
      assert.equal(await p.exited, 0, p.stderr());
      last.set(sam, pw);
    }
  }
  for (const [sam, pw] of last) {
    await until(`${sam}'s latest password in hr-csv`, 60_000, async () => {
      const h = await storedHash(lab.hubConfig, 'hr-csv', sam);
      return h && await verifyPassword(h, pw) ? true : undefined;
    });
  }
  broker = await openNatsBroker(natsBrokerOptions(await loadHubConfig(lab.hubConfig)));
  const state = await HubState.open(broker);
  for (const sam of last.keys()) {
    const ops = (await queryStatus(state, { account: { samAccountName: sam }, connector: 'hr-csv' })).operations;
    assert.ok(ops.length >= 1 && ops.every((o) => o.state === 'successful' || o.state === 'superseded'), `${sam}: ${ops.map((o) => `${o.state} ${o.eventId ?? ''} ${o.reason ?? ''}`).join('; ')}`);
  }
});

test('two hubs share the broker: kill -9 of one under a stream of changes loses nothing; the notifier fails over', async () => {
  // A second hub on the same NATS, with its own port, data folder and log.
  const peer = await lab.startPeerHub('lab-hub-2');
  hub2 = peer.service;
  const port2 = peer.port;
  await lab.stop(lab.notifier);
  editYaml(lab.notifierConfig, (d) => { d.targets[0].failover = [`127.0.0.1:${port2}`]; });
  await lab.startNotifier();

  // 200 changes over 20 accounts, 10 at a time; the first hub is killed a third of the way in.
  const latest = new Map<string, Buffer>();
  const acked: string[] = [];
  for (let k = 0; k < 10; k++) {
    if (k === 3) await lab.kill(lab.hub);
    await Promise.all(USERS.map(async (sam, i) => {
      const pw = testPassword(`${sam}-two-hubs-${k}`);
      await sendHookChange(lab.hookSocket, { domain: DOMAIN, samAccountName: sam }, Secret.adopt(Buffer.from(pw)), 10_000);
      latest.set(sam, pw);
      acked.push(`${k}.${i}`);
    }));
  }
  assert.equal(acked.length, 200, 'every change was acknowledged by the notifier');
  for (const [sam, pw] of latest) {
    await until(`${sam}'s latest password in hr-csv`, 90_000, async () => {
      const h = await storedHash(lab.hubConfig, 'hr-csv', sam);
      return h && await verifyPassword(h, pw) ? true : undefined;
    }, hub2);
  }
  broker ??= await openNatsBroker(natsBrokerOptions(await loadHubConfig(lab.hubConfig)));
  const state = await HubState.open(broker);
  for (const sam of USERS) {
    const ops = (await queryStatus(state, { account: { samAccountName: sam }, connector: 'hr-csv' })).operations;
    const failed = ops.filter((o) => o.state === 'failed');
    assert.deepEqual(failed.map((o) => `${o.eventId}: ${o.reason}`), [], `${sam}: no change failed`);
    const newest = ops.reduce((a, b) => (b.changeTime > a.changeTime ? b : a));
    assert.equal(newest.state, 'successful', `${sam}: the latest change was applied`);
    assert.equal(new Set(ops.map((o) => o.changeId)).size, ops.length, `${sam}: one operation per change`);
  }
  assert.match(readFileSync(path.join(lab.root, 'logs', 'lab-hub-2.log'), 'utf8'), /"eventId":6947/, 'the second hub applied set-operations');
});

test('object claims over JetStream (R3): three hubs racing for one object, exactly one wins each round', async () => {
  const options = natsBrokerOptions(await loadHubConfig(lab.hubConfig));
  const brokers = await Promise.all([1, 2, 3].map(() => openNatsBroker(options)));
  try {
    const hubs = await Promise.all(brokers.map(async (b, i) => ({ id: `hub-${i}`, state: await HubState.open(b) })));
    for (let round = 0; round < 10; round++) {
      const claims = await Promise.all(hubs.map((h) => h.state.claimObject('hr-csv', 'race', h.id, 60_000)));
      const won = claims.filter((c) => 'release' in c);
      assert.equal(won.length, 1, `round ${round}: ${JSON.stringify(claims.map((c) => ('heldBy' in c ? c.heldBy : 'won')))}`);
      await (won[0] as { release(): Promise<void> }).release();
    }
  } finally {
    await Promise.all(brokers.map((b) => b.close()));
  }
});
