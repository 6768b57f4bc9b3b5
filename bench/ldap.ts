/**
 * `npm run bench:ldap`: password changes into OpenLDAP. 5,000 changes over 500 accounts,
 * hook → notifier → hub → ldap connector → slapd (hub and notifier in their own processes), against
 * a baseline that sends the same Password Modify extended operations (same DNs, same password
 * lengths, the ppolicy control) straight through ldapts Clients over ldaps, with as many in flight
 * as the hub's concurrency and as many connections as the connector's poolSize. Both in one run,
 * rounds alternated; prints per mode the median changes/s, p50/p99 per change, the ratio
 * pwsync/baseline, latencies at a fixed offered rate and the CPU each process spent per change.
 *
 * pwsync's latency of a change runs from the start of its hook call to the hub's success time of
 * its set-operation (written once slapd answered), as bench/propagation.ts measures it. slapd
 * (test/env/slapd.sh: mdb, ppolicy with history 5, {SSHA}) is started for the run; the accounts'
 * password histories are filled before the first round so that both modes see the same policy work.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, PasswordPolicyControl } from 'ldapts';
import { DOMAIN, Lab, REPO, until } from '../cli/lab.ts';
import { PASSWORD_MODIFY_OID, passwordModifyValue } from '../connectors/ldap/ldap.ts';
import { openSqliteBroker } from '../core/broker-sqlite.ts';
import { Secret } from '../core/secret.ts';
import { HubState } from '../hub/state.ts';
import { sendHookChange } from '../notifier/hook-client.ts';
import { testPassword } from '../test/lib/passwords.ts';

const ACCOUNTS = 500;
const CHANGES = Number(process.env.BENCH_CHANGES ?? 5_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
const POOL = Number(process.env.BENCH_POOL ?? 2);
const BATCH = Number(process.env.BENCH_BATCH ?? 100);
const HOOKS = Number(process.env.BENCH_HOOKS ?? 32);
const PACED = Number(process.env.BENCH_PACED ?? 1_000);
const RATE = Number(process.env.BENCH_RATE ?? 200);
/** Diagnosis: the services' log level (debug logs every connector call with its time), and BENCH_KEEP=1 keeps the folder. */
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? 'warn';
const CONNECTOR = 'openldap';
const SLAPD_SCRIPT = path.join(REPO, 'test', 'env', 'slapd.sh');

const sam = (i: number): string => `user${String(i % ACCOUNTS).padStart(4, '0')}`;
/** Every password of the run is new (the policy keeps a history) and all are 19 bytes long. */
const password = (phase: string, i: number): Secret => Secret.adopt(testPassword(`${phase}-${String(i).padStart(6, '0')}`));

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const median = (xs: number[]): number => pct(xs, 50);

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  if (pid === process.pid) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Slapd {
  env: Record<string, string>;
  dir: string;
  pid: number;
  dnOf(i: number): string;
}

function startSlapd(dir: string): Slapd {
  const out = execFileSync('bash', [SLAPD_SCRIPT, 'start', dir, String(ACCOUNTS)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  const env = Object.fromEntries(out.trim().split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  if (!env.SLAPD_LDAPS_URL || !env.SLAPD_PID) throw new Error(`test/env/slapd.sh printed no SLAPD_LDAPS_URL or SLAPD_PID: ${out}`);
  return { env, dir, pid: Number(env.SLAPD_PID), dnOf: (i) => `uid=${sam(i)},${env.SLAPD_PEOPLE}` };
}

/** CPU seconds all processes of the machine have used so far (/proc/stat: all but idle and iowait). */
function machineCpuSeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (f.reduce((a, b) => a + b, 0) - f[3]! - f[4]!) / 100;
}

/**
 * Samples the CPU each of the run's processes used over one phase, and `others`: what every other
 * process on the machine used meanwhile, in cores (other work on a shared machine skews a round).
 */
function cpuMeter(pids: Record<string, number | undefined>): () => Record<string, number> {
  const start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]));
  const machine = machineCpuSeconds();
  const t0 = performance.now();
  return () => {
    const used: Record<string, number> = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid) - start[k]!]));
    const ours = Object.values(used).reduce((a, b) => a + b, 0);
    used.others = Math.max(0, machineCpuSeconds() - machine - ours) / ((performance.now() - t0) / 1000);
    return used;
  };
}

/** Waits (at most 15 s) until hub, notifier and slapd have been idle for 300 ms, so a round does not inherit the last one's work. */
async function quiesce(pids: Array<number | undefined>): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const before = pids.map(cpuSeconds);
    await new Promise((r) => setTimeout(r, 300));
    const busy = pids.reduce<number>((a, pid, i) => a + cpuSeconds(pid) - before[i]!, 0);
    if (busy <= 0.03) return;
  }
}

