import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { storedHash } from '../../cli/demo.ts';
import { DOMAIN, Lab, spawnPwsync, until } from '../../cli/lab.ts';
import { sampleConnectors } from '../../cli/samples.ts';
import { natsBrokerOptions } from '../../config/broker.ts';
import { loadHubConfig } from '../../config/load.ts';
import { openNatsBroker, type NatsBroker } from '../../core/broker-nats.ts';
import { verifyPassword } from '../../extensions/builtin/password-hash.ts';
import { queryStatus } from '../../hub/admin.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';
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

before(async () => {
  nats = await startNatsCluster();
  const files = testDir('nats-hub-files');
  const secret = path.join(files, 'nats.pw');
  nats.password().use((b) => writeFileSync(secret, b, { mode: 0o600 }));
  const ca = path.join(files, 'nats-ca.pem');
  writeFileSync(ca, nats.ca);
  lab = await Lab.create({
    root: testDir('nats-hub'),
    connectors: sampleConnectors().filter((c) => c.name === 'hr-csv'),
    broker: { kind: 'nats', servers: nats.urls, tls: { ca }, user: 'pwsync', credentials: { fromFile: secret }, replicas: 3 },
  });
});

after(async () => {
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
    assert.ok(ops.length >= 1 && ops.every((o) => o.state === 'successful' || o.eventId === 6919), `${sam}: ${ops.map((o) => `${o.state} ${o.eventId ?? ''} ${o.reason ?? ''}`).join('; ')}`);
  }
});
