import type Database from 'better-sqlite3';
import type { Broker, Consumer, ConsumerOptions, KvStore, PendingListing, PublishAck, PublishOptions } from './broker.ts';
import { subjectMatches } from './broker.ts';
import { GroupCommit, WriteRejected } from './broker-sqlite-commit.ts';
import { SqliteConsumer } from './broker-sqlite-consumer.ts';
import { SqliteKv } from './broker-sqlite-kv.ts';
import { SUBJECT_MATCH_FN, openBrokerDb } from './broker-sqlite-schema.ts';
import { checkDurableName, checkFilter, checkSubject } from './broker-sqlite-names.ts';
import { silentLogger, type Logger } from './log.ts';

export interface SqliteBrokerOptions {
  file: string;
  /** Wait this long for more writes before committing a batch; default 0 (next turn of the loop). */
  groupCommitMs?: number;
  /** How long a msgId dedupes; default 7 days (must outlast the notifier's 72 h retry horizon). */
  dedupeWindowMs?: number;
  log?: Logger;
  /** Commit at once at this many queued writes; default 1000. 1 = one transaction per write (bench baseline). */
  maxBatch?: number;
  /** How often a waiting fetch re-reads the file, to see other processes' publishes; default 50. */
  pollMs?: number;
  /** How often acknowledged messages and expired dedupe entries are removed; default 10 s. */
  cleanupIntervalMs?: number;
  /** How long a write waits for another process's lock on the file; default 5 s. */
  busyTimeoutMs?: number;
}

interface Settings {
  file: string;
  groupCommitMs: number;
  dedupeWindowMs: number;
  log: Logger;
  maxBatch: number;
  pollMs: number;
  cleanupIntervalMs: number;
  busyTimeoutMs: number;
}

const DAY_MS = 24 * 3600_000;
/** Rows removed per table per clean-up pass, so a pass never holds the write lock for long. */
const CLEANUP_LIMIT = 2000;

function settings(o: SqliteBrokerOptions): Settings {
  const ms = (name: string, v: number | undefined, dflt: number, min: number): number => {
    const n = v ?? dflt;
    if (!Number.isFinite(n) || n < min) {
      throw new RangeError(`openSqliteBroker: ${name} must be a number >= ${min}, got ${String(v)}`);
    }
    return n;
  };
  if (typeof o.file !== 'string' || o.file.length === 0) {
    throw new TypeError('openSqliteBroker: file must name the broker database file (e.g. /var/lib/pwsync/broker.db)');
  }
  return {
    file: o.file,
    groupCommitMs: ms('groupCommitMs', o.groupCommitMs, 0, 0),
    dedupeWindowMs: ms('dedupeWindowMs', o.dedupeWindowMs, 7 * DAY_MS, 1),
    log: o.log ?? silentLogger(),
    maxBatch: Math.floor(ms('maxBatch', o.maxBatch, 1000, 1)),
    pollMs: ms('pollMs', o.pollMs, 50, 1),
    cleanupIntervalMs: ms('cleanupIntervalMs', o.cleanupIntervalMs, 10_000, 1),
    busyTimeoutMs: ms('busyTimeoutMs', o.busyTimeoutMs, 5_000, 0),
  };
}

/**
 * The embedded broker: one SQLite file (WAL, synchronous=FULL) that the hub and the `pwsync`
 * CLI may open at the same time. Every write goes through group commit (see GroupCommit).
 *
 * Retention: a message is removed once every consumer whose filter matches it has acknowledged or
 * terminated it; one that no consumer matched is kept for `dedupeWindowMs`, for a consumer created
 * later. One process should consume a given durable name (leases are per process).
 */
export function openSqliteBroker(opts: SqliteBrokerOptions): Broker & PendingListing {
  return new SqliteBroker(settings(opts));
}

class SqliteBroker implements Broker, PendingListing {
  readonly db: Database.Database;
  readonly commit: GroupCommit;
  readonly log: Logger;
  readonly pollMs: number;
  closed = false;
  private readonly consumers = new Map<string, SqliteConsumer>();
  private readonly buckets = new Map<string, SqliteKv>();
  private cleanupTimer: NodeJS.Timeout | undefined;
  private readonly sql;

