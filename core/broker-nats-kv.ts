import type { JetStreamClient } from '@nats-io/jetstream';
import type { KV, KvEntry as NatsKvEntry } from '@nats-io/kv';
import { checkBatch, KvConflictError, type KvEntry, type KvStore, type KvWrite } from './broker.ts';
import { apiCode } from './broker-nats-errors.ts';
import { decodeKey, encodeKey, keyFilter } from './broker-nats-names.ts';

/** What a bucket needs from the broker that owns it. */
export interface KvHost {
  assertOpen(): void;
  /** Runs a NATS call, turning its failures into PwsyncErrors; `idempotent` calls are retried. */
  call<T>(what: string, fn: () => Promise<T>, idempotent: boolean): Promise<T>;
  readonly requestTimeoutMs: number;
}

/** JetStream's "wrong last sequence": the compare-and-set of a create or update lost. */
const WRONG_LAST_SEQUENCE = new Set([10071, 10164]);

/**
 * One KV bucket on JetStream (history 1, reads from the stream leader, not a replica: a replica may
 * lag, and compare-and-set needs the current revision). Revisions are the bucket stream's
 * sequence, so they increase across keys, as the contract asks. Keys are escaped (broker-nats-names).
 *
 * Read-your-writes: a read of a key (for `keys`, of the bucket) with this client's write still in
 * flight waits for that write, as in the embedded store.
 */
export class NatsKv implements KvStore {
  private readonly inFlight = new Map<string, Set<Promise<unknown>>>();

  constructor(
    readonly bucket: string,
    /** The bucket's name on NATS (with the broker's prefix). */
    private readonly fullName: string,
    private readonly kv: KV,
    private readonly js: JetStreamClient,
    private readonly host: KvHost,
  ) {}

  async get(key: string): Promise<KvEntry | undefined> {
    this.host.assertOpen();
    checkKey(this.bucket, key);
    await this.settled(key);
    const e = await this.host.call(`kv ${this.bucket}: get`, () => this.kv.get(encodeKey(key)), true);
    return e && e.operation === 'PUT' ? toEntry(key, e) : undefined;
  }

  put(key: string, value: Buffer): Promise<number> {
    return this.write(key, 'put', () => this.kv.put(encodeKey(key), Buffer.from(value)), true);
  }

  create(key: string, value: Buffer): Promise<number> {
    const copy = Buffer.from(value);
    const exists = `key ${JSON.stringify(key)} already exists; read it with get() and update() it instead`;
    return this.write(key, 'create', async () => {
      const ek = encodeKey(key);
      try {
        return await this.casPut(key, ek, copy, 0, exists);
      } catch (e) {
        if (!(e instanceof KvConflictError)) throw e;
      }
      // A deleted key keeps a tombstone: creating it again is an update of the tombstone's revision.
      const last = await this.kv.get(ek);
      if (last && last.operation !== 'PUT') return this.casPut(key, ek, copy, last.revision, exists);
      throw new KvConflictError(key, `kv ${this.bucket}: ${exists}`);
    }, false);
  }

  update(key: string, value: Buffer, revision: number): Promise<number> {
    const copy = Buffer.from(value);
    const stale = `key ${JSON.stringify(key)} is not at revision ${revision} (or does not exist); get() it again and retry`;
    return this.write(key, 'update', () => {
      if (!(Number.isInteger(revision) && revision > 0)) return Promise.reject(new KvConflictError(key, `kv ${this.bucket}: ${stale}`));
      return this.casPut(key, encodeKey(key), copy, revision, stale);
    }, false);
  }

