import type Database from 'better-sqlite3';
import type { Consumer, ConsumerInfo, Delivery } from './broker.ts';
import type { GroupCommit } from './broker-sqlite-commit.ts';
import type { Logger } from './log.ts';

/** What a consumer needs from the broker that owns it. */
export interface ConsumerHost {
  readonly db: Database.Database;
  readonly commit: GroupCommit;
  readonly log: Logger;
  readonly pollMs: number;
  /** Throws the broker's "closed" error when it is closed. */
  assertOpen(): void;
  readonly closed: boolean;
}

/**
 * A delivery handed out by this process. Leases live in memory only: after a restart every
 * unacknowledged message is due again (at-least-once). `settling` blocks redelivery while an
 * ack / retry / terminate waits for its commit.
 */
interface Lease {
  count: number;
  expiresAt: number;
  settling: boolean;
}

interface DueRow { seq: number; delivery_count: number }
interface MessageRow { subject: string; msg_id: string; data: Buffer; published_at: number }

/**
 * A durable pull consumer. Its position is the set of its rows in `consumer_msgs` (one per
 * message it still needs); `due_at` orders retries, `delivery_count` survives restarts.
 * New rows written by another process on the same file are found by polling every `pollMs`.
 */
export class SqliteConsumer implements Consumer {
  private readonly leases = new Map<number, Lease>();
  private readonly waiters = new Set<() => void>();
  private readonly sql;

  constructor(
    readonly name: string,
    readonly filter: string,
    public ackWaitMs: number,
    private readonly host: ConsumerHost,
  ) {
    const { db } = host;
    this.sql = {
      due: db.prepare<[string, number, number], DueRow>(
        'SELECT seq, delivery_count FROM consumer_msgs WHERE consumer = ? AND due_at <= ? ORDER BY seq LIMIT ?'),
      nextDue: db.prepare<[string], { next: number | null }>(
        'SELECT min(due_at) AS next FROM consumer_msgs WHERE consumer = ?'),
      message: db.prepare<[number], MessageRow>(
        'SELECT subject, msg_id, data, published_at FROM messages WHERE seq = ?'),
      delivered: db.prepare(
        'UPDATE consumer_msgs SET delivery_count = ? WHERE consumer = ? AND seq = ? AND delivery_count < ?'),
      remove: db.prepare('DELETE FROM consumer_msgs WHERE consumer = ? AND seq = ?'),
      retry: db.prepare(
        'UPDATE consumer_msgs SET due_at = ?, delivery_count = max(delivery_count, ?) WHERE consumer = ? AND seq = ?'),
      info: db.prepare<[string], { pending: number; oldest: number | null }>(
        'SELECT count(*) AS pending, min(seq) AS oldest FROM consumer_msgs WHERE consumer = ?'),
      publishedAt: db.prepare<[number], { published_at: number }>('SELECT published_at FROM messages WHERE seq = ?'),
    };
  }

  async fetch(opts: { max: number; expiresMs: number; signal?: AbortSignal }): Promise<Delivery[]> {
    this.host.assertOpen();
    if (!Number.isInteger(opts.max) || opts.max < 1) {
      throw new RangeError(`consumer ${this.name}: fetch max must be a positive integer, got ${opts.max}`);
    }
    const deadline = Date.now() + Math.max(0, opts.expiresMs);
    for (;;) {
      if (this.host.closed) return [];
      const got = this.take(opts.max);
      if (got.length > 0) return got;
      const left = deadline - Date.now();
      if (left <= 0 || opts.signal?.aborted) return [];
      await this.waitForWake(Math.min(left, this.host.pollMs), opts.signal);
    }
  }

  async info(): Promise<ConsumerInfo> {
    this.host.assertOpen();
    await this.host.commit.settled();
    this.host.assertOpen();
    const read = this.host.db.transaction(() => {
      const row = this.sql.info.get(this.name)!;
      if (row.oldest === null) return { pending: 0 };
      const oldest = this.sql.publishedAt.get(row.oldest);
      return oldest ? { pending: row.pending, oldestPublishedAt: oldest.published_at } : { pending: row.pending };
    });
    return read();
  }

  /** Wakes waiting fetches at once (a local publish or retry made something due). */
  wake(): void {
    for (const w of this.waiters) w();
    this.waiters.clear();
  }

