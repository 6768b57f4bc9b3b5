import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';

/**
 * Object claims (hub/state.ts claimObject): what keeps hubs that share a broker from setting one
 * target object at once. Two HubStates over one broker stand for two hubs; the same calls run over
 * JetStream in the several-hubs tests.
 */
const broker = openSqliteBroker({ file: path.join(testDir('claims'), 'hub.db') });
after(() => broker.close());

test('one hub at a time per object; released, the other takes it; other objects are free', async () => {
  const a = await HubState.open(broker);
  const b = await HubState.open(broker);
  const first = await a.claimObject('crm', 'alice', 'hub-a', 60_000);
  assert.ok('release' in first);
  assert.deepEqual(await b.claimObject('crm', 'alice', 'hub-b', 60_000), { heldBy: 'hub-a' });
  assert.ok('release' in await b.claimObject('crm', 'bob', 'hub-b', 60_000), 'another object is not blocked');
  assert.ok('release' in await b.claimObject('erp', 'alice', 'hub-b', 60_000), 'the same object id in another connector is not blocked');
  await first.release();
  const second = await b.claimObject('crm', 'alice', 'hub-b', 60_000);
  assert.ok('release' in second, 'released, the object is free');
  await second.release();
});

test('a claim past its lease (its hub died mid-set) is taken over, and the dead hub\'s release leaves the new claim alone', async () => {
  const a = await HubState.open(broker);
  const b = await HubState.open(broker);
  const stale = await a.claimObject('crm', 'carol', 'hub-a', 1);
  assert.ok('release' in stale);
  await new Promise((r) => setTimeout(r, 20));
  const taken = await b.claimObject('crm', 'carol', 'hub-b', 60_000);
  assert.ok('release' in taken, 'the expired claim was taken over');
  await stale.release();
  assert.deepEqual(await a.claimObject('crm', 'carol', 'hub-a', 60_000), { heldBy: 'hub-b' }, 'hub-b still holds it');
  await taken.release();
});

test('two hubs racing for one free object: exactly one wins each round', async () => {
  const hubs = await Promise.all(['hub-a', 'hub-b', 'hub-c'].map(async (id) => ({ id, state: await HubState.open(broker) })));
  for (let round = 0; round < 20; round++) {
    const claims = await Promise.all(hubs.map((h) => h.state.claimObject('crm', 'race', h.id, 60_000)));
    const won = claims.filter((c) => 'release' in c);
    assert.equal(won.length, 1, `round ${round}: ${JSON.stringify(claims.map((c) => ('heldBy' in c ? c.heldBy : 'won')))}`);
    await (won[0] as { release(): Promise<void> }).release();
  }
});

test('a renewed claim outlives its first lease; renewing a claim another hub took over fails', async () => {
  const a = await HubState.open(broker);
  const b = await HubState.open(broker);
  const held = await a.claimObject('crm', 'dave', 'hub-a', 30);
  assert.ok('release' in held);
  await new Promise((r) => setTimeout(r, 20));
  await held.renew();
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(await b.claimObject('crm', 'dave', 'hub-b', 60_000), { heldBy: 'hub-a' }, 'renewed, the claim is still hub-a\'s');
  await new Promise((r) => setTimeout(r, 40));
  const taken = await b.claimObject('crm', 'dave', 'hub-b', 60_000);
  assert.ok('release' in taken, 'not renewed again, its lease ran out and hub-b took it');
  await assert.rejects(held.renew());
  await held.release();
  assert.deepEqual(await a.claimObject('crm', 'dave', 'hub-a', 60_000), { heldBy: 'hub-b' });
  await taken.release();
});
