/**
 * `npm run bench:sql`: password changes into a PostgreSQL application table. 5,000 changes over
 * 1,000 rows of app_users, hook → notifier → hub → postgresql connector → builtin:sql-table
 * (`UPDATE app_users SET pwhash = :hash WHERE login = :login`, the hash computed in the hub), against
 * a baseline that runs the same UPDATE with the same hash computed in-process (the same
 * hashFromSettings) straight through a pg.Pool of the connector's poolSize over verify-full TLS, with
 * as many changes in flight as the hub can have: concurrency × the extension's concurrentSets. Both
 * in one run, rounds alternated; prints per mode the median changes/s, p50/p99 per change, the ratio
 * pwsync/baseline, latencies at a fixed offered rate and the CPU each process spent per change.
 *
 * pwsync's latency of a change runs from the start of its hook call to the hub's success time of its
 * set-operation (written once PostgreSQL answered), as bench/ldap.ts measures it. PostgreSQL 15
 * comes from test/lib/postgres.ts (TLS, fsync off); the bench's role logs no statements (the
 * harness's log_statement=all is for the secrecy tests, and would write every hash to the log).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { Lab } from '../cli/lab.ts';
import { openSqliteBroker } from '../core/broker-sqlite.ts';
import { Secret } from '../core/secret.ts';
import { hashFromSettings } from '../extensions/builtin/password-hash.ts';
import sqlTable from '../extensions/builtin/sql-table.ts';
import { HubState } from '../hub/state.ts';
import { testPassword } from '../test/lib/passwords.ts';
import { startPostgres, type Postgres } from '../test/lib/postgres.ts';
import { compare, offer, printComparison, settle, type Settled, type Workload } from './lib.ts';

const ACCOUNTS = Number(process.env.BENCH_ACCOUNTS ?? 1_000);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 5_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** The hub's lanes for the connector and its pool: each lane's batch has its own extension instance and connection. */
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 2);
const POOL = Number(process.env.BENCH_POOL ?? 2);
const BATCH = Number(process.env.BENCH_BATCH ?? 100);
const HOOKS = Number(process.env.BENCH_HOOKS ?? 32);
const PACED = Number(process.env.BENCH_PACED ?? 1_000);
const RATE = Number(process.env.BENCH_RATE ?? 100);
/** scrypt's N (cost): 2^12 with r 8, p 1 is 4 MiB and ~13 ms a hash on one core here; identical in both modes. */
const HASH = { scheme: 'scrypt', cost: Number(process.env.BENCH_SCRYPT_N ?? 4096), blockSize: 8, parallelization: 1 };
/** Diagnosis: the services' log level (debug logs every connector call with its time), and BENCH_KEEP=1 keeps the folder. */
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? 'warn';
const CONNECTOR = 'appdb';
const STATEMENT = 'UPDATE app_users SET pwhash = :hash WHERE login = :login';
/** The same UPDATE as the baseline writes it for pg ($n placeholders: what connectors/sql/params.ts makes of STATEMENT). */
const BASELINE_STATEMENT = 'UPDATE app_users SET pwhash = $1 WHERE login = $2';
/** How many setPassword calls builtin:sql-table lets overlap in one batch. */
const CONCURRENT_SETS = sqlTable().concurrentSets ?? 1;
const IN_FLIGHT = CONCURRENCY * CONCURRENT_SETS;

const sam = (i: number): string => `user${String(i % ACCOUNTS).padStart(4, '0')}`;
/** Every password of the run is new, and all are 19 bytes long. */
const password = (phase: string, i: number): Secret => Secret.adopt(testPassword(`${phase}-${String(i).padStart(6, '0')}`));
const WORKLOAD: Workload = { sam, password };

