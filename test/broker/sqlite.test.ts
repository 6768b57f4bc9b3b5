import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { KvConflictError, type Broker, type Consumer, type Delivery } from '../../core/broker.ts';
import { openSqliteBroker, type SqliteBrokerOptions } from '../../core/broker-sqlite.ts';
import { brokerContract } from './contract.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = fs.mkdtempSync(path.join(process.env.PWSYNC_TEST_ROOT ?? os.tmpdir(), 'broker-'));
let fileCount = 0;
const freshFile = (): string => path.join(root, `broker-${fileCount++}.db`);
const fileOf = new WeakMap<Broker, string>();

function opener(opts: Omit<SqliteBrokerOptions, 'file'> = {}) {
  const openFile = (file: string): Broker => {
    const b = openSqliteBroker({ file, ...opts });
    fileOf.set(b, file);
    return b;
  };
  return {
    open: async () => openFile(freshFile()),
    reopen: async (closed: Broker) => openFile(fileOf.get(closed)!),
  };
}

for (const [name, opts] of [
  ['sqlite', {}],
  ['sqlite, groupCommitMs 5', { groupCommitMs: 5 }],
  ['sqlite, one transaction per write', { maxBatch: 1 }],
] as const) {
  const { open, reopen } = opener(opts);
  brokerContract(name, open, reopen);
}

interface ChildRun {
  lines: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Runs a child script under test/broker/ and collects its `acked …` lines; with `killAfter`, sends
 * SIGKILL as soon as that many lines arrived. Bounded: killed after `limitMs` whatever happens.
 */
function runChild(script: string, args: string[], killAfter?: number, limitMs = 60_000): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, script), ...args], {
      cwd: path.join(here, '..', '..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    let partial = '';
    let stderr = '';
    const limit = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop()!;
      lines.push(...parts);
      if (killAfter !== undefined && lines.length >= killAfter) child.kill('SIGKILL');
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      if (code !== 0 && signal === null) reject(new Error(`${script} exited with ${code}: ${stderr}`));
      // A line cut by the kill was never acknowledged in full: it does not count.
      else resolve({ lines, code, signal });
    });
  });
}

/** Fetches and acks everything due, until a quiet second; bounded. */
async function drainAll(c: Consumer): Promise<Delivery[]> {
  const out: Delivery[] = [];
  for (let round = 0; round < 10_000; round++) {
    const got = await c.fetch({ max: 500, expiresMs: 1000 });
    if (got.length === 0) return out;
    await Promise.all(got.map((d) => d.ack()));
    out.push(...got);
  }
  throw new Error('drainAll: the consumer never ran dry');
}

const ackedIds = (run: ChildRun): string[] => run.lines.map((l) => {
  const m = /^acked (\S+)/.exec(l);
  assert.ok(m, `unexpected child output: ${l}`);
  return m[1]!;
});

