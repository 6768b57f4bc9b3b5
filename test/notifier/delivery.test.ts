import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { subjectToken, type Broker } from '../../core/broker.ts';
import { backoffMs, startDelivery, type DeliveryOptions, type SubmitChannel } from '../../notifier/delivery.ts';
import { deliverConsumer, deliverMsgId, deliverSubject, encodeQueuedChange } from '../../notifier/queued-change.ts';
import type { ChangeAck__Output } from '../../proto/generated/pwsync/v1/ChangeAck.ts';
import type { SubmitRequest } from '../../proto/generated/pwsync/v1/SubmitRequest.ts';
import { capturingLog, tempDir, waitFor, WARN } from './helpers.ts';

/** A hub in memory: down or up, and per change id ACCEPTED_DURABLE, REJECTED or no ack at all. */
class FakeHub implements SubmitChannel {
  down = false;
  delayMs = 0;
  /** Larger calls are refused RESOURCE_EXHAUSTED, as a hub does above its message size limit. */
  maxBatch = Infinity;
  readonly reject = new Map<string, string>();
  readonly omit = new Set<string>();
  /** Every call's change ids, failed calls included. */
  readonly calls: string[][] = [];
  /** Change ids acknowledged ACCEPTED_DURABLE, in the order the hub took them. */
  readonly accepted: string[] = [];

  async submit(req: SubmitRequest): Promise<ChangeAck__Output[]> {
    const ids = (req.changes ?? []).map((c) => Buffer.from(c.changeId as Buffer).toString('hex'));
    this.calls.push(ids);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.down) throw Object.assign(new Error('the hub at 127.0.0.1:1 refused the connection'), { retryable: true, code: 'UNAVAILABLE' });
    if (ids.length > this.maxBatch) throw Object.assign(new Error('the hub refused the batch as too large'), { retryable: true, code: 'RESOURCE_EXHAUSTED' });
    const acks: ChangeAck__Output[] = [];
    for (const id of ids) {
      if (this.omit.has(id)) {
        this.omit.delete(id);
        continue;
      }
      const reason = this.reject.get(id);
      if (reason === undefined) this.accepted.push(id);
      acks.push({ changeId: Buffer.from(id, 'hex'), status: reason === undefined ? 'ACCEPTED_DURABLE' : 'REJECTED', reason: reason ?? '' });
    }
    return acks;
  }

  close(): void {}
}

/** Whatever a failed test left running is stopped, so the file always ends. */
const cleanup: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

async function deliver(opts: DeliveryOptions): Promise<{ stop(): Promise<void> }> {
  const d = await startDelivery(opts);
  cleanup.push(() => d.stop());
  return d;
}

interface Setup {
  broker: Broker;
  hub: FakeHub;
  queue(account: string): Promise<string>;
  pending(): Promise<number>;
  log: ReturnType<typeof capturingLog>;
}

async function setup(target: string, broker?: Broker): Promise<Setup> {
  const b = broker ?? openSqliteBroker({ file: join(tempDir(), 'notifier.db') });
  cleanup.unshift(() => b.close());
  const token = subjectToken(target);
  const consumer = await b.consumer(deliverConsumer(token), deliverSubject(token));
  return {
    broker: b,
    hub: new FakeHub(),
    log: capturingLog(),
    // A record shaped like capture's; delivery never opens the envelope, so random bytes stand in.
    queue: async (account) => {
      const changeId = randomBytes(16);
      const id = changeId.toString('hex');
      await b.publish(deliverSubject(token), encodeQueuedChange({
        changeId, domain: 'corp.example', sourceDc: 'dc1', changeTimeMs: Date.now(), sealedPassword: randomBytes(180),
        account: { samAccountName: account, objectGuid: '', objectSid: '', userPrincipalName: '', distinguishedName: '' },
      }), { msgId: deliverMsgId(id, token) });
      return id;
    },
    pending: async () => (await consumer.info()).pending,
  };
}

function options(s: Setup, name: string, over: Partial<DeliveryOptions> = {}, target: Partial<DeliveryOptions['target']> = {}): DeliveryOptions {
  return {
    broker: s.broker, channel: s.hub, notifierId: 'dc1', warnAgeMs: 3_600_000, maxAgeMs: 72 * 3_600_000, log: s.log.log,
    fetchWaitMs: 200,
    target: { name, token: subjectToken(name), batchSize: 10, retryIntervalMs: 100, maxRetryIntervalMs: 400, timeoutMs: 5000, ...target },
    ...over,
  };
}

