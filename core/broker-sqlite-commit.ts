import type Database from 'better-sqlite3';

/**
 * Thrown by a write's `apply` to fail that write alone (a lost compare-and-set, a bad argument);
 * it must be thrown before the write changed anything. Any other error rolls back the batch.
 */
export class WriteRejected extends Error {
  constructor(readonly reason: Error) {
    super(reason.message);
    this.name = 'WriteRejected';
  }
}

interface QueuedWrite {
  apply(): unknown;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

export interface GroupCommitOptions {
  /** Wait this long for more writes before committing; 0 commits on the next turn of the loop. */
  groupCommitMs: number;
  /** Commit at once when this many writes are pending; 1 gives one transaction per write. */
  maxBatch: number;
  /** Names the file in error messages. */
  file: string;
}

/**
 * Group commit: writes queue in memory and run together in one IMMEDIATE transaction, so many
 * changes share one fsync; each write's promise settles only after that transaction committed
 * (or rolled back). better-sqlite3 is synchronous, so a batch never interleaves with anything.
 */
export class GroupCommit {
  private queue: QueuedWrite[] = [];
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private readonly runBatch: Database.Transaction<(batch: QueuedWrite[], out: Outcome[]) => void>;

  constructor(db: Database.Database, private readonly opts: GroupCommitOptions) {
    this.runBatch = db.transaction((batch: QueuedWrite[], out: Outcome[]) => {
      for (const w of batch) {
        try {
          out.push({ ok: true, value: w.apply() });
        } catch (e) {
          if (!(e instanceof WriteRejected)) throw e;
          out.push({ ok: false, error: e.reason });
        }
      }
    });
  }

  get pending(): number {
    return this.queue.length;
  }

  /** Queues `apply` (runs inside the batch transaction) and resolves with its result once committed. */
  run<T>(apply: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ apply, resolve: resolve as (v: unknown) => void, reject });
      if (this.queue.length >= this.opts.maxBatch) this.flush();
      else this.schedule();
    });
  }

  /** Resolves once every write queued so far has committed or failed. */
  async settled(): Promise<void> {
    if (this.queue.length === 0) return;
    await this.run(() => undefined).catch(() => undefined);
  }

  /** Commits everything queued now, synchronously. */
  flush(): void {
    this.cancelTimer();
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.opts.maxBatch);
      const out: Outcome[] = [];
      try {
        this.runBatch.immediate(batch, out);
      } catch (e) {
        const error = new Error(`broker write to ${this.opts.file} failed, ${batch.length} queued ` +
          `write(s) rolled back: ${e instanceof Error ? e.message : String(e)}; check the disk and ` +
          'that no other process holds the file locked for long', { cause: e });
        for (const w of batch) w.reject(error);
        continue;
      }
      batch.forEach((w, i) => {
        const o = out[i]!;
        if (o.ok) w.resolve(o.value);
        else w.reject(o.error);
      });
    }
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    this.timer = this.opts.groupCommitMs > 0
      ? setTimeout(() => { this.timer = undefined; this.flush(); }, this.opts.groupCommitMs)
      : setImmediate(() => { this.timer = undefined; this.flush(); });
  }

  private cancelTimer(): void {
    if (this.timer === undefined) return;
    if (this.opts.groupCommitMs > 0) clearTimeout(this.timer as NodeJS.Timeout);
    else clearImmediate(this.timer as NodeJS.Immediate);
    this.timer = undefined;
  }
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: Error };
