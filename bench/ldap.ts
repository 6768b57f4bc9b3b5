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
import { Lab, REPO } from '../cli/lab.ts';
import { PASSWORD_MODIFY_OID, passwordModifyValue } from '../connectors/ldap/ldap.ts';
import { openSqliteBroker } from '../core/broker-sqlite.ts';
import { Secret } from '../core/secret.ts';
import { HubState } from '../hub/state.ts';
import { testPassword } from '../test/lib/passwords.ts';
import { compare, offer, printComparison, settle, type Settled, type Workload } from './lib.ts';

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
const WORKLOAD: Workload = { sam, password };

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

// ---- the run --------------------------------------------------------------------------------

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
      const o = await offer(lab!, WORKLOAD, phase, changeTime, count, HOOKS, rate);
      changeTime += count;
      const s = await settle(state, WORKLOAD, CONNECTOR, o, timeoutMs);
      if (s.failed.length > 0) throw new Error(`pwsync ${phase}: ${s.failed.length} changes failed, the first: ${s.failed[0]}`);
      return s;
    };
    await hookPhase('hw', ACCOUNTS);

    const pids = { bench: process.pid, hub: lab.hub?.proc.pid, notifier: lab.notifier?.proc.pid, slapd: slapd.pid };
    const c = await compare({
      rounds: ROUNDS, changes: CHANGES, paced: PACED, rate: RATE, idle: [pids.hub, pids.notifier, pids.slapd], pids,
      baseline: (phase, count, rate) => baselineRound(slapd!, clients, phase, count, rate),
      pwsync: (phase, count, rate) => hookPhase(phase, count, rate),
    });
    printComparison(c, {
      rounds: ROUNDS, changes: CHANGES, paced: PACED, rate: RATE, aim: 0.9,
      baseline: 'baseline: ldapts exops', pwsync: 'pwsync: hook → slapd, full speed', target: 'slapd', server: 'slapd', baselineDigits: 2,
    });
    const { applied, superseded } = c;
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