// ---- the baseline: ldapts Clients, the same exops ------------------------------------------

async function baselineClients(slapd: Slapd): Promise<Client[]> {
  const ca = readFileSync(slapd.env.SLAPD_CA!);
  const clients: Client[] = [];
  for (let i = 0; i < POOL; i++) {
    const client = new Client({ url: slapd.env.SLAPD_LDAPS_URL!, timeout: 10_000, connectTimeout: 10_000, tlsOptions: { ca: [ca], rejectUnauthorized: true, minVersion: 'TLSv1.2' } });
    clients.push(client);
    // The service account's password is random hex from slapd.sh, held as a string only for the bind.
    await client.bind(slapd.env.SLAPD_SERVICE_DN!, readFileSync(slapd.env.SLAPD_SERVICE_PASSWORD_FILE!, 'utf8'));
  }
  return clients;
}

/**
 * `count` Password Modify exops, change i to account i % ACCOUNTS, CONCURRENCY at a time over the
 * clients in turn (as the connector takes its pool); `rate` > 0 paces them. Returns changes/s and
 * the time of each, from its start (or its due time when paced) to slapd's answer.
 */
async function baselineRound(slapd: Slapd, clients: Client[], phase: string, count: number, rate = 0): Promise<{ rate: number; ms: number[] }> {
  const ms: number[] = [];
  let next = 0;
  let turn = 0;
  const t0 = performance.now();
  const lane = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      let from = performance.now();
      if (rate > 0) {
        const due = t0 + (i * 1000) / rate;
        if (due > from) await new Promise((r) => setTimeout(r, due - from));
        from = due;
      }
      const client = clients[turn++ % clients.length]!;
      const pw = password(phase, i);
      try {
        await pw.use(async (bytes) => {
          const value = passwordModifyValue(slapd.dnOf(i), bytes);
          try {
            await client.exop(PASSWORD_MODIFY_OID, value, new PasswordPolicyControl());
          } finally {
            value.fill(0);
          }
        });
      } finally {
        pw.dispose();
      }
      ms.push(performance.now() - from);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  return { rate: count / ((performance.now() - t0) / 1000), ms };
}

// ---- pwsync: hook → notifier → hub → ldap connector → slapd ---------------------------------

interface Offered {
  /** changeTime of change i of this phase: `base + i`. */
  base: number;
  count: number;
  sentAt: number[];
  t0: number;
  hooked: number;
}

/** Hooks `count` changes (change i to account i % ACCOUNTS), paced at `rate` per second (0: as fast as they are taken). */
async function offer(lab: Lab, phase: string, base: number, count: number, rate = 0): Promise<Offered> {
  const sentAt: number[] = new Array<number>(count);
  let next = 0;
  const t0 = Date.now();
  const tp = performance.now();
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      if (rate > 0) {
        const wait = tp + (i * 1000) / rate - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      sentAt[i] = Date.now();
      const pw = password(phase, i);
      try {
        await sendHookChange(lab.hookSocket, { domain: DOMAIN, samAccountName: sam(i), changeTime: base + i }, pw, 10_000);
      } finally {
        pw.dispose();
      }
    }
  };
  await Promise.all(Array.from({ length: rate > 0 ? 8 : HOOKS }, worker));
  return { base, count, sentAt, t0, hooked: Date.now() };
}

interface Settled {
  rate: number;
  hookRate: number;
  ms: number[];
  applied: number;
  superseded: number;
  failed: string[];
}

/**
 * Waits (bounded) until every account's sync state has reached its last change of the phase, then
 * reads the phase's set-operations: latency of each applied one, and what was not applied.
 */
async function settle(state: HubState, o: Offered, timeoutMs: number): Promise<Settled> {
  const lastOf = new Map<string, number>();
  for (let i = 0; i < o.count; i++) lastOf.set(sam(i), o.base + i);
  const waiting = new Set(lastOf.keys());
  await until(`the hub to settle ${o.count} changes`, timeoutMs, async () => {
    for (const account of [...waiting]) {
      const s = await state.getSync({ domain: DOMAIN, samAccountName: account }, CONNECTOR);
      if (s && s.changeTime >= lastOf.get(account)! && (s.state === 'in-sync' || s.state === 'out-of-sync')) waiting.delete(account);
    }
    if (waiting.size > 0) await new Promise((r) => setTimeout(r, 100));
    return waiting.size === 0 ? true : undefined;
  });
  const ops = (await state.listOperations()).filter((op) => op.changeTime >= o.base && op.changeTime < o.base + o.count);
  const ms: number[] = [];
  const failed: string[] = [];
  let superseded = 0;
  let lastDone = 0;
  for (const op of ops) {
    lastDone = Math.max(lastDone, op.updatedAt);
    if (op.state === 'successful') ms.push(op.updatedAt - o.sentAt[op.changeTime - o.base]!);
    else if (op.state === 'failed' && op.eventId === 6919) superseded++;
    else failed.push(`${op.state} ${op.eventId ?? ''} ${op.reason ?? ''}`.trim());
  }
  if (ms.length + superseded + failed.length !== o.count) throw new Error(`${o.count} changes hooked, ${ops.length} set-operations found`);
  return { rate: o.count / ((lastDone - o.t0) / 1000), hookRate: o.count / ((o.hooked - o.t0) / 1000), ms, applied: ms.length, superseded, failed };
}

