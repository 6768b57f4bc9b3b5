import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { KvConflictError, type Broker, type Delivery } from '../../core/broker.ts';
import { openNatsBroker, type NatsBroker, type NatsBrokerOptions } from '../../core/broker-nats.ts';
import { PwsyncError } from '../../core/errors.ts';
import { generateKeyPairSync } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { initBroker } from '../../cli/broker.ts';
import { keyringOf, open as openEnvelope, privateRecipientFromPem, seal } from '../../core/envelope.ts';
import { Secret } from '../../core/secret.ts';
import { HUB_HEAD, csvConnector, write } from '../config/helpers.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';
import { scanTree } from '../lib/scan.ts';
import { startNatsCluster, type NatsCluster } from '../lib/nats.ts';
import { brokerContract } from './contract.ts';

/**
 * The Broker contract and JetStream's own cases against a real 3-node nats-server 2.9.10 cluster
 * (R3 streams and buckets), started once for this file by test/env/nats.sh.
 */
let cluster: NatsCluster;

before(async () => {
  cluster = await startNatsCluster({ nodes: 3 });
}, { timeout: 90_000 });

after(async () => {
  await cluster?.stop();
});

function options(extra: Partial<NatsBrokerOptions> = {}): NatsBrokerOptions {
  return {
    servers: cluster.urls,
    tls: { ca: cluster.ca },
    user: 'pwsync',
    password: cluster.password(),
    replicas: 3,
    create: true,
    requestTimeoutMs: 3000,
    ...extra,
  };
}

const open = (extra: Partial<NatsBrokerOptions> = {}): Promise<NatsBroker> => openNatsBroker(options(extra));

// Each broker is a new connection to the same cluster: reopening is connecting again.
brokerContract('NATS JetStream, 3 nodes, R3', () => open(), () => open());

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