/** The postmaster's pid (data/postmaster.pid), so that it can be stopped even when the run dies. */
function postmasterPid(srv: Postgres): number {
  const pid = Number(readFileSync(path.join(srv.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no postmaster pid in ${srv.dir}/data/postmaster.pid`);
  return pid;
}

/** CPU seconds the postmaster, its live backends and the ones it has reaped have used so far. */
function postgresCpu(postmaster: number): () => number {
  return () => {
    const fields = readFileSync(`/proc/${postmaster}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
    let total = (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / 100;
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const f = readFileSync(`/proc/${d}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
        if (Number(f[1]) === postmaster) total += (Number(f[11]) + Number(f[12])) / 100;
      } catch {
        // a backend that ended meanwhile: its time is in the postmaster's reaped-children fields
      }
    }
    return total;
  };
}

// ---- the baseline: pg.Pool, the same UPDATE and hash ----------------------------------------

function baselinePool(srv: Postgres): pg.Pool {
  const pool = new pg.Pool({
    host: '127.0.0.1', port: srv.port, database: 'postgres', user: 'pwsync',
    // The service account's password is random base64url from the harness, held as a string for the handshake.
    password: readFileSync(srv.pwsyncPasswordFile, 'utf8').trim(),
    ssl: { ca: srv.ca, rejectUnauthorized: true, servername: 'localhost' }, max: POOL,
    connectionTimeoutMillis: 10_000, statement_timeout: 10_000, query_timeout: 11_000,
  });
  pool.on('error', () => {});
  return pool;
}

/**
 * `count` UPDATEs, change i to login i % ACCOUNTS with a fresh hash of its password, IN_FLIGHT at a
 * time over the pool; `rate` > 0 paces them. Returns changes/s and the time of each, from its start
 * (or its due time when paced) to PostgreSQL's answer.
 */
async function baselineRound(pool: pg.Pool, hash: (p: Buffer) => Promise<string>, phase: string, count: number, rate = 0): Promise<{ rate: number; ms: number[] }> {
  const ms: number[] = [];
  let next = 0;
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
      const pw = password(phase, i);
      let stored: string;
      try {
        stored = await pw.use((bytes) => hash(bytes));
      } finally {
        pw.dispose();
      }
      const r = await pool.query(BASELINE_STATEMENT, [stored, sam(i)]);
      if (r.rowCount !== 1) throw new Error(`baseline: the UPDATE for ${sam(i)} changed ${r.rowCount} rows`);
      ms.push(performance.now() - from);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  return { rate: count / ((performance.now() - t0) / 1000), ms };
}

// ---- the run --------------------------------------------------------------------------------

async function main(): Promise<void> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'pwsync-bench-sql-'));
  let srv: Postgres | undefined;
  let postmaster: number | undefined;
  let lab: Lab | undefined;
  let pool: pg.Pool | undefined;
  let broker: ReturnType<typeof openSqliteBroker> | undefined;
  // Should the run die without reaching `finally`, nothing it started outlives it (SIGQUIT: the
  // postmaster's immediate shutdown, which takes its backends with it).
  const leftovers = (): void => {
    // startPostgres may have started the postmaster and then failed (setting up roles): its pid file tells.
    if (postmaster === undefined) {
      try {
        postmaster = Number(readFileSync(path.join(root, 'pg', 'data', 'postmaster.pid'), 'utf8').split('\n')[0]) || undefined;
      } catch {
        // never started
      }
    }
    for (const [pid, signal] of [[lab?.notifier?.proc.pid, 'SIGKILL'], [lab?.hub?.proc.pid, 'SIGKILL'], [postmaster, 'SIGQUIT']] as const) {
      try {
        if (pid) process.kill(pid, signal);
      } catch {
        // already gone
      }
    }
    rmSync(root, { recursive: true, force: true });
  };
  process.once('exit', leftovers);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  try {
    mkdirSync(path.join(root, 'pg'), { mode: 0o700 });
    srv = await startPostgres(path.join(root, 'pg'));
    postmaster = postmasterPid(srv);
    const admin = await srv.admin();
    let version: string;
    try {
      await admin.query('ALTER ROLE pwsync SET log_statement = \'none\'');
      await admin.query('INSERT INTO app_users (login, email) SELECT \'user\' || lpad(g::text, 4, \'0\'), \'user\' || g || \'@example.com\' FROM generate_series(0, $1::int - 1) g', [ACCOUNTS]);
      await admin.query('DELETE FROM app_users WHERE login NOT LIKE \'user%\'');
      await admin.query('VACUUM ANALYZE app_users');
      version = String((await admin.query('SHOW server_version')).rows[0]?.server_version ?? '?');
    } finally {
      await admin.end();
    }
    lab = await Lab.create({
      root: path.join(root, 'lab'), connectors: [], logLevel: LOG_LEVEL,
      hubConnectors: [{
        name: CONNECTOR, kind: 'postgresql', enabled: true,
        connection: {
          host: '127.0.0.1', port: srv.port, database: 'postgres', user: 'pwsync', password: { fromFile: srv.pwsyncPasswordFile },
          tls: { ca: srv.caFile, serverName: 'localhost' }, poolSize: POOL, timeout: '10s',
          objects: { query: 'SELECT login AS id FROM app_users', anchor: 'id' },
        },
        join: [{ target: 'id', source: 'sAMAccountName' }],
        extension: { module: 'builtin:sql-table', settings: { statement: STATEMENT, params: { login: 'id' }, hash: HASH } },
        retry: { count: 3, interval: '1s' }, concurrency: CONCURRENCY, batchSize: BATCH, timeout: '60s',
      }],
    });
    await lab.startHub();
    await lab.startNotifier();
    broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
    const state = await HubState.open(broker);
    pool = baselinePool(srv);
    const hash = await hashFromSettings(HASH, (p) => p);
    process.stdout.write(`pwsync bench:sql: ${CHANGES} changes over ${ACCOUNTS} rows to PostgreSQL ${version} (TLS verify-full, fsync off), `
      + `table mode: ${STATEMENT}, hash scrypt N=${HASH.cost} r=${HASH.blockSize} p=${HASH.parallelization} in both modes; `
      + `hub concurrency ${CONCURRENCY} × concurrentSets ${CONCURRENT_SETS}, batch ${BATCH}, connector poolSize ${POOL}; `
      + `baseline: pg.Pool max ${POOL}, ${IN_FLIGHT} in flight; libuv threads ${process.env.UV_THREADPOOL_SIZE ?? 4} per process; `
      + `${ROUNDS} rounds, alternated; ${os.cpus().length} cores\n`);

    // Warm-up, not measured: the baseline's connections and JIT, and the hub's joins (one per row) and JIT.
    await baselineRound(pool, hash, 'bw', ACCOUNTS);
    let changeTime = Date.now() - 10 * 60_000;
    const hookPhase = async (phase: string, count: number, rate = 0, timeoutMs = 240_000): Promise<Settled> => {
      const o = await offer(lab!, WORKLOAD, phase, changeTime, count, HOOKS, rate);
      changeTime += count;
      const s = await settle(state, WORKLOAD, CONNECTOR, o, timeoutMs);
      if (s.failed.length > 0) throw new Error(`pwsync ${phase}: ${s.failed.length} changes failed, the first: ${s.failed[0]}`);
      return s;
    };
    await hookPhase('hw', ACCOUNTS);

    const pgCpu = postgresCpu(postmaster);
    const pids = { bench: process.pid, hub: lab.hub?.proc.pid, notifier: lab.notifier?.proc.pid, postgres: pgCpu };
    const idle = [pids.hub, pids.notifier, pgCpu];
    const c = await compare({
      rounds: ROUNDS, changes: CHANGES, paced: PACED, rate: RATE, idle, pids,
      baseline: (phase, count, rate) => baselineRound(pool!, hash, phase, count, rate),
      pwsync: (phase, count, rate) => hookPhase(phase, count, rate),
    });
    const { applied, superseded } = c;

    // Every row holds a hash of the scheme: the UPDATEs landed.
    const check = await pool.query('SELECT count(*)::int AS n FROM app_users WHERE pwhash LIKE \'$scrypt$%\'');
    const hashed = Number(check.rows[0]?.n);

    printComparison(c, {
      rounds: ROUNDS, changes: CHANGES, paced: PACED, rate: RATE, aim: 0.8,
      baseline: 'baseline: pg.Pool UPDATEs', pwsync: 'pwsync: hook → PostgreSQL', target: 'PostgreSQL', server: 'postgres', baselineDigits: 1,
    });
    process.stdout.write(`\npwsync measured rounds: ${applied} UPDATEs applied, ${superseded} changes superseded in a batch by a newer one for the same account (6919); none failed (a failure stops the run); ${hashed}/${ACCOUNTS} rows hold an scrypt hash\n`);
  } finally {
    await pool?.end().catch(() => undefined);
    await broker?.close();
    await lab?.stopAll();
    await srv?.stop();
    postmaster = undefined;
    process.removeListener('exit', leftovers);
    if (process.env.BENCH_KEEP) process.stdout.write(`kept ${root}\n`);
    else rmSync(root, { recursive: true, force: true });
  }
}

await main();
