import type Database from 'better-sqlite3';
import { checkBatch, KvConflictError, type KvEntry, type KvStore, type KvWrite } from './broker.ts';
import { WriteRejected, type GroupCommit } from './broker-sqlite-commit.ts';

export interface KvHost {
  readonly db: Database.Database;
  readonly commit: GroupCommit;
  assertOpen(): void;
}

interface Row { value: Buffer; revision: number }

/**
 * One KV bucket. Writes go through group commit; compare-and-set is checked inside the batch
 * transaction, so it holds against other processes too. Read-your-writes: a read that touches a
 * key (or, for `keys`, a bucket) with a write still queued waits for that write's commit.
 */
export class SqliteKv implements KvStore {
  private readonly queuedKeys = new Map<string, number>();
  private queued = 0;
  private readonly sql;

  constructor(readonly bucket: string, private readonly host: KvHost) {
    const { db } = host;
    this.sql = {
      get: db.prepare<[string, string], Row>('SELECT value, revision FROM kv WHERE bucket = ? AND key = ?'),
      nextRevision: db.prepare<[string], { last_revision: number }>(
        'INSERT INTO kv_buckets (bucket, last_revision) VALUES (?, 1) ' +
        'ON CONFLICT (bucket) DO UPDATE SET last_revision = last_revision + 1 RETURNING last_revision'),
      upsert: db.prepare(
        'INSERT INTO kv (bucket, key, value, revision) VALUES (?, ?, ?, ?) ' +
        'ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value, revision = excluded.revision'),
      remove: db.prepare('DELETE FROM kv WHERE bucket = ? AND key = ?'),
      keysFrom: db.prepare<[string, string], { key: string }>(
        'SELECT key FROM kv WHERE bucket = ? AND key >= ? ORDER BY key'),
    };
  }

  async get(key: string): Promise<KvEntry | undefined> {
    this.host.assertOpen();
    checkKey(this.bucket, key);
    if (this.queuedKeys.has(key)) await this.host.commit.settled();
    this.host.assertOpen();
    const row = this.sql.get.get(this.bucket, key);
    return row ? { key, value: row.value, revision: row.revision } : undefined;
  }

  put(key: string, value: Buffer): Promise<number> {
    return this.write(key, value, () => undefined);
  }

  create(key: string, value: Buffer): Promise<number> {
    return this.write(key, value, (existing) => this.expect(key, 0, existing));
  }

  update(key: string, value: Buffer, revision: number): Promise<number> {
    return this.write(key, value, (existing) => this.expect(key, revision, existing));
  }

  /** One apply in the group-commit batch: every compare-and-set is checked before the first write. */
  async putMany(entries: readonly KvWrite[]): Promise<number[]> {
    this.host.assertOpen();
    const keys = checkBatch(this.bucket, entries);
    if (keys.length === 0) return [];
    const stored = entries.map((e) => ({ key: e.key, value: Buffer.from(e.value), revision: e.revision }));
    return this.queue(keys, () => {
      try {
        for (const e of stored) if (e.revision !== undefined) this.expect(e.key, e.revision, this.sql.get.get(this.bucket, e.key));
      } catch (e) {
        throw e instanceof KvConflictError ? new WriteRejected(e) : e;
      }
      return stored.map((e) => {
        const revision = this.sql.nextRevision.get(this.bucket)!.last_revision;
        this.sql.upsert.run(this.bucket, e.key, e.value, revision);
        return revision;
      });
    });
  }

  /** Throws KvConflictError unless the key is at `revision` (0: does not exist). */
  private expect(key: string, revision: number, existing: Row | undefined): void {
    if (revision === 0 && existing) {
      throw new KvConflictError(key, `kv ${this.bucket}: key ${JSON.stringify(key)} already exists ` +
        `(revision ${existing.revision}); read it with get() and update() it instead`);
    }
    if (revision !== 0 && existing?.revision !== revision) {
      throw new KvConflictError(key, `kv ${this.bucket}: key ${JSON.stringify(key)} is at revision ` +
        `${existing ? existing.revision : '(none: it does not exist)'}, not ${revision}; get() it again and retry`);
    }
  }

  async delete(key: string): Promise<void> {
    this.host.assertOpen();
    checkKey(this.bucket, key);
    await this.queue([key], () => { this.sql.remove.run(this.bucket, key); });
  }

  async keys(prefix = ''): Promise<string[]> {
    this.host.assertOpen();
    if (this.queued > 0) await this.host.commit.settled();
    this.host.assertOpen();
    const out: string[] = [];
    for (const { key } of this.sql.keysFrom.iterate(this.bucket, prefix)) {
      if (!key.startsWith(prefix)) break;
      out.push(key);
    }
    return out;
  }

  /** `check` sees the committed row inside the batch and throws KvConflictError to refuse. */
  private async write(key: string, value: Buffer, check: (existing: Row | undefined) => void): Promise<number> {
    this.host.assertOpen();
    checkKey(this.bucket, key);
    // A copy: the caller may reuse or zero its buffer before the batch commits.
    const stored = Buffer.from(value);
    return this.queue([key], () => {
      try {
        check(this.sql.get.get(this.bucket, key));
      } catch (e) {
        throw e instanceof KvConflictError ? new WriteRejected(e) : e;
      }
      const revision = this.sql.nextRevision.get(this.bucket)!.last_revision;
      this.sql.upsert.run(this.bucket, key, stored, revision);
      return revision;
    });
  }

  private async queue<T>(keys: readonly string[], apply: () => T): Promise<T> {
    for (const key of keys) this.queuedKeys.set(key, (this.queuedKeys.get(key) ?? 0) + 1);
    this.queued++;
    try {
      return await this.host.commit.run(apply);
    } finally {
      this.queued--;
      for (const key of keys) {
        const n = this.queuedKeys.get(key)! - 1;
        if (n === 0) this.queuedKeys.delete(key);
        else this.queuedKeys.set(key, n);
      }
    }
  }
}

function checkKey(bucket: string, key: string): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new TypeError(`kv ${bucket}: a key must be a non-empty string`);
  }
}
