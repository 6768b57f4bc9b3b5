/**
 * The embedded broker's write path: group commit against one transaction per write (the same
 * code with the batch size forced to 1), then consume + ack throughput. With `--broker nats`, the
 * same runs against NATS JetStream side by side: a private 3-node nats-server cluster on loopback
 * (test/env/nats.sh, R3 streams and buckets), plus raw JetStream publishes without the broker's
 * long-horizon dedupe marker, to show what that marker costs.
 *
 *   npx tsx bench/broker.ts [--broker nats]   (BENCH_DIR picks the disk; default the OS temp dir)
 *
 * Every commit is a real fsync (synchronous=FULL), so the figures depend on the disk. The three
 * NATS servers and this process share the machine's cores.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Broker } from '../core/broker.ts';
import type { NatsBroker } from '../core/broker-nats.ts';
import { openSqliteBroker } from '../core/broker-sqlite.ts';
import { startNatsCluster, type NatsCluster } from '../test/lib/nats.ts';

const MESSAGES = 20_000;
const IN_FLIGHT = 64;
const PAYLOAD = Buffer.alloc(400, 0x5a);

interface PublishRun { msgsPerSec: number; p50: number; p99: number }

const dir = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'pwsync-bench-broker-'));

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

type Open = () => Promise<Broker>;

/** Publishes MESSAGES with IN_FLIGHT awaited at once; `publish` defaults to the broker's own. */
async function publishRun<B extends Broker>(label: string, open: () => Promise<B>, raw?: (b: B, i: number) => Promise<unknown>): Promise<PublishRun> {
  const broker = await open();
  await broker.consumer('bench', 'bench.>');
  const latencies: number[] = [];
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < MESSAGES) {
      const i = next++;
      const t0 = performance.now();
      if (raw) await raw(broker, i);
      else await broker.publish(`bench.t${i % 8}`, PAYLOAD, { msgId: `${label}-${i}` });
      latencies.push(performance.now() - t0);
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  const seconds = (performance.now() - start) / 1000;
  await broker.close();
  latencies.sort((a, b) => a - b);
  return { msgsPerSec: MESSAGES / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

async function consumeRun(open: Open): Promise<number> {
  const broker = await open();
  const consumer = await broker.consumer('bench', 'bench.>');
  let done = 0;
  const start = performance.now();
  while (done < MESSAGES) {
    const got = await consumer.fetch({ max: IN_FLIGHT, expiresMs: 2000 });
    if (got.length === 0) throw new Error(`consume stalled after ${done} of ${MESSAGES}`);
    await Promise.all(got.map((d) => d.ack()));
    done += got.length;
  }
  const rate = MESSAGES / ((performance.now() - start) / 1000);
  await broker.close();
  return rate;
}

const sqlite = (file: string, maxBatch?: number): Open => async () => openSqliteBroker({ file, ...(maxBatch === undefined ? {} : { maxBatch }) });

async function natsOpener(cluster: NatsCluster, prefix: string): Promise<() => Promise<NatsBroker>> {
  const { openNatsBroker } = await import('../core/broker-nats.ts');
  return () => openNatsBroker({ servers: cluster.urls, tls: { ca: cluster.ca }, user: 'pwsync', password: cluster.password(), replicas: 3, create: true, prefix });
}

const fmt = (n: number, digits = 0): string => n.toFixed(digits).padStart(10);

const withNats = process.argv.includes('--broker') && process.argv[process.argv.indexOf('--broker') + 1] === 'nats';
let cluster: NatsCluster | undefined;
try {
  const rows: Array<[string, PublishRun, number | undefined]> = [];
  const groupedFile = path.join(dir, 'group-commit.db');
  const singleFile = path.join(dir, 'one-per-write.db');
  rows.push(['sqlite, group commit', await publishRun('group-commit', sqlite(groupedFile)), undefined]);
  rows.push(['sqlite, one tx per write', await publishRun('one-per-write', sqlite(singleFile, 1)), undefined]);
  rows[0]![2] = await consumeRun(sqlite(groupedFile));
  rows[1]![2] = await consumeRun(sqlite(singleFile, 1));
  if (withNats) {
    cluster = await startNatsCluster({ nodes: 3 });
    const nats = await natsOpener(cluster, 'benchbroker');
    rows.push(['NATS JetStream R3', await publishRun('nats', nats), undefined]);
    rows[2]![2] = await consumeRun(nats);
    const raw = await natsOpener(cluster, 'benchraw');
    const { jetstream } = await import('@nats-io/jetstream');
    rows.push(['  raw js.publish, no marker', await publishRun('raw', raw, (b, i) => jetstream(b.nc).publish(`benchraw.bench.t${i % 8}`, PAYLOAD, { msgID: `raw-${i}` })), undefined]);
  }

  console.log(`broker bench: ${MESSAGES} publishes of ${PAYLOAD.length} B, ${IN_FLIGHT} in flight, dir ${dir}${withNats ? ', NATS: 3 local nodes' : ''}`);
  console.log(`${'mode'.padEnd(28)}${'msgs/s'.padStart(10)}${'p50 ms'.padStart(10)}${'p99 ms'.padStart(10)}` +
    `${'consume+ack/s'.padStart(15)}`);
  for (const [label, r, c] of rows) {
    console.log(`${label.padEnd(28)}${fmt(r.msgsPerSec)}${fmt(r.p50, 2)}${fmt(r.p99, 2)}${(c === undefined ? '-' : fmt(c)).padStart(15)}`);
  }
  const [grouped, single, nats, raw] = rows;
  console.log(`publish throughput ratio (group / single): ${(grouped![1].msgsPerSec / single![1].msgsPerSec).toFixed(1)}x`);
  console.log(`consume+ack throughput ratio (group / single): ${(grouped![2]! / single![2]!).toFixed(1)}x`);
  if (nats && raw) {
    console.log(`publish throughput ratio (sqlite group / NATS R3): ${(grouped![1].msgsPerSec / nats[1].msgsPerSec).toFixed(1)}x; ` +
      `the dedupe marker costs ${(raw[1].msgsPerSec / nats[1].msgsPerSec).toFixed(1)}x (raw / broker publish)`);
    console.log(`consume+ack throughput ratio (sqlite group / NATS R3): ${(grouped![2]! / nats[2]!).toFixed(1)}x`);
  }
} finally {
  await cluster?.stop();
  if (cluster) fs.rmSync(cluster.dir, { recursive: true, force: true });
  fs.rmSync(dir, { recursive: true, force: true });
}
