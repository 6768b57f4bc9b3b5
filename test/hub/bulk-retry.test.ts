import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { Lab, spawnPwsync } from '../../cli/lab.ts';
import { retryFilter } from '../../cli/status.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { AuditTrail, localActor } from '../../hub/audit.ts';
import { failedUnreachable } from '../../hub/auto-retry.ts';
import type { OperationStatus } from '../../hub/records.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';

/**
 * Bulk retry (issue 15, part 4): `pwsync retry --connector C [--event N] [--since D | --from T
 * --to T] [--dry-run]` re-queues exactly the failed operations that match, each audited and logged
 * (event 6983), with or without a running hub.
 */
const H = 3_600_000;
const csv = (rows: string[]): string => `id,login,pwdHash\n${rows.map((r, i) => `${i + 1},${r},`).join('\n')}\n`;

let lab: Lab;
let db: string;
const now = Date.now();

const op = (opId: string, connector: string, state: OperationStatus['state'], eventId: number | undefined, ageH: number, sealed = true): OperationStatus => ({
  opId, changeId: `change-${opId}`, connector, objectId: '1', changeTime: now - ageH * H, state, attempts: 3, updatedAt: now - ageH * H,
  account: { domain: 'corp.example.com', samAccountName: opId, objectGuid: '', objectSid: '', upn: '', dn: '' },
  ...(eventId ? { eventId, reason: 'manufactured' } : {}), ...(sealed ? { envelope: 'c2VhbGVk' } : {}),
});

const OPS = [
  op('recent6941', 'csv', 'failed', 6941, 1),
  op('old6941', 'csv', 'failed', 6941, 5),
  op('recent6942', 'csv', 'failed', 6942, 1),
  op('othercsv', 'other', 'failed', 6941, 1),
  op('unsealed', 'csv', 'failed', 6941, 0.5, false),
  op('retrying', 'csv', 'retrying', 6940, 1),
  op('done', 'csv', 'successful', 6947, 1, false),
];

async function withState<T>(fn: (s: HubState, b: ReturnType<typeof openSqliteBroker>) => Promise<T>): Promise<T> {
  const broker = openSqliteBroker({ file: db });
  try {
    return await fn(await HubState.open(broker), broker);
  } finally {
    await broker.close();
  }
}

async function retry(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const p = spawnPwsync(['retry', '--config', lab.hubConfig, ...args]);
  const code = await p.exited;
  return { code, out: p.stdout(), err: p.stderr() };
}

const states = (): Promise<Map<string, OperationStatus>> => withState(async (s) => new Map((await s.listOperations()).map((o) => [o.opId, o])));

before(async () => {
  lab = await Lab.create({
    root: testDir('bulk-retry'),
    connectors: [
      { name: 'csv', kind: 'delimited', file: 'people.csv', content: csv(['a']), join: [{ target: 'login', source: 'sAMAccountName' }] },
      { name: 'other', kind: 'delimited', file: 'other.csv', content: csv(['a']), join: [{ target: 'login', source: 'sAMAccountName' }] },
    ],
  });
  mkdirSync(path.join(lab.root, 'hub-data'), { recursive: true });
  db = path.join(lab.root, 'hub-data', 'hub.db');
  await withState(async (s, b) => {
    // The consumers as a hub makes them, so that what is re-queued shows as pending.
    await b.consumer('ops-csv', 'ops.csv');
    await b.consumer('ops-other', 'ops.other');
    for (const o of OPS) await s.putOperation(o);
  });
});

test('a dry run lists what matches and changes nothing', async () => {
  const r = await retry('--connector', 'csv', '--event', '6941', '--since', '2h', '--dry-run');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^would re-queue recent6941 \(corp\.example\.com\\recent6941 → csv, event 6941, failed /m);
  assert.match(r.out, /would re-queue 1 failed set-operation \(connector csv, event 6941, failed from [^)]+\); dry run: nothing changed/);
  assert.match(r.out, /1 more match but hold no sealed password/);
  const after = await states();
  for (const o of OPS) assert.equal(after.get(o.opId)!.state, o.state, `${o.opId} untouched`);
  assert.equal((await withState(async (_s, b) => (await AuditTrail.open(b)).list())).length, 0, 'a dry run is not an action');
});