const ns = (): string => `j${randomBytes(5).toString('hex')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Fetches and acks until nothing has come for `quietMs`; bounded. */
async function drainAll(c: Awaited<ReturnType<Broker['consumer']>>, quietMs = 1500): Promise<Delivery[]> {
  const out: Delivery[] = [];
  for (let round = 0; round < 5000; round++) {
    const got = await c.fetch({ max: 200, expiresMs: quietMs });
    if (got.length === 0) return out;
    await Promise.all(got.map((d) => d.ack()));
    out.push(...got);
  }
  throw new Error('drainAll: the consumer never ran dry');
}

describe('NATS JetStream broker', () => {
  test('dedupe holds beyond JetStream\'s duplicate window (the seen marker)', { timeout: 60_000 }, async () => {
    const b = await open({ duplicateWindowMs: 500 });
    try {
      const t = ns();
      const first = await b.publish(`${t}.a`, Buffer.from('one'), { msgId: `${t}-late` });
      await sleep(1500);
      // The window alone no longer knows the id: a raw publish with it is stored again …
      const raw = await jetstream(b.nc).publish(`pwsync.${t}.a`, 'raw', { msgID: `${t}-raw` });
      await sleep(1500);
      const rawAgain = await jetstream(b.nc).publish(`pwsync.${t}.a`, 'raw again', { msgID: `${t}-raw` });
      assert.equal(rawAgain.duplicate, false, 'past the window, JetStream itself stores an id again');
      assert.ok(rawAgain.seq > raw.seq);
      // … but the broker still answers duplicate, with the original seq, and stores nothing.
      const again = await b.publish(`${t}.a`, Buffer.from('one, resent hours later'), { msgId: `${t}-late` });
      assert.deepEqual(again, { seq: first.seq, duplicate: true });
      const got = await drainAll(await b.consumer(`${t}c`, `${t}.a`), 500);
      assert.deepEqual(got.map((d) => d.data.toString()), ['one', 'raw', 'raw again']);
    } finally {
      await b.close();
    }
  });

  test('KV compare-and-set under two concurrent writers on two connections: no update lost', { timeout: 120_000 }, async () => {
    const a = await open();
    const b = await open();
    try {
      const bucket = `${ns()}kv`;
      const kvs = [await a.kv(bucket), await b.kv(bucket)];
      await kvs[0]!.create('counter', Buffer.from('0'));
      let conflicts = 0;
      const writer = async (i: number): Promise<void> => {
        const kv = kvs[i % 2]!;
        for (let n = 0; n < 40; n++) {
          for (let attempt = 0; ; attempt++) {
            assert.ok(attempt < 500, 'a writer never got its update in');
            const cur = await kv.get('counter');
            try {
              await kv.update('counter', Buffer.from(String(Number(cur!.value.toString()) + 1)), cur!.revision);
              break;
            } catch (e) {
              if (!(e instanceof KvConflictError)) throw e;
              conflicts++;
            }
          }
        }
      };
      await Promise.all([0, 1, 2, 3].map(writer));
      assert.equal((await kvs[1]!.get('counter'))?.value.toString(), '160', 'every increment counted once');
      assert.ok(conflicts > 0, 'the writers did race (else this test proves nothing)');
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('a consumer survives kill -9 of the stream leader and its restart: nothing acknowledged is lost', { timeout: 180_000 }, async () => {
    const b = await open({ retryForMs: 60_000 });
    const t = ns();
    try {
      const c = await b.consumer(`${t}w`, `${t}.>`, { ackWaitMs: 5000 });
      const jsm = await jetstreamManager(b.nc);
      const stream = `pwsync_${t}`;
      const leader = (await jsm.streams.info(stream)).cluster?.leader;
      const victim = cluster.nodes.find((n) => `n${n.index}` === leader)?.index ?? 1;

      const total = 600;
      const acked = new Set<string>();
      const received = new Map<string, number>();
      let publishing = true;
      const publisher = (async () => {
        for (let i = 0; i < total; i++) {
          const id = `${t}-${i}`;
          await b.publish(`${t}.${i % 4}`, Buffer.from(`m${i}`), { msgId: id });
          acked.add(id);
        }
        publishing = false;
      })();
      const consumer = (async () => {
        const deadline = Date.now() + 150_000;
        while (Date.now() < deadline && (publishing || received.size < acked.size)) {
          let got: Delivery[];
          try {
            got = await c.fetch({ max: 50, expiresMs: 1000 });
          } catch (e) {
            assert.ok(e instanceof PwsyncError && e.retryable, `fetch failed with a non-retryable error: ${String(e)}`);
            await sleep(200);
            continue;
          }
          for (const d of got) {
            received.set(d.msgId, (received.get(d.msgId) ?? 0) + 1);
            try {
              await d.ack();
            } catch (e) {
              assert.ok(e instanceof PwsyncError && e.retryable, `ack failed with a non-retryable error: ${String(e)}`);
            }
          }
        }
      })();
      while (acked.size < 150) await sleep(20);
      await cluster.killNode(victim);
      while (publishing && acked.size < 400) await sleep(50);
      await cluster.startNode(victim);
      // A graceful restart of another node while it runs, too.
      const other = victim === 3 ? 2 : 3;
      await cluster.stopNode(other);
      await cluster.startNode(other);
      await publisher;
      await consumer;
      const lost = [...acked].filter((id) => !received.has(id));
      assert.deepEqual(lost, [], 'acknowledged publishes never delivered');
      assert.equal(acked.size, total);
      assert.equal(received.size, total, 'nothing delivered that was not published');
      // Deliveries continue after the failover: a new message comes through at once.
      await b.publish(`${t}.after`, Buffer.from('after'), { msgId: `${t}-after` });
      const [late] = await c.fetch({ max: 1, expiresMs: 10_000 });
      assert.equal(late?.msgId, `${t}-after`);
      await late!.ack();
    } finally {
      await b.close();
    }
  });

  test('broker init: creates streams, buckets and consumers once, then reports them as existing', { timeout: 60_000 }, async () => {
    const prefix = ns();
    const layout = { streams: ['changes', 'ops'], buckets: ['joins', 'latest'], consumers: [{ durable: 'resolver', filter: 'changes.>' }] };
    const plain = await open({ prefix, create: false });
    try {
      assert.deepEqual((await plain.missingFromLayout(layout)).sort(),
        [`kv bucket ${prefix}_joins`, `kv bucket ${prefix}_latest`, `kv bucket ${prefix}_seen-msgids`, `stream ${prefix}_changes`, `stream ${prefix}_ops`]);
      await assert.rejects(plain.publish('changes.corp', Buffer.from('x'), { msgId: 'x' }),
        (e: unknown) => e instanceof PwsyncError && e.eventId === 6971 && !e.retryable && /pwsync broker init/.test(e.message));
      await assert.rejects(plain.kv('joins'), /kv bucket .*_joins does not exist.*pwsync broker init/);
      const first = await plain.initLayout(layout);
      assert.equal(first.created.length, 6);
      assert.deepEqual(first.existing, []);
      assert.ok(first.created.some((l) => l.startsWith(`stream ${prefix}_changes`) && l.includes('R3')));
      const second = await plain.initLayout(layout);
      assert.deepEqual(second.created, []);
      assert.equal(second.existing.length, 6);
      assert.deepEqual(await plain.missingFromLayout(layout), []);
      const info = await (await jetstreamManager(plain.nc)).streams.info(`${prefix}_ops`);
      assert.equal(info.config.num_replicas, 3);
      assert.deepEqual(info.config.subjects, [`${prefix}.ops`, `${prefix}.ops.>`]);
      await plain.publish('changes.corp', Buffer.from('x'), { msgId: 'x' });
      const [d] = await (await plain.consumer('resolver', 'changes.>')).fetch({ max: 1, expiresMs: 5000 });
      assert.equal(d?.subject, 'changes.corp');
      await d!.ack();
    } finally {
      await plain.close();
    }
  });

  test('the JetStream store directories hold sealed passwords only, on every node', { timeout: 60_000 }, async () => {
    const b = await open();
    try {
      const t = ns();
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const key = privateRecipientFromPem(privateKey.export({ type: 'pkcs8', format: 'pem' }));
      const binding = { changeId: randomBytes(16), changeTime: Date.now(), domain: 'corp.example.com', samAccountName: 'alice', objectGuid: '', objectSid: '', upn: '', dn: '', sourceHost: 'dc1' };
      const marker = `plain-marker-${randomBytes(8).toString('hex')}`;
      const c = await b.consumer(`${t}c`, `${t}.>`);
      for (let i = 0; i < 20; i++) {
        await b.publish(`${t}.ops`, seal(key, binding, Secret.adopt(testPassword(`nats-store-${i}`))), { msgId: `${t}-${i}` });
      }
      await b.publish(`${t}.ops`, Buffer.from(marker), { msgId: `${t}-marker` });
      await (await b.kv(`${t}kv`)).put('alice', seal(key, binding, Secret.adopt(testPassword('nats-kv'))));
      const got = await c.fetch({ max: 21, expiresMs: 5000 });
      assert.equal(got.length, 21);
      assert.ok(openEnvelope(got[0]!.data, keyringOf([key])).password.equals(Secret.adopt(testPassword('nats-store-0'))), 'the worker side opens what was stored');
      for (const d of got) await d.ack();
      // Every node's store, once its replica has written the messages (a follower may lag a little).
      for (const node of cluster.nodes) {
        let found = false;
        for (let i = 0; i < 100 && !found; i++) {
          found = filesUnder(node.storeDir).some((f) => readFileSync(f).includes(marker));
          if (!found) await sleep(100);
        }
        assert.ok(found, `node ${node.index}: the plain marker is not in its store, so the scan below would prove nothing`);
        const { files, hits } = scanTree(node.storeDir);
        assert.ok(files.length > 0);
        assert.deepEqual(hits, [], `node ${node.index}: a test password in clear in the JetStream store`);
      }
    } finally {
      await b.close();
    }
  });

  test('pwsync broker init: creates the hub\'s streams, buckets and consumers from its YAML, then finds them there', { timeout: 60_000 }, async () => {
    const dir = testDir('broker-init');
    const prefix = ns();
    write(dir, 'nats-ca.pem', cluster.ca, 0o644);
    write(dir, 'nats.password', cluster.password().use((b) => Buffer.from(b)).toString('utf8'));
    const yaml = write(dir, 'hub.yaml', `${HUB_HEAD}${csvConnector('hr')}${csvConnector('payroll.db')}broker:
  kind: nats
  servers: [${cluster.urls.join(', ')}]
  tls: {ca: nats-ca.pem}
  user: pwsync
  credentials: {fromFile: nats.password}
  prefix: ${prefix}