test('backoff doubles per consecutive failure up to the maximum', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 40].map((n) => backoffMs(n, 200, 1000)), [200, 400, 800, 1000, 1000, 1000]);
});

test('changes go out in queue order, in batches of at most batchSize, and leave the queue', async () => {
  const s = await setup('hub1');
  const ids: string[] = [];
  for (let i = 0; i < 25; i++) ids.push(await s.queue(`user${i % 3}`));
  const d = await deliver(options(s, 'hub1'));
  await waitFor('all 25 accepted', () => s.hub.accepted.length === 25);
  await d.stop();
  assert.deepEqual(s.hub.accepted, ids);
  assert.ok(s.hub.calls.every((c) => c.length <= 10));
  assert.equal(await s.pending(), 0);
  await s.broker.close();
});

test('while the hub is down the failed batch is retried first, with backoff, and order holds when it comes back', async () => {
  const s = await setup('hub1');
  s.hub.down = true;
  const ids = [await s.queue('alice'), await s.queue('bob'), await s.queue('alice')];
  const d = await deliver(options(s, 'hub1', {}, { batchSize: 2 }));
  await waitFor('four failed calls', () => s.hub.calls.length >= 4);
  ids.push(await s.queue('alice'), await s.queue('carol'));
  await waitFor('two more failed calls', () => s.hub.calls.length >= 6);
  // Every call while down is the same oldest batch: nothing newer overtakes it.
  assert.ok(s.hub.calls.every((c) => c.join() === ids.slice(0, 2).join()), JSON.stringify(s.hub.calls));
  const failures = s.log.events(6943);
  assert.deepEqual(failures.slice(0, 4).map((l) => l.retryInMs), [100, 200, 400, 400]);
  assert.equal(failures[0]!.level, WARN, 'the first failure is a warning');
  assert.ok(failures.slice(1).every((l) => l.level < WARN), 'repeats within a minute are not warnings');
  assert.equal(failures[0]!.retryable, true);

  s.hub.down = false;
  await waitFor('all five accepted', () => s.hub.accepted.length === 5);
  assert.deepEqual(s.hub.accepted, ids);
  assert.ok(s.log.lines.some((l) => l.msg === 'delivery to the target resumed'));
  assert.equal(await s.pending(), 0);

  // Success reset the backoff: the next failure waits the first interval again.
  s.hub.down = true;
  const before = s.log.events(6943).length;
  await s.queue('dave');
  await waitFor('a new failure', () => s.log.events(6943).length > before);
  assert.equal(s.log.events(6943)[before]!.retryInMs, 100);
  assert.equal(s.log.events(6943)[before]!.level, WARN);
  await d.stop();
  await s.broker.close();
});

test('a batch refused as too large is split and sent in order, in smaller batches from then on', async () => {
  const s = await setup('hub1');
  s.hub.maxBatch = 3;
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) ids.push(await s.queue(`user${i % 2}`));
  const d = await deliver(options(s, 'hub1', {}, { retryIntervalMs: 20, maxRetryIntervalMs: 20 }));
  await waitFor('all twelve accepted', () => s.hub.accepted.length === 12);
  await d.stop();
  assert.deepEqual(s.hub.accepted, ids);
  assert.deepEqual(s.hub.calls.map((c) => c.length), [10, 5, 2, 2, 2, 2, 2, 2]);
  assert.deepEqual(s.hub.calls.flat().filter((_, i, all) => all.indexOf(_) === i), ids);
});

test('a REJECTED change is terminated with event 6946 and never resent; the rest of its batch is accepted', async () => {
  const s = await setup('hub1');
  const ids = [await s.queue('alice'), await s.queue('bob'), await s.queue('carol')];
  s.hub.reject.set(ids[1]!, 'sealed for key id 00ff…, this hub holds 1234…');
  const d = await deliver(options(s, 'hub1'));
  await waitFor('the queue drained', async () => (await s.pending()) === 0);
  await d.stop();
  assert.deepEqual(s.hub.accepted, [ids[0], ids[2]]);
  assert.equal(s.hub.calls.length, 1);
  const [rejected] = s.log.events(6946);
  assert.equal(rejected!.changeId, ids[1]);
  assert.equal(rejected!.account, 'bob');
  assert.match(String(rejected!.reason), /sealed for key id/);
  await s.broker.close();
});

