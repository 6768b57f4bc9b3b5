/**
 * The Broker contract (core/broker.ts) as node:test tests, written against the interface only so
 * that the embedded SQLite broker and the NATS JetStream one pass the same suite.
 *
 * Every test uses its own subjects, consumer names and buckets (a random namespace), so an
 * implementation may hand several tests the same underlying server or stream.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { KvConflictError, type Broker, type Consumer, type Delivery } from '../../core/broker.ts';

/** Opens the store `closed` (already closed) used, again: a restart. The durability tests need it. */
export type ReopenBroker = (closed: Broker) => Promise<Broker>;

/** Generous bound for anything that should happen "soon"; a test fails rather than hangs. */
const SOON_MS = 5_000;
/** A wait long enough that something that is not coming would have come in any sane broker. */
const QUIET_MS = 300;
/** Timer granularity a broker's clock may round by when checking "not sooner than". */
const CLOCK_SLACK_MS = 15;
const TEST = { timeout: 30_000 };

/**
 * `open` gives a broker on a fresh, empty store (or a shared one: tests keep to their own names);
 * without `reopen`, the restart tests are skipped.
 */
export function brokerContract(name: string, open: () => Promise<Broker>, reopen?: ReopenBroker): void {
  describe(`Broker contract: ${name}`, () => {
    /** Runs `fn` with a fresh broker and namespace, closing the broker however the test ends. */
    const withBroker = (fn: (b: Broker, ns: string) => Promise<void>) => async () => {
      const b = await open();
      try {
        await fn(b, `t${randomBytes(6).toString('hex')}`);
      } finally {
        await b.close();
      }
    };

    test('publish stores a message; a repeated msgId is a duplicate with the original seq', TEST, withBroker(async (b, ns) => {
      const first = await b.publish(`${ns}.a`, Buffer.from('one'), { msgId: `${ns}-1` });
      const second = await b.publish(`${ns}.a`, Buffer.from('two'), { msgId: `${ns}-2` });
      assert.equal(first.duplicate, false);
      assert.equal(second.duplicate, false);
      assert.ok(second.seq > first.seq, 'seq increases');
      const again = await b.publish(`${ns}.a`, Buffer.from('one again'), { msgId: `${ns}-1` });
      assert.deepEqual(again, { seq: first.seq, duplicate: true });
      const got = await drain(await b.consumer(`${ns}c`, `${ns}.>`));
      assert.deepEqual(got.map((d) => d.data.toString()), ['one', 'two']);
    }));

    test('two publishes with one msgId issued together store one message', TEST, withBroker(async (b, ns) => {
      const acks = await Promise.all([1, 2, 3].map((i) =>
        b.publish(`${ns}.a`, Buffer.from(`copy ${i}`), { msgId: `${ns}-same` })));
      assert.equal(acks.filter((a) => !a.duplicate).length, 1);
      assert.equal(new Set(acks.map((a) => a.seq)).size, 1, 'duplicates report the original seq');
      const got = await drain(await b.consumer(`${ns}c`, `${ns}.>`));
      assert.equal(got.length, 1);
    }));

    test('a delivery carries subject, msgId, seq, bytes and publish time', TEST, withBroker(async (b, ns) => {
      const data = Buffer.from([0, 1, 2, 255, 0, 0x80, 0x7f]);
      const before = Date.now();
      const ack = await b.publish(`${ns}.x.y`, data, { msgId: `${ns}-bytes` });
      const c = await b.consumer(`${ns}c`, `${ns}.>`);
      const [d] = await c.fetch({ max: 10, expiresMs: SOON_MS });
      assert.ok(d);
      assert.equal(d.subject, `${ns}.x.y`);
      assert.equal(d.msgId, `${ns}-bytes`);
      assert.equal(d.seq, ack.seq);
      assert.ok(Buffer.isBuffer(d.data));
      assert.deepEqual([...d.data], [...data]);
      assert.equal(d.deliveryCount, 1);
      assert.ok(d.publishedAt >= before - 1000 && d.publishedAt <= Date.now() + 1000, 'publish time is now-ish');
      await d.ack();
    }));

    test('a publish stores a copy: the caller may zero its buffer at once', TEST, withBroker(async (b, ns) => {
      const buf = Buffer.from('sealed envelope bytes');
      const publishing = b.publish(`${ns}.a`, buf, { msgId: `${ns}-copy` });
      buf.fill(0);
      await publishing;
      const [d] = await drain(await b.consumer(`${ns}c`, `${ns}.>`));
      assert.equal(d?.data.toString(), 'sealed envelope bytes');
    }));

    test('a consumer gets messages stored before it was created and after, oldest first', TEST, withBroker(async (b, ns) => {
      for (let i = 0; i < 3; i++) await b.publish(`${ns}.a`, Buffer.from(`early ${i}`), { msgId: `${ns}-e${i}` });
      const c = await b.consumer(`${ns}c`, `${ns}.>`);
      for (let i = 0; i < 3; i++) await b.publish(`${ns}.a`, Buffer.from(`late ${i}`), { msgId: `${ns}-l${i}` });
      const got = await drain(c);
      assert.deepEqual(got.map((d) => d.data.toString()),
        ['early 0', 'early 1', 'early 2', 'late 0', 'late 1', 'late 2']);
      assert.deepEqual(got.map((d) => d.seq), [...got.map((d) => d.seq)].sort((x, y) => x - y));
    }));

    test('fetch returns at most max, and an empty array when nothing comes', TEST, withBroker(async (b, ns) => {
      const c = await b.consumer(`${ns}c`, `${ns}.>`);
      assert.deepEqual(await c.fetch({ max: 5, expiresMs: 50 }), []);
      for (let i = 0; i < 5; i++) await b.publish(`${ns}.a`, Buffer.from(`m${i}`), { msgId: `${ns}-${i}` });
      const first = await c.fetch({ max: 2, expiresMs: SOON_MS });
      assert.equal(first.length, 2);
      const rest = await drainInto(c, 3);
      assert.deepEqual([...first, ...rest].map((d) => d.data.toString()), ['m0', 'm1', 'm2', 'm3', 'm4']);
      for (const d of [...first, ...rest]) await d.ack();
    }));

    test('a waiting fetch is woken by a publish', TEST, withBroker(async (b, ns) => {
      const c = await b.consumer(`${ns}c`, `${ns}.>`);
      const waiting = c.fetch({ max: 1, expiresMs: 10_000 });
      await sleep(50);
      await b.publish(`${ns}.a`, Buffer.from('wake'), { msgId: `${ns}-w` });
      const got = await waiting;
      assert.equal(got.length, 1);
      assert.equal(got[0]!.data.toString(), 'wake');
      await got[0]!.ack();
    }));

    test('an aborted fetch resolves empty', TEST, withBroker(async (b, ns) => {
      const c = await b.consumer(`${ns}c`, `${ns}.>`);
      const ac = new AbortController();
      const waiting = c.fetch({ max: 1, expiresMs: 20_000, signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      assert.deepEqual(await waiting, []);
    }));

    test('an acknowledged message is not delivered again and no longer pending', TEST, withBroker(async (b, ns) => {
      const c = await b.consumer(`${ns}c`, `${ns}.>`, { ackWaitMs: 200 });
      await b.publish(`${ns}.a`, Buffer.from('a'), { msgId: `${ns}-a` });
      await b.publish(`${ns}.a`, Buffer.from('b'), { msgId: `${ns}-b` });
      const got = await drainInto(c, 2);
      await got[0]!.ack();
      assert.equal((await c.info()).pending, 1);
      await got[1]!.ack();
      assert.equal((await c.info()).pending, 0);
      assert.deepEqual(await c.fetch({ max: 10, expiresMs: 200 + QUIET_MS }), [], 'nothing after the ack wait');
    }));

    test('retryAfter redelivers no sooner than the delay, counting the delivery', TEST, withBroker(async (b, ns) => {
      const c = await b.consumer(`${ns}c`, `${ns}.>`);
      await b.publish(`${ns}.a`, Buffer.from('r'), { msgId: `${ns}-r` });
      const [d] = await c.fetch({ max: 1, expiresMs: SOON_MS });
      assert.ok(d);
      const delay = 400;
      const asked = Date.now();
      await d.retryAfter(delay);
      const [again] = await c.fetch({ max: 1, expiresMs: SOON_MS });
      assert.ok(again, 'redelivered');
      assert.ok(Date.now() - asked >= delay - CLOCK_SLACK_MS, `redelivered after ${Date.now() - asked} ms, asked ${delay}`);
      assert.equal(again.seq, d.seq);
      assert.equal(again.deliveryCount, 2);
      await again.ack();
    }));

    test('retried messages that are due come back in seq order', TEST, withBroker(async (b, ns) => {
      const c = await b.consumer(`${ns}c`, `${ns}.>`);
      for (let i = 0; i < 4; i++) await b.publish(`${ns}.a`, Buffer.from(`m${i}`), { msgId: `${ns}-${i}` });
      const got = await drainInto(c, 4);
      // Retried in reverse order, with the later seqs due first: order must still be by seq.
      await got[3]!.retryAfter(100);
      await got[2]!.retryAfter(150);
      await got[1]!.ack();
      await got[0]!.retryAfter(200);
      await sleep(200 + QUIET_MS);
      const again = await drainInto(c, 3);
      assert.deepEqual(again.map((d) => d.data.toString()), ['m0', 'm2', 'm3']);
      for (const d of again) await d.ack();
    }));

    test('a message not yet due is not delivered before one that is', TEST, withBroker(async (b, ns) => {
      const c = await b.consumer(`${ns}c`, `${ns}.>`);
      await b.publish(`${ns}.a`, Buffer.from('old'), { msgId: `${ns}-old` });
      const [old] = await c.fetch({ max: 1, expiresMs: SOON_MS });
      await old!.retryAfter(60_000);
      await b.publish(`${ns}.a`, Buffer.from('new'), { msgId: `${ns}-new` });
      const got = await c.fetch({ max: 10, expiresMs: SOON_MS });
      assert.deepEqual(got.map((d) => d.data.toString()), ['new']);
      assert.equal((await c.info()).pending, 2, 'the delayed one is still pending');
      await got[0]!.ack();
      await old!.terminate();
    }));

    test('terminate drops a message for good', TEST, withBroker(async (b, ns) => {
      const c = await b.consumer(`${ns}c`, `${ns}.>`, { ackWaitMs: 200 });
      await b.publish(`${ns}.a`, Buffer.from('t'), { msgId: `${ns}-t` });
      const [d] = await c.fetch({ max: 1, expiresMs: SOON_MS });
      await d!.terminate();
      assert.equal((await c.info()).pending, 0);
      assert.deepEqual(await c.fetch({ max: 1, expiresMs: 200 + QUIET_MS }), []);
    }));

    test('a delivery not acknowledged within ackWait is delivered again', TEST, withBroker(async (b, ns) => {
      const c = await b.consumer(`${ns}c`, `${ns}.>`, { ackWaitMs: 200 });
      await b.publish(`${ns}.a`, Buffer.from('lease'), { msgId: `${ns}-l` });
      const [d] = await c.fetch({ max: 1, expiresMs: SOON_MS });
      assert.equal(d!.deliveryCount, 1);
      const [again] = await c.fetch({ max: 1, expiresMs: SOON_MS });
      assert.ok(again, 'redelivered after the lease ran out');
      assert.equal(again.seq, d!.seq);
      assert.equal(again.deliveryCount, 2);
      const [third] = await c.fetch({ max: 1, expiresMs: SOON_MS });
      assert.equal(third?.deliveryCount, 3);
      await third!.ack();
      assert.deepEqual(await c.fetch({ max: 1, expiresMs: 200 + QUIET_MS }), []);
    }));

    test('working() keeps a long delivery from being redelivered', TEST, withBroker(async (b, ns) => {
      const ackWaitMs = 1000;
      const c = await b.consumer(`${ns}c`, `${ns}.>`, { ackWaitMs });
      await b.publish(`${ns}.a`, Buffer.from('slow'), { msgId: `${ns}-s` });
      const [d] = await c.fetch({ max: 1, expiresMs: SOON_MS });
      let stop = false;
      const heartbeat = (async () => {
        while (!stop) {
          await d!.working();
          await sleep(ackWaitMs / 5);
        }
      })();
      try {
        assert.deepEqual(await c.fetch({ max: 1, expiresMs: ackWaitMs * 2 }), [], 'no redelivery while working');
      } finally {
        stop = true;
        await heartbeat;
      }
      const [again] = await c.fetch({ max: 1, expiresMs: SOON_MS });
      assert.equal(again?.deliveryCount, 2, 'redelivered once the heartbeat stopped');
      await again!.ack();
    }));

    test('filters: * matches one token, > one or more, plain tokens exactly', TEST, withBroker(async (b, ns) => {
      const subjects = ['a.b.c', 'a.x.c', 'a.b', 'a.b.c.d', 'z.b.c'];
      const one = await b.consumer(`${ns}one`, `${ns}.a.*.c`);
      const many = await b.consumer(`${ns}many`, `${ns}.a.>`);
      const exact = await b.consumer(`${ns}exact`, `${ns}.a.b`);
      for (const s of subjects) await b.publish(`${ns}.${s}`, Buffer.from(s), { msgId: `${ns}-${s}` });
      const names = async (c: Consumer) => (await drain(c)).map((d) => d.data.toString());
      assert.deepEqual(await names(one), ['a.b.c', 'a.x.c']);
      assert.deepEqual(await names(many), ['a.b.c', 'a.x.c', 'a.b', 'a.b.c.d']);
      assert.deepEqual(await names(exact), ['a.b']);
    }));

    test('two consumers on overlapping filters each get every message', TEST, withBroker(async (b, ns) => {
      const all = await b.consumer(`${ns}all`, `${ns}.>`);
      const ops = await b.consumer(`${ns}ops`, `${ns}.ops.*`);
      for (let i = 0; i < 5; i++) await b.publish(`${ns}.ops.t${i}`, Buffer.from(`o${i}`), { msgId: `${ns}-o${i}` });
      await b.publish(`${ns}.changes.x`, Buffer.from('c'), { msgId: `${ns}-c` });
      const fromOps = await drain(ops);
      assert.deepEqual(fromOps.map((d) => d.data.toString()), ['o0', 'o1', 'o2', 'o3', 'o4']);
      assert.equal((await ops.info()).pending, 0);
      assert.equal((await all.info()).pending, 6, "one consumer's acks do not touch the other");
      assert.deepEqual((await drain(all)).map((d) => d.data.toString()), ['o0', 'o1', 'o2', 'o3', 'o4', 'c']);
    }));

    test('consumer() twice with the same name is the same durable consumer', TEST, withBroker(async (b, ns) => {
      const c1 = await b.consumer(`${ns}c`, `${ns}.>`);
      await b.publish(`${ns}.a`, Buffer.from('1'), { msgId: `${ns}-1` });
      await b.publish(`${ns}.a`, Buffer.from('2'), { msgId: `${ns}-2` });
      const [d] = await c1.fetch({ max: 1, expiresMs: SOON_MS });
      await d!.ack();
      const c2 = await b.consumer(`${ns}c`, `${ns}.>`);
      assert.deepEqual((await drain(c2)).map((x) => x.data.toString()), ['2']);
    }));

    test('info: pending count and the oldest pending publish time', TEST, withBroker(async (b, ns) => {
      const c = await b.consumer(`${ns}c`, `${ns}.>`);
      const empty = await c.info();
      assert.equal(empty.pending, 0);
      assert.equal(empty.oldestPublishedAt, undefined);
      for (let i = 0; i < 3; i++) {
        await b.publish(`${ns}.a`, Buffer.from(`m${i}`), { msgId: `${ns}-${i}` });
        await sleep(20);
      }
      const got = await drainInto(c, 3);
      const info = await c.info();
      assert.equal(info.pending, 3, 'delivered but unacknowledged still counts');
      assert.equal(info.oldestPublishedAt, got[0]!.publishedAt);
      await got[0]!.ack();
      const later = await c.info();
      assert.equal(later.pending, 2);
      assert.equal(later.oldestPublishedAt, got[1]!.publishedAt);
      for (const d of got.slice(1)) await d.ack();
    }));

    test('KV: create refuses an existing key; update needs the current revision', TEST, withBroker(async (b, ns) => {
      const kv = await b.kv(`${ns}kv`);
      const r1 = await kv.create('joe', Buffer.from('v1'));
      await assert.rejects(kv.create('joe', Buffer.from('again')), KvConflictError);
      const r2 = await kv.update('joe', Buffer.from('v2'), r1);
      assert.ok(r2 > r1, 'revision increases');
      await assert.rejects(kv.update('joe', Buffer.from('stale'), r1), (e: unknown) =>
        e instanceof KvConflictError && e.key === 'joe');
      await assert.rejects(kv.update('nobody', Buffer.from('x'), 1), KvConflictError);
      const e = await kv.get('joe');
      assert.equal(e?.value.toString(), 'v2');
      assert.equal(e?.revision, r2);
      assert.equal(e?.key, 'joe');
      assert.equal(await kv.get('nobody'), undefined);
    }));

    test('KV: put overwrites, revisions increase across keys, delete removes', TEST, withBroker(async (b, ns) => {
      const kv = await b.kv(`${ns}kv`);
      const revs = [
        await kv.put('a', Buffer.from('1')),
        await kv.put('b', Buffer.from('2')),
        await kv.put('a', Buffer.from('3')),
      ];
      assert.ok(revs[0]! < revs[1]! && revs[1]! < revs[2]!, `revisions ${revs.join(',')} increase`);
      assert.equal((await kv.get('a'))?.value.toString(), '3');
      await kv.delete('a');
      assert.equal(await kv.get('a'), undefined);
      await kv.delete('never-there');
      const again = await kv.create('a', Buffer.from('4'));
      assert.ok(again > revs[2]!, 'a deleted key can be created again, at a newer revision');
    }));

    test('KV: concurrent creates of one key: exactly one wins', TEST, withBroker(async (b, ns) => {
      const kv = await b.kv(`${ns}kv`);
      const results = await Promise.allSettled([1, 2, 3, 4].map((i) => kv.create('race', Buffer.from(`w${i}`))));
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof KvConflictError);
    }));

    test('KV: concurrent updates of one revision: exactly one wins, and its value is the one kept', TEST, withBroker(async (b, ns) => {
      const kv = await b.kv(`${ns}kv`);
      for (let round = 0; round < 5; round++) {
        const key = `obj.${round}`;
        const r0 = await kv.create(key, Buffer.from('v0'));
        const results = await Promise.allSettled([1, 2, 3, 4].map((i) => kv.update(key, Buffer.from(`v${i}`), r0)));
        const won = results.flatMap((r, i) => r.status === 'fulfilled' ? [{ i: i + 1, revision: r.value }] : []);
        assert.equal(won.length, 1, `round ${round}: ${won.length} updates of revision ${r0} succeeded`);
        for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof KvConflictError);
        const now = await kv.get(key);
        assert.deepEqual([now?.value.toString(), now?.revision], [`v${won[0]!.i}`, won[0]!.revision]);
      }
    }));

    test('KV: putMany writes a batch with a compare-and-set per entry, and answers each revision in order', TEST, withBroker(async (b, ns) => {
      const kv = await b.kv(`${ns}kv`);
      const r0 = await kv.put('old', Buffer.from('o1'));
      const revs = await kv.putMany([
        { key: 'new', value: Buffer.from('n1'), revision: 0 },
        { key: 'old', value: Buffer.from('o2'), revision: r0 },
        { key: 'any', value: Buffer.from('a1') },
      ]);
      assert.equal(revs.length, 3);
      assert.equal(new Set(revs).size, 3, 'one revision per entry');
      assert.ok(revs.every((r) => r > r0), 'revisions increase');
      for (const [i, [key, value]] of [['new', 'n1'], ['old', 'o2'], ['any', 'a1']].entries()) {
        const e = await kv.get(key!);
        assert.deepEqual([e?.value.toString(), e?.revision], [value, revs[i]]);
      }
      assert.deepEqual(await kv.putMany([]), []);
      await assert.rejects(kv.putMany([{ key: 'k', value: Buffer.from('1') }, { key: 'k', value: Buffer.from('2') }]), /appears twice in one putMany/);
      await assert.rejects(kv.putMany([{ key: '', value: Buffer.from('1') }]), /non-empty string/);
      await assert.rejects(kv.putMany([{ key: 'k', value: Buffer.from('1'), revision: -1 }]), /revision of key "k" must be a whole number/);
    }));

    test('KV: putMany with a lost compare-and-set throws KvConflictError naming its key; read again, the batch is retried to completion', TEST, withBroker(async (b, ns) => {
      const kv = await b.kv(`${ns}kv`);
      const taken = await kv.create('k500', Buffer.from('someone else'));
      const batch = (n: number) => Array.from({ length: n }, (_, i) => `k${i}`);
      await assert.rejects(kv.putMany(batch(1000).map((key) => ({ key, value: Buffer.from(`mine ${key}`), revision: 0 }))),
        (e: unknown) => e instanceof KvConflictError && e.key === 'k500');
      // As a caller does after a conflict: read, decide again (here: overwrite what is there), write.
      const again = await Promise.all(batch(1000).map(async (key) => ({ key, value: Buffer.from(`mine ${key}`), revision: (await kv.get(key))?.revision ?? 0 })));
      assert.equal(again.find((w) => w.key === 'k500')!.revision, taken);
      await kv.putMany(again);
      assert.equal((await kv.keys('k')).length, 1000);
      assert.equal((await kv.get('k500'))?.value.toString(), 'mine k500');
      assert.equal((await kv.get('k999'))?.value.toString(), 'mine k999');
    }));

    test('KV: keys by prefix in key order; buckets are separate; any key text', TEST, withBroker(async (b, ns) => {
      const kv = await b.kv(`${ns}kv`);
      const other = await b.kv(`${ns}other`);
      const keys = ['obj/b', 'obj/a', 'join/x', 'obj/c', 'CN=Jo Smith,OU=Staff,DC=example,DC=com', 'joe@example.com'];
      for (const k of keys) await kv.put(k, Buffer.from(k));
      await other.put('obj/zzz', Buffer.from('elsewhere'));
      assert.deepEqual(await kv.keys('obj/'), ['obj/a', 'obj/b', 'obj/c']);
      assert.deepEqual(await kv.keys(), [...keys].sort());
      assert.deepEqual(await kv.keys('none/'), []);
      assert.deepEqual(await other.keys(), ['obj/zzz']);
      assert.equal(await other.get('obj/a'), undefined);
      const dn = await kv.get('CN=Jo Smith,OU=Staff,DC=example,DC=com');
      assert.equal(dn?.value.toString(), 'CN=Jo Smith,OU=Staff,DC=example,DC=com');
    }));

    test('KV: reads see this client\'s own writes at once', TEST, withBroker(async (b, ns) => {
      const kv = await b.kv(`${ns}kv`);
      const putting = kv.put('k', Buffer.from('mine'));
      const seen = await kv.get('k');
      assert.equal(seen?.value.toString(), 'mine');
      const deleting = kv.delete('k');
      assert.equal(await kv.get('k'), undefined);
      const creating = kv.create('k2', Buffer.from('v'));
      assert.deepEqual(await kv.keys(), ['k2']);
      await Promise.all([putting, deleting, creating]);
    }));

    test('KV: the stored value is a copy of the caller\'s buffer', TEST, withBroker(async (b, ns) => {
      const kv = await b.kv(`${ns}kv`);
      const buf = Buffer.from('original');
      const putting = kv.put('k', buf);
      buf.fill(0);
      await putting;
      assert.equal((await kv.get('k'))?.value.toString(), 'original');
    }));

    test('close: queued writes are kept; later calls reject', TEST, async () => {
      const b = await open();
      const ns = `t${randomBytes(6).toString('hex')}`;
      const c = await b.consumer(`${ns}c`, `${ns}.>`);
      const kv = await b.kv(`${ns}kv`);
      const publishing = b.publish(`${ns}.a`, Buffer.from('last'), { msgId: `${ns}-last` });
      await b.close();
      assert.equal((await publishing).duplicate, false, 'a publish issued before close() completes');
      await assert.rejects(b.publish(`${ns}.a`, Buffer.from('x'), { msgId: `${ns}-x` }), /closed/);
      await assert.rejects(c.fetch({ max: 1, expiresMs: 10 }), /closed/);
      await assert.rejects(kv.get('k'), /closed/);
      await assert.rejects(b.kv(`${ns}kv`), /closed/);
      await b.close();
      if (!reopen) return;
      const b2 = await reopen(b);
      try {
        const got = await drain(await b2.consumer(`${ns}c`, `${ns}.>`));
        assert.deepEqual(got.map((d) => d.data.toString()), ['last']);
      } finally {
        await b2.close();
      }
    });

    test('durability: consumer position, pending deliveries, KV and dedupe survive a restart', {
      ...TEST, skip: reopen ? false : 'no reopen given',
    }, async () => {
      const ns = `t${randomBytes(6).toString('hex')}`;
      const b = await open();
      let first: PublishResult;
      try {
        const c = await b.consumer(`${ns}c`, `${ns}.>`, { ackWaitMs: 200 });
        first = await b.publish(`${ns}.a`, Buffer.from('m0'), { msgId: `${ns}-0` });
        for (let i = 1; i < 4; i++) await b.publish(`${ns}.a`, Buffer.from(`m${i}`), { msgId: `${ns}-${i}` });
        const got = await drainInto(c, 4);
        await got[0]!.ack();
        await got[2]!.terminate();
        await (await b.kv(`${ns}kv`)).put('k', Buffer.from('kept'));
      } finally {
        await b.close();
      }
      const b2 = await reopen!(b);
      try {
        const c = await b2.consumer(`${ns}c`, `${ns}.>`, { ackWaitMs: 200 });
        await b2.publish(`${ns}.a`, Buffer.from('m4'), { msgId: `${ns}-4` });
        assert.deepEqual(await b2.publish(`${ns}.a`, Buffer.from('dup'), { msgId: `${ns}-0` }),
          { seq: first.seq, duplicate: true }, 'dedupe survives');
        const got = await drain(c);
        assert.deepEqual(got.map((d) => d.data.toString()), ['m1', 'm3', 'm4']);
        assert.deepEqual(got.map((d) => d.deliveryCount), [2, 2, 1], 'redelivery after restart is counted');
        assert.equal((await (await b2.kv(`${ns}kv`)).get('k'))?.value.toString(), 'kept');
      } finally {
        await b2.close();
      }
    });
  });
}

type PublishResult = Awaited<ReturnType<Broker['publish']>>;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Fetches exactly `n` deliveries, unacknowledged; fails if they do not come soon. */
async function drainInto(c: Consumer, n: number): Promise<Delivery[]> {
  const out: Delivery[] = [];
  const deadline = Date.now() + SOON_MS;
  while (out.length < n && Date.now() < deadline) {
    out.push(...await c.fetch({ max: n - out.length, expiresMs: Math.max(1, deadline - Date.now()) }));
  }
  assert.equal(out.length, n, `expected ${n} deliveries, got ${out.length}`);
  return out;
}

/** Everything the consumer has now, each acknowledged: fetches until a quiet period passes. */
async function drain(c: Consumer): Promise<Delivery[]> {
  const out: Delivery[] = [];
  for (let round = 0; round < 1000; round++) {
    const got = await c.fetch({ max: 100, expiresMs: QUIET_MS });
    if (got.length === 0) return out;
    for (const d of got) await d.ack();
    out.push(...got);
  }
  throw new Error('drain: the consumer never ran dry');
}