  /** Settles one delivery: ack and terminate drop the row, retry moves its due time. */
  async settle(d: SqliteDelivery, how: 'ack' | 'terminate' | 'retry', delayMs = 0): Promise<void> {
    this.host.assertOpen();
    if (how === 'retry' && !(Number.isFinite(delayMs) && delayMs >= 0)) {
      throw new RangeError(`consumer ${this.name}: retryAfter needs a delay >= 0 ms, got ${delayMs}`);
    }
    const lease = this.leases.get(d.seq);
    const current = lease !== undefined && lease.count === d.deliveryCount;
    if (current) lease.settling = true;
    const dueAt = Date.now() + delayMs;
    try {
      await this.host.commit.run(() => how === 'retry'
        ? this.sql.retry.run(dueAt, d.deliveryCount, this.name, d.seq)
        : this.sql.remove.run(this.name, d.seq));
    } catch (e) {
      if (current) lease.settling = false;
      throw e;
    }
    if (current && this.leases.get(d.seq) === lease) this.leases.delete(d.seq);
    if (how === 'retry') {
      if (delayMs === 0) this.wake();
      else setTimeout(() => this.wake(), delayMs).unref();
    }
  }

  /** Extends the lease of the current delivery (JetStream: working). */
  extend(d: SqliteDelivery): void {
    this.host.assertOpen();
    const lease = this.leases.get(d.seq);
    if (lease && lease.count === d.deliveryCount && !lease.settling) lease.expiresAt = Date.now() + this.ackWaitMs;
  }

  /** Hands out up to `max` due messages in seq order, skipping those leased by this process. */
  private take(max: number): Delivery[] {
    const now = Date.now();
    let leased = 0;
    for (const l of this.leases.values()) if (l.settling || l.expiresAt > now) leased++;
    const read = this.host.db.transaction(() => {
      const picked: Array<{ row: DueRow; msg: MessageRow }> = [];
      // An index lookup first: a consumer whose backlog all waits for retry is not scanned every poll.
      const next = this.sql.nextDue.get(this.name)!.next;
      if (next === null || next > now) return picked;
      for (const row of this.sql.due.all(this.name, now, max + leased)) {
        if (picked.length >= max) break;
        const l = this.leases.get(row.seq);
        if (l && (l.settling || l.expiresAt > now)) continue;
        const msg = this.sql.message.get(row.seq);
        if (msg) picked.push({ row, msg });
      }
      return picked;
    });
    const out: SqliteDelivery[] = [];
    for (const { row, msg } of read()) {
      const count = Math.max(row.delivery_count, this.leases.get(row.seq)?.count ?? 0) + 1;
      this.leases.set(row.seq, { count, expiresAt: now + this.ackWaitMs, settling: false });
      out.push(new SqliteDelivery(this, row.seq, msg, count));
    }
    if (out.length > 0) this.recordDeliveries(out);
    return out;
  }

  /**
   * Persists delivery counts without making the fetch wait: a message that crashes its worker
   * keeps counting up across restarts instead of starting at 1 every time.
   */
  private recordDeliveries(ds: SqliteDelivery[]): void {
    this.host.commit.run(() => {
      for (const d of ds) this.sql.delivered.run(d.deliveryCount, this.name, d.seq, d.deliveryCount);
    }).catch((e: unknown) => {
      this.host.log.warn({ consumer: this.name, err: e }, 'could not record delivery counts');
    });
  }

  private waitForWake(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}

class SqliteDelivery implements Delivery {
  readonly subject: string;
  readonly msgId: string;
  readonly data: Buffer;
  readonly publishedAt: number;

  constructor(
    private readonly consumer: SqliteConsumer,
    readonly seq: number,
    msg: MessageRow,
    readonly deliveryCount: number,
  ) {
    this.subject = msg.subject;
    this.msgId = msg.msg_id;
    this.data = msg.data;
    this.publishedAt = msg.published_at;
  }

  ack(): Promise<void> {
    return this.consumer.settle(this, 'ack');
  }

  retryAfter(delayMs: number): Promise<void> {
    return this.consumer.settle(this, 'retry', delayMs);
  }

  terminate(): Promise<void> {
    return this.consumer.settle(this, 'terminate');
  }

  async working(): Promise<void> {
    this.consumer.extend(this);
  }
}

export type { SqliteDelivery };