`);
    const run = async (file: string) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await initBroker(file, { out: (l) => out.push(l), err: (l) => err.push(l) });
      return { code, out, err };
    };
    const first = await run(yaml);
    assert.equal(first.code, 0, first.err.join('\n'));
    const created = first.out.filter((l) => l.startsWith('created '));
    assert.equal(created.length, 2 + 10 + 3, first.out.join('\n'));
    for (const what of [`stream ${prefix}_changes (${prefix}.changes, ${prefix}.changes.>; R3)`, `stream ${prefix}_ops`,
      `kv bucket ${prefix}_joins (R3)`, `kv bucket ${prefix}_seen-msgids`, `consumer resolver on ${prefix}_changes (${prefix}.changes.>)`,
      `consumer ops-payroll~2edb on ${prefix}_ops (${prefix}.ops.payroll~2edb)`]) {
      assert.ok(created.some((l) => l.startsWith(`created ${what}`)), `no "created ${what}" in:\n${first.out.join('\n')}`);
    }
    assert.match(first.out.at(-1)!, /15 created, 0 already there/);
    const second = await run(yaml);
    assert.equal(second.code, 0, second.err.join('\n'));
    assert.equal(second.out.filter((l) => l.startsWith('exists  ')).length, 15);
    assert.match(second.out.at(-1)!, /0 created, 15 already there/);

    const sqlite = await run(write(dir, 'sqlite.yaml', HUB_HEAD + csvConnector('hr')));
    assert.equal(sqlite.code, 2);
    assert.match(sqlite.err.join('\n'), /broker\.kind is sqlite: the embedded broker needs no init/);
    const wrongPassword = write(dir, 'wrong.password', 'not-the-password');
    const refused = await run(write(dir, 'refused.yaml', (await import('node:fs')).readFileSync(yaml, 'utf8').replace('nats.password', wrongPassword)));
    assert.equal(refused.code, 1);
    assert.match(refused.err.join('\n'), /event 6971: .*refused the credentials/);
  });

  test('errors: refused credentials and permissions are not retried; an unreachable NATS is', { timeout: 60_000 }, async () => {
    const wrong = options({ password: cluster.noRightsPassword() });
    await assert.rejects(openNatsBroker(wrong), (e: unknown) =>
      e instanceof PwsyncError && e.eventId === 6971 && !e.retryable && /refused the credentials/.test(e.message));

    // norights may connect but publish nothing: opening JetStream (its API is requests) is refused.
    await assert.rejects(openNatsBroker(options({ user: 'norights', password: cluster.noRightsPassword() })), (e: unknown) =>
      e instanceof PwsyncError && e.eventId === 6971 && !e.retryable && /denied a permission.*\$JS\.API/.test(e.message));

    const down = options({ servers: ['tls://127.0.0.1:1'], requestTimeoutMs: 1000 });
    await assert.rejects(openNatsBroker(down), (e: unknown) =>
      e instanceof PwsyncError && e.eventId === 6970 && e.retryable && /127\.0\.0\.1:1/.test(e.message));
  });
});