  constructor(private readonly s: Settings) {
    this.db = openBrokerDb(s.file, s.busyTimeoutMs);
    this.log = s.log.child({ component: 'broker', file: s.file });
    this.pollMs = s.pollMs;
    this.commit = new GroupCommit(this.db, { groupCommitMs: s.groupCommitMs, maxBatch: s.maxBatch, file: s.file });
    const db = this.db;
    this.sql = {
      seen: db.prepare<[string], { seq: number; at: number }>('SELECT seq, at FROM dedupe WHERE msg_id = ?'),
      interested: db.prepare<[string], { n: number }>(
        `SELECT EXISTS (SELECT 1 FROM consumers WHERE ${SUBJECT_MATCH_FN}(filter, ?)) AS n`),
      insert: db.prepare(
        'INSERT INTO messages (subject, msg_id, data, published_at, claimed) VALUES (?, ?, ?, ?, ?)'),
      fanOut: db.prepare(
        'INSERT INTO consumer_msgs (consumer, seq, due_at, delivery_count) ' +
        `SELECT name, ?, 0, 0 FROM consumers WHERE ${SUBJECT_MATCH_FN}(filter, ?)`),
      remember: db.prepare(
        'INSERT INTO dedupe (msg_id, seq, at) VALUES (?, ?, ?) ' +
        'ON CONFLICT (msg_id) DO UPDATE SET seq = excluded.seq, at = excluded.at'),
      consumer: db.prepare<[string], { filter: string }>('SELECT filter FROM consumers WHERE name = ?'),
      addConsumer: db.prepare('INSERT INTO consumers (name, filter, created_at) VALUES (?, ?, ?)'),
      backfill: db.prepare(
        'INSERT INTO consumer_msgs (consumer, seq, due_at, delivery_count) ' +
        `SELECT ?, seq, 0, 0 FROM messages WHERE ${SUBJECT_MATCH_FN}(?, subject)`),
      claim: db.prepare(`UPDATE messages SET claimed = 1 WHERE claimed = 0 AND ${SUBJECT_MATCH_FN}(?, subject)`),
      dropDone: db.prepare(
        'DELETE FROM messages WHERE seq IN (SELECT m.seq FROM messages m WHERE m.claimed = 1 AND NOT EXISTS ' +
        '(SELECT 1 FROM consumer_msgs c WHERE c.seq = m.seq) LIMIT ?)'),
      dropUnclaimed: db.prepare(
        'DELETE FROM messages WHERE seq IN (SELECT seq FROM messages WHERE claimed = 0 AND published_at < ? LIMIT ?)'),
      dropDedupe: db.prepare('DELETE FROM dedupe WHERE msg_id IN (SELECT msg_id FROM dedupe WHERE at < ? LIMIT ?)'),
      pending: db.prepare<[string], { msg_id: string }>(
        'SELECT m.msg_id FROM consumer_msgs c JOIN messages m ON m.seq = c.seq WHERE c.consumer = ?'),
    };
    this.scheduleCleanup(s.cleanupIntervalMs);
  }

  assertOpen(): void {
    if (this.closed) {
      throw new Error(`broker on ${this.s.file} is closed; open it again with openSqliteBroker() to use it`);
    }
  }

  async publish(subject: string, data: Buffer, opts: PublishOptions): Promise<PublishAck> {
    this.assertOpen();
    checkSubject(subject);
    const msgId = opts?.msgId;
    if (typeof msgId !== 'string' || msgId.length === 0) {
      throw new TypeError(`publish to ${subject}: opts.msgId must be a non-empty string (it is the dedupe key)`);
    }
    const stored = Buffer.from(data);
    const ack = await this.commit.run((): PublishAck => {
      const now = Date.now();
      const seen = this.sql.seen.get(msgId);
      if (seen && seen.at > now - this.s.dedupeWindowMs) return { seq: seen.seq, duplicate: true };
      const claimed = this.sql.interested.get(subject)!.n;
      const seq = Number(this.sql.insert.run(subject, msgId, stored, now, claimed).lastInsertRowid);
      if (claimed) this.sql.fanOut.run(seq, subject);
      this.sql.remember.run(msgId, seq, now);
      return { seq, duplicate: false };
    });
    if (!ack.duplicate) {
      for (const c of this.consumers.values()) if (subjectMatches(c.filter, subject)) c.wake();
    }
    return ack;
  }