test('by connector, event and time: exactly the matching failures are re-queued, each audited and logged', async () => {
  const r = await retry('--connector', 'csv', '--event', '6941', '--since', '2h');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /re-queued 1 failed set-operation \(connector csv, event 6941/);
  const after = await states();
  const requeued = after.get('recent6941')!;
  assert.equal(requeued.state, 'queued');
  assert.equal(requeued.attempts, 0, 'attempts start again');
  assert.equal(requeued.reason, 'retried by an admin');
  assert.match(requeued.delivery!, /^recent6941\.requeue\./);
  for (const o of OPS.filter((x) => x.opId !== 'recent6941')) assert.equal(after.get(o.opId)!.state, o.state, `${o.opId} untouched`);
  const pending = await withState(async (_s, b) => [...await b.pendingMsgIds('ops-csv')]);
  assert.deepEqual(pending, [requeued.delivery], 'one set-operation queued for the hub, under the id the status records');
  const audit = await withState(async (_s, b) => (await AuditTrail.open(b)).list());
  assert.equal(audit.length, 1);
  assert.deepEqual({ ...audit[0], at: 0 }, {
    at: 0, ...localActor(), action: 'retry', subject: 'recent6941', result: 'ok',
    detail: audit[0]!.detail,
  });
  assert.match(audit[0]!.detail!, /^bulk: connector csv, event 6941, failed from .*; was event 6941$/);
  const logged = readFileSync(lab.hubLog, 'utf8').split('\n').filter((l) => l.includes('"eventId":6983'));
  assert.equal(logged.length, 1);
  assert.match(logged[0]!, /"opId":"recent6941"/);
});

test('by a span of failure times (--from/--to), every event', async () => {
  const from = new Date(now - 6 * H).toISOString();
  const to = new Date(now - 4 * H).toISOString();
  const r = await retry('--connector', 'csv', '--from', from, '--to', to);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /re-queued 1 failed set-operation \(connector csv, failed from .* to .*\)/);
  const after = await states();
  assert.equal(after.get('old6941')!.state, 'queued');
  assert.equal(after.get('recent6942')!.state, 'failed', 'outside the span');
  assert.equal(after.get('othercsv')!.state, 'failed', 'another connector');
});

test('a bulk retry that is not clear is refused with what to write instead', async () => {
  for (const [args, message] of [
    [['--event', '6941'], /--event selects among a connector's failures: add --connector NAME/],
    [['--connector', 'nosuch'], /--connector nosuch: no such connector in .*; its connectors: csv, other/],
  ] as const) {
    const r = await retry(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.out}${r.err}`);
    assert.match(r.err, message);
  }
  assert.throws(() => retryFilter([], { connector: 'csv', since: '2x' }), /--since 2x: not a duration; write it as 30m, 2h or 3d/);
  assert.throws(() => retryFilter(['someid'], { connector: 'csv' }), /give operation ids or --connector, not both/);
  assert.throws(() => retryFilter([], {}), /name the operations to retry/);
  assert.throws(() => retryFilter([], { connector: 'csv', since: '2h', from: '2026-01-01T00:00:00Z' }), /--since and --from\/--to both give the time span: use one/);
  assert.throws(() => retryFilter([], { connector: 'csv', event: '1234' }), /--event 1234: not an event id of pwsync/);
  assert.throws(() => retryFilter([], { connector: 'csv', from: 'yesterday' }), /--from yesterday: not a time; write it in ISO 8601/);
  assert.throws(() => retryFilter([], { connector: 'csv', from: '2026-02-01T00:00:00Z', to: '2026-01-01T00:00:00Z' }), /is after --to/);
  assert.deepEqual(retryFilter([], { connector: 'csv', since: '2h' }, 10 * H), { connector: 'csv', from: 8 * H });
});

test('only failures for want of a reachable target are retried automatically', () => {
  assert.deepEqual(OPS.filter(failedUnreachable).map((o) => o.opId), ['recent6941', 'old6941', 'othercsv']);
});
