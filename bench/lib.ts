/**
 * What the target benchmarks (bench/ldap.ts, bench/sql.ts) share: percentiles, CPU meters per
 * process, waiting for quiet between rounds, and the pwsync side of a round — hooking changes into
 * the lab's notifier and reading the hub's set-operations back for their latencies.
 */
import { readFileSync } from 'node:fs';
import { DOMAIN, until, type Lab } from '../cli/lab.ts';
import type { Secret } from '../core/secret.ts';
import type { HubState } from '../hub/state.ts';
import { sendHookChange } from '../notifier/hook-client.ts';

export const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
export const median = (xs: number[]): number => pct(xs, 50);

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  if (pid === process.pid) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds all processes of the machine have used so far (/proc/stat: all but idle and iowait). */
export function machineCpuSeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (f.reduce((a, b) => a + b, 0) - f[3]! - f[4]!) / 100;
}

/**
 * Samples the CPU each of the run's processes used over one phase, and `others`: what every other
 * process on the machine used meanwhile, in cores (other work on a shared machine skews a round).
 * A pid may be a function, for servers whose CPU is spread over child processes (PostgreSQL).
 */
export function cpuMeter(pids: Record<string, number | undefined | (() => number)>): () => Record<string, number> {
  const read = (p: number | undefined | (() => number)): number => (typeof p === 'function' ? p() : cpuSeconds(p));
  const start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, read(pid)]));
  const machine = machineCpuSeconds();
  const t0 = performance.now();
  return () => {
    const used: Record<string, number> = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, read(pid) - start[k]!]));
    const ours = Object.values(used).reduce((a, b) => a + b, 0);
    used.others = Math.max(0, machineCpuSeconds() - machine - ours) / ((performance.now() - t0) / 1000);
    return used;
  };
}

/** Waits (at most 15 s) until the given processes have been idle for 300 ms, so a round does not inherit the last one's work. */
export async function quiesce(pids: Array<number | undefined | (() => number)>): Promise<void> {
  const read = (p: number | undefined | (() => number)): number => (typeof p === 'function' ? p() : cpuSeconds(p));
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const before = pids.map(read);
    await new Promise((r) => setTimeout(r, 300));
    const busy = pids.reduce<number>((a, pid, i) => a + read(pid) - before[i]!, 0);
    if (busy <= 0.03) return;
  }
}

// ---- pwsync's side of a round: hook → notifier → hub → connector ----------------------------

/** Which account change i of a phase is for, and its password (a new Secret, disposed by the caller). */
export interface Workload {
  sam(i: number): string;
  password(phase: string, i: number): Secret;
}

export interface Offered {
  /** changeTime of change i of this phase: `base + i`. */
  base: number;
  count: number;
  sentAt: number[];
  t0: number;
  hooked: number;
}

/** Hooks `count` changes with `hooks` callers at once, paced at `rate` per second (0: as fast as they are taken; 8 callers). */
export async function offer(lab: Lab, w: Workload, phase: string, base: number, count: number, hooks: number, rate = 0): Promise<Offered> {
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
      const pw = w.password(phase, i);
      try {
        await sendHookChange(lab.hookSocket, { domain: DOMAIN, samAccountName: w.sam(i), changeTime: base + i }, pw, 10_000);
      } finally {
        pw.dispose();
      }
    }
  };
  await Promise.all(Array.from({ length: rate > 0 ? 8 : hooks }, worker));
  return { base, count, sentAt, t0, hooked: Date.now() };
}

export interface Settled {
  rate: number;
  hookRate: number;
  ms: number[];
  applied: number;
  superseded: number;
  failed: string[];
}

/**
 * Waits (bounded) until every account's sync state at `connector` has reached its last change of
 * the phase, then reads the phase's set-operations: the latency of each applied one (hook call →
 * the hub's success time), and what was not applied.
 */