  /**
   * Not atomic (JetStream has no multi-key transaction): the writes go out together and are awaited
   * together. After a failure the others may have been written; the failure thrown is one that is
   * not a lost compare-and-set if there is one, so a broker outage is not mistaken for a conflict.
   */
  async putMany(entries: readonly KvWrite[]): Promise<number[]> {
    this.host.assertOpen();
    checkBatch(this.bucket, entries);
    const results = await Promise.allSettled(entries.map((e) => (e.revision === undefined ? this.put(e.key, e.value)
      : e.revision === 0 ? this.create(e.key, e.value) : this.update(e.key, e.value, e.revision))));
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failures.length > 0) throw failures.find((f) => !(f instanceof KvConflictError)) ?? failures[0];
    return results.map((r) => (r as PromiseFulfilledResult<number>).value);
  }

  async delete(key: string): Promise<void> {
    await this.write(key, 'delete', () => this.kv.delete(encodeKey(key)), true);
  }

  async keys(prefix = ''): Promise<string[]> {
    this.host.assertOpen();
    if (typeof prefix !== 'string') throw new TypeError(`kv ${this.bucket}: a key prefix must be a string`);
    await Promise.allSettled([...this.inFlight.values()].flatMap((s) => [...s]));
    const found = await this.host.call(`kv ${this.bucket}: keys`, () => this.listKeys(keyFilter(prefix)), true);
    return found.map(decodeKey).filter((k) => k.startsWith(prefix)).sort();
  }

  /** Lists encoded keys under `filter`; gives up when nothing arrives for a request timeout. */
  private async listKeys(filter: string): Promise<string[]> {
    const iter = await this.kv.keys(filter);
    const out: string[] = [];
    let idle = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => { idle = true; iter.stop(); }, this.host.requestTimeoutMs);
    };
    arm();
    try {
      for await (const k of iter) {
        out.push(k);
        arm();
      }
    } finally {
      clearTimeout(timer);
    }
    if (idle) {
      throw Object.assign(new Error(`listing keys of kv ${this.bucket} stalled for ${this.host.requestTimeoutMs} ms`), { name: 'TimeoutError' });
    }
    return out;
  }

  /**
   * Writes `ek` only if its last revision is `revision` (0: it has none). nats-server before 2.9.21
   * checks Nats-Expected-Last-Subject-Sequence outside Raft, so on a replicated bucket two writers
   * racing on one revision can both succeed (nats-io/nats-server#4320; seen here on 2.9.10 R3). The
   * message id `<key>@<revision>` closes that: the stream leader registers ids under its lock
   * before proposing, so of two racing writes one is stored and the other is answered duplicate.
   */
  private async casPut(key: string, ek: string, data: Buffer, revision: number, conflict: string): Promise<number> {
    try {
      const ack = await this.js.publish(`$KV.${this.fullName}.${ek}`, data, {
        msgID: `${ek}@${revision}`, expect: { lastSubjectSequence: revision }, timeout: this.host.requestTimeoutMs,
      });
      if (!ack.duplicate) return ack.seq;
    } catch (e) {
      const code = apiCode(e);
      if (code === undefined || !WRONG_LAST_SEQUENCE.has(code)) throw e;
    }
    throw new KvConflictError(key, `kv ${this.bucket}: ${conflict}`);
  }

  private async write<T>(key: string, what: string, fn: () => Promise<T>, idempotent: boolean): Promise<T> {
    this.host.assertOpen();
    checkKey(this.bucket, key);
    const p = this.host.call(`kv ${this.bucket}: ${what}`, fn, idempotent);
    let set = this.inFlight.get(key);
    if (!set) this.inFlight.set(key, set = new Set());
    set.add(p);
    try {
      return await p;
    } finally {
      set.delete(p);
      if (set.size === 0 && this.inFlight.get(key) === set) this.inFlight.delete(key);
    }
  }

  private async settled(key: string): Promise<void> {
    const set = this.inFlight.get(key);
    if (set) await Promise.allSettled([...set]);
  }
}

function toEntry(key: string, e: NatsKvEntry): KvEntry {
  return { key, value: Buffer.from(e.value), revision: e.revision };
}

function checkKey(bucket: string, key: string): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new TypeError(`kv ${bucket}: a key must be a non-empty string`);
  }
}
