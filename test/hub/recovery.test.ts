import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import type { Broker } from '../../core/broker.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { silentLogger } from '../../core/log.ts';
import { AuditTrail } from '../../hub/audit.ts';
import type { OperationStatus } from '../../hub/records.ts';
import { recoverStuckOperations } from '../../hub/recovery.ts';
import { HubState } from '../../hub/state.ts';
import type { Target } from '../../hub/targets.ts';
import { testDir } from '../lib/dirs.ts';

/**
 * No operation stays unsettled with nothing to move it (issue 15, part 2): which ones the hub
 * queues again, on a broker that lists what is queued (embedded) and on one that cannot (JetStream).
 */
const M = 60_000;
const now = Date.now();
const target = { config: { name: 'c', timeout: 30_000 }, log: silentLogger() } as unknown as Target;

const op = (opId: string, state: OperationStatus['state'], ageM: number, extra: Partial<OperationStatus> = {}): OperationStatus => ({
  opId, changeId: `change-${opId}`, connector: 'c', objectId: opId, changeTime: 0, state, attempts: 2, updatedAt: now - ageM * M,
  account: { domain: 'd', samAccountName: opId, objectGuid: '', objectSid: '', upn: '', dn: '' }, envelope: 'c2VhbGVk', ...extra,
});

/** The same broker without its listing, as JetStream is. */
const unlisted = (b: Broker): Broker => ({ publish: b.publish.bind(b), consumer: b.consumer.bind(b), kv: b.kv.bind(b), close: b.close.bind(b) });

test('on the embedded broker, exactly the unsettled operations with nothing queued are queued again, counting on', async () => {
  const broker = openSqliteBroker({ file: path.join(testDir('recovery'), 'hub.db') });
  try {
    const state = await HubState.open(broker);
    const audit = await AuditTrail.open(broker);
    await broker.consumer('ops-c', 'ops.c');
    await broker.publish('ops.c', Buffer.from('{}'), { msgId: 'queuedok' });
    await broker.publish('ops.c', Buffer.from('{}'), { msgId: 'retryok.requeue.1.ab' });
    for (const o of [
      op('lost', 'retrying', 5, { nextAttemptAt: now - 4 * M }), op('queuedok', 'queued', 5),
      op('retryok', 'retrying', 5, { delivery: 'retryok.requeue.1.ab' }), op('moved', 'in-progress', 5, { delivery: 'moved.requeue.2.cd' }),
      op('fresh', 'queued', 0), op('done', 'successful', 5, { envelope: undefined }), op('gaveup', 'failed', 5, { eventId: 6941 }),
      op('unsealed', 'retrying', 5, { envelope: undefined }),
    ]) await state.putOperation(o);
    const n = await recoverStuckOperations(broker, state, [target], { hubId: 'h1', audit, graceMs: M, staleMs: 10 * M }, silentLogger(), now);
    assert.equal(n, 2);
    const after = new Map((await state.listOperations()).map((o) => [o.opId, o]));
    for (const id of ['lost', 'moved']) {
      const o = after.get(id)!;
      assert.equal(o.state, 'queued', id);
      assert.equal(o.attempts, 2, `${id}: a recovered operation goes on counting`);
      assert.ok((await broker.pendingMsgIds('ops-c')).has(o.delivery!), `${id} is queued under the id its status records`);
    }
    for (const [id, state] of [['queuedok', 'queued'], ['retryok', 'retrying'], ['fresh', 'queued'], ['done', 'successful'], ['gaveup', 'failed']]) {
      assert.equal(after.get(id!)!.state, state, `${id} untouched`);
    }
    assert.equal(after.get('queuedok')!.delivery, undefined, 'an operation whose delivery is queued is left alone');
    assert.equal(after.get('retryok')!.delivery, 'retryok.requeue.1.ab');
    assert.equal(after.get('fresh')!.delivery, undefined, 'one younger than the grace is left alone');
    const unsealed = after.get('unsealed')!;
    assert.equal(unsealed.state, 'failed', 'one that cannot be queued again fails visibly instead of waiting for good');
    assert.equal(unsealed.eventId, 6941);
    assert.match(unsealed.reason!, /nothing queued to apply it, and holds no sealed password/);
    const entries = await audit.list();
    assert.deepEqual(entries.map((e) => [e.subject, e.action, e.actor, e.result]).sort(), [
      ['lost', 'recover', 'hub h1', 'ok'], ['moved', 'recover', 'hub h1', 'ok'], ['unsealed', 'recover', 'hub h1', 'failed'],
    ]);
  } finally {
    await broker.close();
  }
});

test('where the broker cannot list what is queued (JetStream), an operation long past its due time counts as stuck', async () => {
  const broker = openSqliteBroker({ file: path.join(testDir('recovery-nats'), 'hub.db') });
  try {
    const state = await HubState.open(broker);
    const audit = await AuditTrail.open(broker);
    for (const o of [
      op('overdue', 'retrying', 30, { nextAttemptAt: now - 20 * M }), op('due-soon', 'retrying', 30, { nextAttemptAt: now - M }),
      op('old-queued', 'queued', 20), op('new-queued', 'queued', 2),
    ]) await state.putOperation(o);
    const n = await recoverStuckOperations(unlisted(broker), state, [target], { hubId: 'h1', audit, graceMs: 0, staleMs: 10 * M }, silentLogger(), now);
    assert.equal(n, 2);
    const after = new Map((await state.listOperations()).map((o) => [o.opId, o]));
    assert.deepEqual([...after.values()].filter((o) => o.delivery).map((o) => o.opId).sort(), ['old-queued', 'overdue']);
    assert.equal(after.get('due-soon')!.state, 'retrying');
  } finally {
    await broker.close();
  }
});