// ---- the run --------------------------------------------------------------------------------

interface Mode {
  name: string;
  rates: number[];
  ms: number[];
  cpu: Array<Record<string, number>>;
}

async function main(): Promise<void> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'pwsync-bench-ldap-'));
  let slapd: Slapd | undefined;
  let lab: Lab | undefined;
  const clients: Client[] = [];
  let broker: ReturnType<typeof openSqliteBroker> | undefined;
  // Should the run die without reaching `finally`, nothing it started outlives it.
  const leftovers = (): void => {
    for (const pid of [lab?.notifier?.proc.pid, lab?.hub?.proc.pid]) {
      try {
        if (pid) process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (slapd) execFileSync('bash', [SLAPD_SCRIPT, 'stop', slapd.dir], { stdio: 'ignore', timeout: 30_000 });
    rmSync(root, { recursive: true, force: true });
  };
  process.once('exit', leftovers);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  try {
    slapd = startSlapd(path.join(root, 'slapd'));
    lab = await Lab.create({
      root: path.join(root, 'lab'), connectors: [], logLevel: LOG_LEVEL,
      hubConnectors: [{
        name: CONNECTOR, kind: 'ldap', enabled: true,
        connection: {
          url: slapd.env.SLAPD_LDAPS_URL, ca: slapd.env.SLAPD_CA, bindDn: slapd.env.SLAPD_SERVICE_DN,
          password: { fromFile: slapd.env.SLAPD_SERVICE_PASSWORD_FILE }, baseDn: slapd.env.SLAPD_PEOPLE,
          poolSize: POOL, timeout: '10s',
        },
        join: [{ target: 'uid', source: 'sAMAccountName' }],
        retry: { count: 3, interval: '1s' }, concurrency: CONCURRENCY, batchSize: BATCH,
      }],
    });
    await lab.startHub();
    await lab.startNotifier();
    broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
    const state = await HubState.open(broker);
    clients.push(...await baselineClients(slapd));
    const slapdVersion = /slapd ([0-9.]+)/.exec(spawnSync('/usr/sbin/slapd', ['-VV'], { encoding: 'utf8', timeout: 10_000 }).stderr)?.[1] ?? '?';
    process.stdout.write(`pwsync bench:ldap: ${CHANGES} changes over ${ACCOUNTS} accounts to slapd ${slapdVersion} (mdb, ppolicy history 5, {SSHA}) over ldaps; `
      + `hub concurrency ${CONCURRENCY}, batch ${BATCH}, connector poolSize ${POOL}; baseline: ldapts, ${CONCURRENCY} in flight over ${POOL} connections; `
      + `${ROUNDS} rounds, alternated; ${os.cpus().length} cores\n`);

    // Fill every account's password history (pwdInHistory 5) so each mode checks a full one, then
    // let the hub make its 500 joins and warm up: neither is part of a measured round.
    await baselineRound(slapd, clients, 'bw', ACCOUNTS * 6);
    let changeTime = Date.now() - 10 * 60_000;
    const hookPhase = async (phase: string, count: number, rate = 0, timeoutMs = 180_000): Promise<Settled> => {
      const o = await offer(lab!, phase, changeTime, count, rate);
      changeTime += count;
      const s = await settle(state, o, timeoutMs);
      if (s.failed.length > 0) throw new Error(`pwsync ${phase}: ${s.failed.length} changes failed, the first: ${s.failed[0]}`);
      return s;
    };
    await hookPhase('hw', ACCOUNTS);

    const pids = { bench: process.pid, hub: lab.hub?.proc.pid, notifier: lab.notifier?.proc.pid, slapd: slapd.pid };
    const base: Mode = { name: 'baseline', rates: [], ms: [], cpu: [] };
    const hub: Mode = { name: 'pwsync', rates: [], ms: [], cpu: [] };
    const hookRates: number[] = [];
    let superseded = 0;
    let applied = 0;
    for (let r = 0; r < ROUNDS; r++) {
      for (const m of r % 2 === 0 ? [base, hub] : [hub, base]) {
        await quiesce([pids.hub, pids.notifier, pids.slapd]);
        const meter = cpuMeter(pids);
        if (m === base) {
          const b = await baselineRound(slapd, clients, `b${r}`, CHANGES);
          m.rates.push(b.rate);
          m.ms.push(...b.ms);
        } else {
          const s = await hookPhase(`h${r}`, CHANGES);
          m.rates.push(s.rate);
          m.ms.push(...s.ms);
          hookRates.push(s.hookRate);
          superseded += s.superseded;
          applied += s.applied;
        }
        m.cpu.push(meter());
        process.stdout.write(`  round ${r + 1}: ${m.name.padEnd(8)} ${m.rates.at(-1)!.toFixed(0)} changes/s (other processes on the machine: ${m.cpu.at(-1)!.others!.toFixed(2)} cores)\n`);
      }
    }
    await quiesce([pids.hub, pids.notifier, pids.slapd]);
    const pacedBase = await baselineRound(slapd, clients, 'bp', PACED, RATE);
    await quiesce([pids.hub, pids.notifier, pids.slapd]);
    const pacedHub = await hookPhase('hp', PACED, RATE);

    const n = (x: number, d = 0): string => x.toFixed(d);
    const row = (k: string, ...cols: string[]): void => {
      process.stdout.write(`  ${k.padEnd(36)}${cols.map((c, i) => (i === cols.length - 1 ? c : c.padStart(12))).join('')}\n`);
    };
    const cpuPerChange = (m: Mode, k: string): string => n(median(m.cpu.map((c) => (c[k]! * 1000) / CHANGES)), 3);
    process.stdout.write(`\nresults (medians over ${ROUNDS} rounds of ${CHANGES} changes)\n`);
    row('', 'changes/s', 'p50 ms', 'p99 ms', '   rounds (changes/s)');
    row(`baseline: ldapts exops`, n(median(base.rates)), n(median(base.ms), 2), n(pct(base.ms, 99), 2), `   ${base.rates.map((x) => n(x)).join(', ')}`);
    row(`pwsync: hook → slapd, full speed`, n(median(hub.rates)), n(median(hub.ms)), n(pct(hub.ms, 99)), `   ${hub.rates.map((x) => n(x)).join(', ')}  (hooked at ${n(median(hookRates))}/s; p50/p99 include the backlog)`);
    row(`ratio pwsync / baseline`, (median(hub.rates) / median(base.rates)).toFixed(2), '', '',
      `   (aim ≥ 0.90; per round: ${hub.rates.map((x, i) => (x / base.rates[i]!).toFixed(2)).join(', ')})`);
    row(`at ${RATE}/s offered, ${PACED} changes: baseline`, '', n(median(pacedBase.ms), 2), n(pct(pacedBase.ms, 99), 2), '');
    row(`at ${RATE}/s offered, ${PACED} changes: pwsync`, '', n(median(pacedHub.ms)), n(pct(pacedHub.ms, 99)), `   (hook → slapd)`);
    process.stdout.write('\nCPU ms per change (median over rounds), and other processes\' load meanwhile\n');
    row('', 'bench', 'hub', 'notifier', 'slapd', 'all', '   others (cores)');
    for (const m of [base, hub]) {
      const all = n(median(m.cpu.map((c) => ((c.bench! + c.hub! + c.notifier! + c.slapd!) * 1000) / CHANGES)), 3);
      row(m.name, cpuPerChange(m, 'bench'), cpuPerChange(m, 'hub'), cpuPerChange(m, 'notifier'), cpuPerChange(m, 'slapd'), all, `   ${m.cpu.map((c) => c.others!.toFixed(2)).join(', ')}`);
    }
    process.stdout.write(`\npwsync measured rounds: ${applied} exops applied, ${superseded} changes superseded in a batch by a newer one for the same account (6919); none failed (a failure stops the run)\n`);
  } finally {
    for (const c of clients) await c.unbind().catch(() => undefined);
    await broker?.close();
    await lab?.stopAll();
    if (slapd) execFileSync('bash', [SLAPD_SCRIPT, 'stop', slapd.dir], { stdio: 'ignore', timeout: 30_000 });
    slapd = undefined;
    process.removeListener('exit', leftovers);
    if (process.env.BENCH_KEEP) process.stdout.write(`kept ${root}\n`);
    else rmSync(root, { recursive: true, force: true });
  }
}

await main();