export async function settle(state: HubState, w: Workload, connector: string, o: Offered, timeoutMs: number): Promise<Settled> {
  const lastOf = new Map<string, number>();
  for (let i = 0; i < o.count; i++) lastOf.set(w.sam(i), o.base + i);
  const waiting = new Set(lastOf.keys());
  await until(`the hub to settle ${o.count} changes`, timeoutMs, async () => {
    for (const account of [...waiting]) {
      const s = await state.getSync({ domain: DOMAIN, samAccountName: account }, connector);
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
    else if (op.state === 'superseded') superseded++;
    else failed.push(`${op.state} ${op.eventId ?? ''} ${op.reason ?? ''}`.trim());
  }
  if (ms.length + superseded + failed.length !== o.count) throw new Error(`${o.count} changes hooked, ${ops.length} set-operations found`);
  return { rate: o.count / ((lastDone - o.t0) / 1000), hookRate: o.count / ((o.hooked - o.t0) / 1000), ms, applied: ms.length, superseded, failed };
}

/** One mode of a run: its rounds' rates, every change's latency, and each round's CPU. */
export interface Mode {
  name: string;
  rates: number[];
  ms: number[];
  cpu: Array<Record<string, number>>;
}

/** A results row: a label, right-aligned columns, the last one left as it is. */
export function row(k: string, ...cols: string[]): void {
  process.stdout.write(`  ${k.padEnd(36)}${cols.map((c, i) => (i === cols.length - 1 ? c : c.padStart(12))).join('')}\n`);
}

/** What a baseline round gives: its rate and each change's latency. */
export interface Measured {
  rate: number;
  ms: number[];
}

export interface Comparison {
  base: Mode;
  hub: Mode;
  /** The rate the hook clients offered at, per pwsync round. */
  hookRates: number[];
  superseded: number;
  applied: number;
  pacedBase: Measured;
  pacedHub: Measured;
}

/**
 * The baseline and pwsync side by side: `rounds` rounds of `changes` each, the order swapped every
 * round, each started once the processes in `idle` are quiet and measured with a CPU meter over
 * `pids`; then one run of each at `rate`/s for `paced` changes.
 */
export async function compare(o: {
  rounds: number; changes: number; paced: number; rate: number;
  idle: Array<number | undefined | (() => number)>;
  pids: Record<string, number | undefined | (() => number)>;
  baseline(phase: string, count: number, rate?: number): Promise<Measured>;
  pwsync(phase: string, count: number, rate?: number): Promise<Settled>;
}): Promise<Comparison> {
  const base: Mode = { name: 'baseline', rates: [], ms: [], cpu: [] };
  const hub: Mode = { name: 'pwsync', rates: [], ms: [], cpu: [] };
  const hookRates: number[] = [];
  let superseded = 0;
  let applied = 0;
  for (let r = 0; r < o.rounds; r++) {
    for (const m of r % 2 === 0 ? [base, hub] : [hub, base]) {
      await quiesce(o.idle);
      const meter = cpuMeter(o.pids);
      if (m === base) {
        const b = await o.baseline(`b${r}`, o.changes);
        m.rates.push(b.rate);
        m.ms.push(...b.ms);
      } else {
        const s = await o.pwsync(`h${r}`, o.changes);
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
  await quiesce(o.idle);
  const pacedBase = await o.baseline('bp', o.paced, o.rate);
  await quiesce(o.idle);
  const pacedHub = await o.pwsync('hp', o.paced, o.rate);
  return { base, hub, hookRates, superseded, applied, pacedBase, pacedHub };
}

/** The results table and the CPU table of a comparison. `server` names the target's own process in `pids`. */
export function printComparison(c: Comparison, o: {
  rounds: number; changes: number; paced: number; rate: number; aim: number;
  baseline: string; pwsync: string; target: string; server: string; baselineDigits: number;
}): void {
  const { base, hub } = c;
  const n = (x: number, d = 0): string => x.toFixed(d);
  const perChange = (m: Mode, keys: string[]): string => n(median(m.cpu.map((cpu) => (keys.reduce((sum, k) => sum + cpu[k]!, 0) * 1000) / o.changes)), 3);
  const d = o.baselineDigits;
  process.stdout.write(`\nresults (medians over ${o.rounds} rounds of ${o.changes} changes)\n`);
  row('', 'changes/s', 'p50 ms', 'p99 ms', '   rounds (changes/s)');
  row(o.baseline, n(median(base.rates)), n(median(base.ms), d), n(pct(base.ms, 99), d), `   ${base.rates.map((x) => n(x)).join(', ')}`);
  row(o.pwsync, n(median(hub.rates)), n(median(hub.ms)), n(pct(hub.ms, 99)), `   ${hub.rates.map((x) => n(x)).join(', ')}  (hooked at ${n(median(c.hookRates))}/s; p50/p99 include the backlog)`);
  row('ratio pwsync / baseline', (median(hub.rates) / median(base.rates)).toFixed(2), '', '',
    `   (aim ≥ ${o.aim.toFixed(2)}; per round: ${hub.rates.map((x, i) => (x / base.rates[i]!).toFixed(2)).join(', ')})`);
  row(`at ${o.rate}/s offered, ${o.paced} changes: baseline`, '', n(median(c.pacedBase.ms), d), n(pct(c.pacedBase.ms, 99), d), '');
  row(`at ${o.rate}/s offered, ${o.paced} changes: pwsync`, '', n(median(c.pacedHub.ms)), n(pct(c.pacedHub.ms, 99)), `   (hook → ${o.target})`);
  process.stdout.write('\nCPU ms per change (median over rounds), and other processes\' load meanwhile\n');
  row('', 'bench', 'hub', 'notifier', o.server, 'all', '   others (cores)');
  for (const m of [base, hub]) {
    row(m.name, perChange(m, ['bench']), perChange(m, ['hub']), perChange(m, ['notifier']), perChange(m, [o.server]),
      perChange(m, ['bench', 'hub', 'notifier', o.server]), `   ${m.cpu.map((cpu) => cpu.others!.toFixed(2)).join(', ')}`);
  }
}