  async consumer(durableName: string, filterSubject: string, opts: ConsumerOptions = {}): Promise<Consumer> {
    this.assertOpen();
    checkDurableName(durableName);
    checkFilter(filterSubject);
    const ackWaitMs = opts.ackWaitMs ?? 30_000;
    if (!(Number.isFinite(ackWaitMs) && ackWaitMs > 0)) {
      throw new RangeError(`consumer ${durableName}: ackWaitMs must be a number > 0, got ${String(opts.ackWaitMs)}`);
    }
    const known = this.consumers.get(durableName);
    if (known) {
      if (known.filter !== filterSubject) throw filterMismatch(durableName, known.filter, filterSubject);
      known.ackWaitMs = ackWaitMs;
      return known;
    }
    await this.commit.run(() => {
      const row = this.sql.consumer.get(durableName);
      if (row) {
        if (row.filter !== filterSubject) throw new WriteRejected(filterMismatch(durableName, row.filter, filterSubject));
        return;
      }
      this.sql.addConsumer.run(durableName, filterSubject, Date.now());
      this.sql.backfill.run(durableName, filterSubject);
      this.sql.claim.run(filterSubject);
    });
    const raced = this.consumers.get(durableName);
    if (raced) return raced;
    const c = new SqliteConsumer(durableName, filterSubject, ackWaitMs, this);
    this.consumers.set(durableName, c);
    return c;
  }

  async pendingMsgIds(durableName: string): Promise<Set<string>> {
    this.assertOpen();
    checkDurableName(durableName);
    await this.commit.settled();
    this.assertOpen();
    return new Set(this.sql.pending.all(durableName).map((r) => r.msg_id));
  }

  async kv(bucket: string): Promise<KvStore> {
    this.assertOpen();
    if (typeof bucket !== 'string' || !/^[A-Za-z0-9_-]+$/.test(bucket)) {
      throw new TypeError(`kv bucket name ${JSON.stringify(bucket)} is invalid; use letters, digits, _ and - only`);
    }
    let kv = this.buckets.get(bucket);
    if (!kv) {
      kv = new SqliteKv(bucket, this);
      this.buckets.set(bucket, kv);
    }
    return kv;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    clearTimeout(this.cleanupTimer);
    try {
      this.commit.flush();
    } finally {
      this.closed = true;
      for (const c of this.consumers.values()) c.wake();
      this.db.close();
    }
  }

  /** Removes what nobody needs any more, a bounded amount per pass; again soon while there is more. */
  private scheduleCleanup(delayMs: number): void {
    this.cleanupTimer = setTimeout(() => {
      if (this.closed) return;
      this.commit.run(() => {
        const now = Date.now();
        const cutoff = now - this.s.dedupeWindowMs;
        return Math.max(
          this.sql.dropDone.run(CLEANUP_LIMIT).changes,
          this.sql.dropUnclaimed.run(cutoff, CLEANUP_LIMIT).changes,
          this.sql.dropDedupe.run(cutoff, CLEANUP_LIMIT).changes,
        );
      }).then(
        (most) => { if (!this.closed) this.scheduleCleanup(most >= CLEANUP_LIMIT ? 100 : this.s.cleanupIntervalMs); },
        (e: unknown) => {
          this.log.warn({ err: e }, 'broker clean-up failed; will try again');
          if (!this.closed) this.scheduleCleanup(this.s.cleanupIntervalMs);
        },
      );
    }, delayMs);
    this.cleanupTimer.unref();
  }
}

function filterMismatch(name: string, existing: string, wanted: string): Error {
  return new Error(`consumer ${name} already exists with filter ${existing}, not ${wanted}; ` +
    'use another durable name for the new filter');
}