describe('SQLite broker: several processes, crashes, clean-up', () => {
  test('a message published by another process is seen by this process\'s consumer', { timeout: 60_000 }, async () => {
    const file = freshFile();
    const b = openSqliteBroker({ file });
    try {
      const c = await b.consumer('watch', 'xproc.>');
      const mine = await b.publish('xproc.0', Buffer.from('from the parent'), { msgId: 'xproc-0' });
      const received: Delivery[] = [];
      let childDone = false;
      const child = runChild('child-publish.ts', [file, '20', 'xproc', '4', '0']).finally(() => { childDone = true; });
      const deadline = Date.now() + 45_000;
      while (received.length < 20 && Date.now() < deadline) {
        const got = await c.fetch({ max: 50, expiresMs: childDone ? 500 : 2000 });
        for (const d of got) await d.ack();
        received.push(...got);
        if (childDone && got.length === 0) break;
      }
      const run = await child;
      assert.ok(run.lines.includes(`acked xproc-0 ${mine.seq} dup`), 'dedupe holds across processes');
      assert.equal(run.lines.filter((l) => l.endsWith(' new')).length, 19);
      assert.deepEqual(received.map((d) => d.msgId).sort(),
        Array.from({ length: 20 }, (_, i) => `xproc-${i}`).sort());
    } finally {
      await b.close();
    }
  });

  test('kill -9 while publishing: every acknowledged publish is stored, once', { timeout: 120_000 }, async () => {
    const file = freshFile();
    const setup = openSqliteBroker({ file });
    await setup.consumer('before', 'crash.>');
    await setup.close();
    const run = await runChild('child-publish.ts', [file, '5000', 'crash', '64', '10'], 1500);
    assert.equal(run.signal, 'SIGKILL', 'the publisher was killed midway, not finished');
    const acked = ackedIds(run);
    assert.ok(acked.length >= 1500 && acked.length < 5000, `killed after ${acked.length} acks`);

    const b = openSqliteBroker({ file });
    try {
      for (const durable of ['before', 'after']) {
        const got = await drainAll(await b.consumer(durable, 'crash.>'));
        const ids = got.map((d) => d.msgId);
        assert.equal(new Set(ids).size, ids.length, `${durable}: no message stored twice`);
        const stored = new Set(ids);
        const lost = acked.filter((id) => !stored.has(id));
        assert.deepEqual(lost, [], `${durable}: acknowledged publishes lost in the crash`);
      }
    } finally {
      await b.close();
    }
  });

  test('kill -9 while acknowledging: an ack that resolved is never redelivered', { timeout: 120_000 }, async () => {
    const file = freshFile();
    const setup = openSqliteBroker({ file });
    await setup.consumer('work', 'job.>');
    const all = Array.from({ length: 3000 }, (_, i) => `job-${i}`);
    await Promise.all(all.map((id, i) => setup.publish(`job.${i % 3}`, Buffer.from(id), { msgId: id })));
    await setup.close();

    const run = await runChild('child-ack.ts', [file, 'work', 'job.>', '10'], 1500);
    assert.equal(run.signal, 'SIGKILL', 'the consumer was killed midway, not finished');
    const acked = ackedIds(run);
    assert.ok(acked.length >= 1500 && acked.length < 3000, `killed after ${acked.length} acks`);

    const b = openSqliteBroker({ file });
    try {
      const rest = (await drainAll(await b.consumer('work', 'job.>'))).map((d) => d.msgId);
      const ackedSet = new Set(acked);
      assert.deepEqual(rest.filter((id) => ackedSet.has(id)), [], 'acknowledged before the kill, delivered again');
      const seen = new Set([...acked, ...rest]);
      assert.equal(seen.size, acked.length + rest.length, 'no message delivered twice after the restart');
      // An ack may commit and the child die before printing it: at most one fetch (64) of those.
      const unaccounted = all.filter((id) => !seen.has(id));
      assert.ok(unaccounted.length <= 64, `${unaccounted.length} messages neither acked nor pending`);
    } finally {
      await b.close();
    }
  });

  test('two brokers on one file: KV compare-and-set holds between them', { timeout: 30_000 }, async () => {
    const file = freshFile();
    const a = openSqliteBroker({ file });
    const b = openSqliteBroker({ file });
    try {
      const kvA = await a.kv('joins');
      const kvB = await b.kv('joins');
      const settled = await Promise.allSettled([kvA.create('obj', Buffer.from('a')), kvB.create('obj', Buffer.from('b'))]);
      assert.equal(settled.filter((r) => r.status === 'fulfilled').length, 1);
      const loser = settled.find((r) => r.status === 'rejected');
      assert.ok(loser?.status === 'rejected' && loser.reason instanceof KvConflictError);
      const seenA = await kvA.get('obj');
      const seenB = await kvB.get('obj');
      assert.deepEqual(seenA, seenB);
      const r2 = await kvB.update('obj', Buffer.from('b2'), seenB!.revision);
      await assert.rejects(kvA.update('obj', Buffer.from('stale'), seenA!.revision), KvConflictError);
      assert.equal((await kvA.get('obj'))?.revision, r2);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('putMany is one transaction: a lost compare-and-set anywhere in the batch writes none of it', { timeout: 30_000 }, async () => {
    const b = openSqliteBroker({ file: freshFile() });
    try {
      const kv = await b.kv('notices');
      const taken = await kv.create('k999', Buffer.from('someone else'));
      const batch = Array.from({ length: 1000 }, (_, i) => ({ key: `k${i}`, value: Buffer.from(`mine ${i}`), revision: 0 }));
      // Writes queued beside the batch commit in the same group; the batch's failure takes none of them along.
      const beside = kv.put('beside', Buffer.from('kept'));
      await assert.rejects(kv.putMany(batch), (e: unknown) => e instanceof KvConflictError && e.key === 'k999');
      await beside;
      assert.deepEqual(await kv.keys('k'), ['k999']);
      assert.equal((await kv.get('k999'))?.revision, taken);
      assert.equal((await kv.get('beside'))?.value.toString(), 'kept');
      // Its revisions are consecutive: the batch was written as one, nothing interleaved.
      const revs = await kv.putMany(batch.map((w, i) => (i === 999 ? { ...w, revision: taken } : w)));
      assert.deepEqual(revs, revs.map((_, i) => revs[0]! + i));
    } finally {
      await b.close();
    }
  });

  test('a msgId older than the dedupe window is stored again', { timeout: 30_000 }, async () => {
    const b = openSqliteBroker({ file: freshFile(), dedupeWindowMs: 100 });
    try {
      const first = await b.publish('w.a', Buffer.from('1'), { msgId: 'same' });
      assert.equal((await b.publish('w.a', Buffer.from('2'), { msgId: 'same' })).duplicate, true);
      await new Promise((r) => setTimeout(r, 200));
      const later = await b.publish('w.a', Buffer.from('3'), { msgId: 'same' });
      assert.equal(later.duplicate, false);
      assert.ok(later.seq > first.seq);
    } finally {
      await b.close();
    }
  });

  test('clean-up removes acknowledged messages, unclaimed old ones and old dedupe entries', { timeout: 30_000 }, async () => {
    const file = freshFile();
    const b = openSqliteBroker({ file, cleanupIntervalMs: 20, dedupeWindowMs: 300 });
    const peek = new Database(file, { readonly: true });
    const count = (table: string): number => (peek.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    try {
      const c = await b.consumer('clean', 'clean.>');
      for (let i = 0; i < 50; i++) await b.publish('clean.a', Buffer.alloc(400, i), { msgId: `c-${i}` });
      for (let i = 0; i < 5; i++) await b.publish('nobody.a', Buffer.alloc(400, i), { msgId: `n-${i}` });
      const got = await c.fetch({ max: 50, expiresMs: 5000 });
      assert.equal(got.length, 50);
      for (const d of got.slice(0, 40)) await d.ack();
      let messages = -1;
      for (let i = 0; i < 100 && messages !== 10; i++) {
        await new Promise((r) => setTimeout(r, 50));
        messages = count('messages');
      }
      assert.equal(messages, 10, 'the 10 unacknowledged are kept; acknowledged and unclaimed old ones are gone');
      assert.equal(count('dedupe'), 0, 'dedupe entries older than the window are gone');
      assert.equal(count('consumer_msgs'), 10);
      for (const d of got.slice(40)) await d.ack();
    } finally {
      peek.close();
      await b.close();
    }
  });

  test('a durable consumer keeps its filter; bad names say what is wrong', { timeout: 30_000 }, async () => {
    const file = freshFile();
    const b = openSqliteBroker({ file });
    try {
      await b.consumer('ops-ldap', 'ops.ldap.>');
      await assert.rejects(b.consumer('ops-ldap', 'ops.sql.>'), /already exists with filter ops\.ldap\.>/);
      await assert.rejects(b.publish('ops.*', Buffer.alloc(1), { msgId: 'x' }), /subject "ops\.\*" is invalid/);
      await assert.rejects(b.publish('ops..x', Buffer.alloc(1), { msgId: 'x' }), /invalid/);
      await assert.rejects(b.publish('ops.x', Buffer.alloc(1), { msgId: '' }), /msgId must be a non-empty string/);
      await assert.rejects(b.consumer('has.dot', 'ops.>'), /durable consumer name/);
      await assert.rejects(b.consumer('ok', 'ops.>.x'), /filter subject/);
      await assert.rejects(b.kv('bad bucket'), /kv bucket name/);
    } finally {
      await b.close();
    }
    const restarted = openSqliteBroker({ file });
    try {
      await assert.rejects(restarted.consumer('ops-ldap', 'ops.sql.>'), /already exists with filter/);
    } finally {
      await restarted.close();
    }
  });
});
