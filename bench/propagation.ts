/**
 * `npm run bench`: 10,000 changes over 1,000 accounts to two file targets (CSV and DSML),
 * hook → notifier → hub → both targets, each service in its own process over gRPC/TLS.
 * Prints changes/s end to end, propagation latency p50/p99 at an offered 200 changes/s and at
 * full speed, peak RSS of hub and notifier, and the ratio against a baseline that writes the same
 * records through the same extension directly in one process (same batch size, same work factor).
 *
 * `npm run bench:nats` (BENCH_BROKER=both) runs the same end-to-end measurement twice in one run,
 * on the embedded broker and on a private 3-node NATS JetStream cluster (R3, test/env/nats.sh),
 * and prints both side by side with the ratio NATS / embedded.
 */
import { recordsOf } from '../core/extension.ts';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { DOMAIN, EXAMPLE_EXTENSION, Lab, spawnPwsync, until, type LabConnector } from '../cli/lab.ts';
import { natsBrokerOptions } from '../config/broker.ts';
import type { Broker } from '../core/broker.ts';
import { startNatsCluster, type NatsCluster } from '../test/lib/nats.ts';
import { isExtensionHost } from '../connectors/contract.ts';
import { createConnector } from '../connectors/registry.ts';
import { openSqliteBroker } from '../core/broker-sqlite.ts';
import { silentLogger } from '../core/log.ts';
import { Secret } from '../core/secret.ts';
import { loadHubConfig } from '../config/load.ts';
import { loadExtension } from '../extensions/loader.ts';
import { eachLimited } from '../hub/apply.ts';
import { HubState } from '../hub/state.ts';
import { extensionEnv } from '../hub/targets.ts';
import { sendHookChange } from '../notifier/hook-client.ts';

const ACCOUNTS = 1000;
const CHANGES = Number(process.env.BENCH_CHANGES ?? 10_000);
const PACED = Number(process.env.BENCH_PACED ?? 2_000);
const RATE = 200;
const COST = Number(process.env.BENCH_COST ?? 1024);
const BATCH = 100;
/** sqlite (the default), nats, or both side by side. */
const BROKERS = (process.env.BENCH_BROKER ?? 'sqlite') === 'both' ? ['sqlite', 'nats'] as const : [process.env.BENCH_BROKER === 'nats' ? 'nats' as const : 'sqlite' as const];
const sam = (i: number): string => `user${String(i % ACCOUNTS).padStart(4, '0')}`;
const password = (i: number): Buffer => Buffer.from(`bench-pw-${i}-é€`, 'utf8');

