/**
 * The embedded broker's write path: group commit against one transaction per write (the same
 * code with the batch size forced to 1), then consume + ack throughput.
 *
 *   npx tsx bench/broker.ts            (BENCH_DIR picks the disk; default the OS temp dir)
 *
 * Every commit is a real fsync (synchronous=FULL), so the figures depend on the disk.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { openSqliteBroker } from '../core/broker-sqlite.ts';

const MESSAGES = 20_000;
const IN_FLIGHT = 64;
const PAYLOAD = Buffer.alloc(400, 0x5a);

interface PublishRun { msgsPerSec: number; p50: number; p99: number }

const dir = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'pwsync-bench-broker-'));

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function publishRun(label: string, maxBatch: number | undefined): Promise<{ run: PublishRun; file: string }> {
  const file = path.join(dir, `${label}.db`);
  const broker = openSqliteBroker({ file, ...(maxBatch === undefined ? {} : { maxBatch }) });
  await broker.consumer('bench', 'bench.>');
  const latencies: number[] = [];
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < MESSAGES) {
      const i = next++;
      const t0 = performance.now();
      await broker.publish(`bench.t${i % 8}`, PAYLOAD, { msgId: `${label}-${i}` });
      latencies.push(performance.now() - t0);
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  const seconds = (performance.now() - start) / 1000;
  await broker.close();
  latencies.sort((a, b) => a - b);
  return { run: { msgsPerSec: MESSAGES / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) }, file };
}

async function consumeRun(file: string, maxBatch: number | undefined): Promise<number> {
  const broker = openSqliteBroker({ file, ...(maxBatch === undefined ? {} : { maxBatch }) });
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

const fmt = (n: number, digits = 0): string => n.toFixed(digits).padStart(10);

try {
  const grouped = await publishRun('group-commit', undefined);
  const single = await publishRun('one-per-write', 1);
  const consumeGrouped = await consumeRun(grouped.file, undefined);
  const consumeSingle = await consumeRun(single.file, 1);

  console.log(`broker bench: ${MESSAGES} publishes of ${PAYLOAD.length} B, ${IN_FLIGHT} in flight, dir ${dir}`);
  console.log(`${'mode'.padEnd(28)}${'msgs/s'.padStart(10)}${'p50 ms'.padStart(10)}${'p99 ms'.padStart(10)}` +
    `${'consume+ack/s'.padStart(15)}`);
  for (const [label, r, c] of [
    ['group commit', grouped.run, consumeGrouped],
    ['one transaction per write', single.run, consumeSingle],
  ] as const) {
    console.log(`${label.padEnd(28)}${fmt(r.msgsPerSec)}${fmt(r.p50, 2)}${fmt(r.p99, 2)}${fmt(c).padStart(15)}`);
  }
  console.log(`publish throughput ratio (group / single): ${(grouped.run.msgsPerSec / single.run.msgsPerSec).toFixed(1)}x`);
  console.log(`consume+ack throughput ratio (group / single): ${(consumeGrouped / consumeSingle).toFixed(1)}x`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