test('a change the hub did not acknowledge is sent again, before anything newer', async () => {
  const s = await setup('hub1');
  const ids = [await s.queue('alice'), await s.queue('bob')];
  s.hub.omit.add(ids[0]!);
  const d = await deliver(options(s, 'hub1'));
  await waitFor('both accepted', () => s.hub.accepted.length === 2);
  await d.stop();
  assert.deepEqual(s.hub.calls, [ids, [ids[0]]]);
  assert.equal(s.log.events(6943).length, 1);
  assert.equal(await s.pending(), 0);
  await s.broker.close();
});

test('a change older than maxAge is dropped with event 6945 and never sent', async () => {
  const s = await setup('hub1');
  const old = await s.queue('alice');
  let skew = 0;
  s.hub.down = true;
  const d = await deliver(options(s, 'hub1', { maxAgeMs: 60_000, now: () => Date.now() + skew }));
  await waitFor('a failed call', () => s.hub.calls.length >= 1);
  skew = 120_000;
  s.hub.down = false;
  await waitFor('the change expired', () => s.log.events(6945).length === 1);
  skew = 0;
  const fresh = await s.queue('bob');
  await waitFor('the fresh change accepted', () => s.hub.accepted.length === 1);
  await d.stop();
  assert.deepEqual(s.hub.accepted, [fresh]);
  const [expired] = s.log.events(6945);
  assert.equal(expired!.changeId, old);
  assert.equal(expired!.account, 'alice');
  assert.equal(expired!.domain, 'corp.example');
  assert.equal(await s.pending(), 0);
  await s.broker.close();
});

test('event 6944 is logged once when the oldest change crosses warnAge, and again only after recovery', async () => {
  const s = await setup('hub1');
  s.hub.down = true;
  await s.queue('alice');
  const d = await deliver(options(s, 'hub1', { warnAgeMs: 300 }, { retryIntervalMs: 200, maxRetryIntervalMs: 200 }));
  const warning = await waitFor('event 6944', () => s.log.events(6944)[0], 5000);
  assert.equal(warning.target, 'hub1');
  assert.equal(warning.pending, 1);
  assert.ok(Number(warning.oldestAgeMs) > 300);
  // Two more checks (one per second at this warnAge) while still over: no second warning.
  const checksBefore = s.hub.calls.length;
  await new Promise((r) => setTimeout(r, 2200));
  assert.ok(s.hub.calls.length > checksBefore);
  assert.equal(s.log.events(6944).length, 1);
  s.hub.down = false;
  await waitFor('back under the warning age', () => s.log.lines.some((l) => l.msg === 'the queue is back under its warning age'), 5000);
  await d.stop();
  await s.broker.close();
});

test('two targets are fed independently: one down does not hold back the other', async () => {
  const broker = openSqliteBroker({ file: join(tempDir(), 'notifier.db') });
  cleanup.unshift(() => broker.close());
  const down = await setup('hub-down', broker);
  const up = await setup('hub-up', broker);
  down.hub.down = true;
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) {
    await down.queue(`user${i}`);
    ids.push(await up.queue(`user${i}`));
  }
  const d1 = await deliver(options(down, 'hub-down', {}, { retryIntervalMs: 2000, maxRetryIntervalMs: 2000, batchSize: 2 }));
  const d2 = await deliver(options(up, 'hub-up', {}, { batchSize: 2 }));
  await waitFor('the up target got everything', () => up.hub.accepted.length === 6);
  assert.deepEqual(up.hub.accepted, ids);
  assert.equal(await up.pending(), 0);
  assert.equal(await down.pending(), 6);
  assert.equal(down.hub.accepted.length, 0);
  await Promise.all([d1.stop(), d2.stop()]);
  await broker.close();
});

test('stop lets the call in flight finish and records its outcome', async () => {
  const s = await setup('hub1');
  s.hub.delayMs = 400;
  const id = await s.queue('alice');
  const d = await deliver(options(s, 'hub1'));
  await waitFor('the call started', () => s.hub.calls.length === 1);
  await d.stop();
  assert.deepEqual(s.hub.accepted, [id]);
  assert.equal(await s.pending(), 0);
  assert.equal(s.hub.calls.length, 1);
  await s.broker.close();
});