function connectors(): LabConnector[] {
  const ids = Array.from({ length: ACCOUNTS }, (_, i) => sam(i));
  const common = { retry: { count: 10, interval: '1s' }, batchSize: BATCH, concurrency: 1, extension: { attribute: 'pwdHash', cost: COST } };
  return [
    { name: 'csv', kind: 'delimited', file: 'people.csv', content: `id,login,pwdHash\n${ids.map((s, i) => `${i},${s},`).join('\n')}\n`, join: [{ target: 'login', source: 'sAMAccountName' }], ...common },
    {
      name: 'dsml', kind: 'dsml', file: 'people.dsml',
      content: `<?xml version="1.0" encoding="UTF-8"?>\n<batchResponse xmlns="urn:oasis:names:tc:DSML:2:0:core"><searchResponse>\n${ids.map((s) => `<searchResultEntry dn="uid=${s},o=x"><attr name="uid"><value>${s}</value></attr><attr name="pwdHash"><value></value></attr></searchResultEntry>`).join('\n')}\n</searchResponse></batchResponse>\n`,
      join: [{ target: 'uid', source: 'sAMAccountName' }], ...common,
    },
  ];
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

function peakRss(pid: number | undefined): number {
  if (!pid) return NaN;
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** The baseline: the same records through the same extension, in this process, no queues. */
async function baseline(lab: Lab, changes: number): Promise<number> {
  const config = await loadHubConfig(lab.hubConfig);
  const log = silentLogger();
  const started = performance.now();
  await Promise.all(config.connectors.map(async (c) => {
    const connector = createConnector(c.name, c.kind, c.connection, { log, resolvePath: (p) => path.resolve(config.baseDir, p) });
    await connector.open();
    const { extension } = await loadExtension({ module: EXAMPLE_EXTENSION, settings: c.extension!.settings }, extensionEnv(c.name, config.baseDir, log));
    if (!isExtensionHost(connector)) throw new Error('not an extension host');
    const ids = new Map<string, string>();
    for await (const o of (connector as unknown as { list(): AsyncIterable<{ id: string; attributes: Record<string, string> }> }).list()) {
      ids.set(o.attributes[c.join[0]!.target]!, o.id);
    }
    for (let b = 0; b < changes; b += BATCH) {
      const { connection, release } = await connector.connect();
      await extension.beginConnection?.(connection);
      const batch = Array.from({ length: Math.min(changes, b + BATCH) - b }, (_, k) => b + k);
      await eachLimited(batch, extension.concurrentSets ?? 1, async (i) => {
        const object = recordsOf(connection).get(ids.get(sam(i))!)!;
        const pw = Secret.adopt(password(i));
        await extension.setPassword!(object, pw, { operationId: String(i), changeId: String(i), changeTime: i, connector: c.name, account: { domain: DOMAIN, samAccountName: sam(i), objectGuid: '', objectSid: '', upn: '', dn: '' }, log });
        pw.dispose();
      });
      await extension.endConnection?.();
      await release();
    }
    await connector.close();
  }));
  return changes / ((performance.now() - started) / 1000);
}

/** Hooks `count` changes starting at `from`, paced at `rate` per second (0: as fast as possible). */
async function offer(lab: Lab, from: number, count: number, rate: number, base: number, sentAt: Map<number, number>): Promise<void> {
  let next = from;
  const end = from + count;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < end) {
      const i = next++;
      if (rate > 0) {
        const due = t0 + ((i - from) * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      sentAt.set(i, Date.now());
      const pw = Secret.adopt(password(i));
      await sendHookChange(lab.hookSocket, { domain: DOMAIN, samAccountName: sam(i), changeTime: base + i }, pw, 10_000);
      pw.dispose();
    }
  };
  await Promise.all(Array.from({ length: rate > 0 ? 8 : 32 }, worker));
}

async function settle(state: HubState, from: number, count: number, base: number, sentAt: Map<number, number>): Promise<{ latencies: number[]; lastDone: number }> {
  const want = count * 2;
  // Polled once a second: the times come from each operation's record, not from the poll, and
  // a tighter poll would load the broker being measured (on NATS each record is a request).
  let ops: Awaited<ReturnType<HubState['listOperations']>> | undefined;
  const deadline = Date.now() + 900_000;
  while (!ops) {
    const all = (await state.listOperations()).filter((o) => o.changeTime - base >= from && o.changeTime - base < from + count);
    const done = all.filter((o) => o.state === 'successful' || o.state === 'failed' || o.state === 'superseded');
    if (done.length >= want) ops = done;
    else if (Date.now() > deadline) throw new Error(`${want} set-operations not settled within 15 min (${done.length} were)`);
    else await new Promise((r) => setTimeout(r, 1000));
  }
  const byChange = new Map<number, number>();
  for (const o of ops) {
    const i = o.changeTime - base;
    byChange.set(i, Math.max(byChange.get(i) ?? 0, o.updatedAt));
  }
  const latencies = [...byChange].map(([i, done]) => done - sentAt.get(i)!);
  return { latencies, lastDone: Math.max(...byChange.values()) };
}

interface Run {
  rate: number;
  hookedRate: number;
  paced: number[];
  full: number[];
  hubRss: number;
  notifierRss: number;
}

/** One end-to-end run (paced, then full speed) on a fresh lab with this broker. */
async function endToEnd(root: string, kind: 'sqlite' | 'nats', nats?: NatsCluster): Promise<Run> {
  let brokerSection: Record<string, unknown> | undefined;
  if (kind === 'nats') {
    const secret = path.join(`${root}-files`, 'nats.pw');
    mkdirSync(`${root}-files`, { recursive: true });
    nats!.password().use((b) => writeFileSync(secret, b, { mode: 0o600 }));
    writeFileSync(path.join(`${root}-files`, 'nats-ca.pem'), nats!.ca);
    brokerSection = { kind: 'nats', servers: nats!.urls, tls: { ca: path.join(`${root}-files`, 'nats-ca.pem') }, user: 'pwsync', credentials: { fromFile: secret }, replicas: 3 };
  }
  const lab = await Lab.create({ root, connectors: connectors(), logLevel: 'warn', ...(brokerSection ? { broker: brokerSection } : {}) });
  let broker: Broker | undefined;
  try {
    if (kind === 'nats') {
      const init = spawnPwsync(['broker', 'init', '--config', lab.hubConfig]);
      if (await init.exited !== 0) throw new Error(`pwsync broker init failed: ${init.stderr()}`);
    }
    await lab.startHub();
    await lab.startNotifier();
    if (kind === 'nats') {
      const { openNatsBroker } = await import('../core/broker-nats.ts');
      broker = await openNatsBroker(natsBrokerOptions(await loadHubConfig(lab.hubConfig)));
    } else {
      broker = openSqliteBroker({ file: path.join(root, 'hub-data', 'hub.db') });
    }
    const state = await HubState.open(broker);
    const base = Date.now() - 100 * CHANGES;
    const sentAt = new Map<number, number>();
    await offer(lab, 0, PACED, RATE, base, sentAt);
    const paced = await settle(state, 0, PACED, base, sentAt);
    const t0 = Date.now();
    await offer(lab, PACED, CHANGES, 0, base, sentAt);
    const hooked = Date.now();
    const full = await settle(state, PACED, CHANGES, base, sentAt);
    return {
      rate: CHANGES / ((full.lastDone - t0) / 1000), hookedRate: CHANGES / ((hooked - t0) / 1000),
      paced: paced.latencies, full: full.latencies,
      hubRss: peakRss(lab.hub?.proc.pid), notifierRss: peakRss(lab.notifier?.proc.pid),
    };
  } finally {
    await broker?.close();
    await lab.stopAll();
  }
}

async function main(): Promise<void> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'pwsync-bench-'));
  const baseLab = await Lab.create({ root: `${root}-baseline`, connectors: connectors(), logLevel: 'warn' });
  let nats: NatsCluster | undefined;
  try {
    process.stdout.write(`pwsync bench: ${CHANGES} changes over ${ACCOUNTS} accounts to 2 file targets (CSV, DSML); scrypt N=${COST}, batch ${BATCH}; broker ${BROKERS.join(' and ')}${BROKERS.includes('nats') ? ' (NATS: 3 local nodes, R3, on the same cores)' : ''}; ${os.cpus().length} cores\n`);
    const baseRate = await baseline(baseLab, CHANGES);
    if (BROKERS.includes('nats')) nats = await startNatsCluster();
    const runs = new Map<string, Run>();
    for (const kind of BROKERS) runs.set(kind, await endToEnd(`${root}-${kind}`, kind, nats));

    const row = (k: string, v: string): void => { process.stdout.write(`  ${k.padEnd(44)}${v}\n`); };
    process.stdout.write('\nresults\n');
    row('baseline (same extension, one process)', `${baseRate.toFixed(0)} changes/s`);
    for (const [kind, r] of runs) {
      const name = kind === 'nats' ? 'NATS JetStream R3' : 'embedded broker';
      process.stdout.write(`  ${name}\n`);
      row('  end to end, full speed', `${r.rate.toFixed(0)} changes/s (hooked at ${r.hookedRate.toFixed(0)}/s)`);
      row('  ratio end-to-end / baseline', `${(r.rate / baseRate).toFixed(2)}`);
      row(`  latency at ${RATE}/s offered (${PACED} changes)`, `p50 ${pct(r.paced, 50)} ms, p99 ${pct(r.paced, 99)} ms`);
      row(`  latency at full speed (${CHANGES} changes)`, `p50 ${pct(r.full, 50)} ms, p99 ${pct(r.full, 99)} ms`);
      row('  peak RSS hub / notifier', `${r.hubRss.toFixed(0)} MB / ${r.notifierRss.toFixed(0)} MB`);
    }
    const sq = runs.get('sqlite');
    const ns = runs.get('nats');
    if (sq && ns) row('ratio NATS / embedded, full speed', `${(ns.rate / sq.rate).toFixed(2)} (p99 at ${RATE}/s: ${pct(ns.paced, 99)} vs ${pct(sq.paced, 99)} ms)`);
  } finally {
    await nats?.stop();
    for (const kind of BROKERS) rmSync(`${root}-${kind}`, { recursive: true, force: true });
    rmSync(`${root}-nats-files`, { recursive: true, force: true });
    rmSync(`${root}-baseline`, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
