import { isPwsyncError } from './errors.ts';

/**
 * Where changes and set-operations wait. Shaped after JetStream so that the embedded store
 * (core/broker-sqlite.ts) and a NATS JetStream implementation pass one contract suite:
 * publish with a message id (dedupe), durable consumers on a filter subject, ack /
 * retry-after(delay) / terminate per delivery, and a key-value store with compare-and-set.
 *
 * Subjects are dot-separated tokens; a filter may end in `>` (one or more further tokens) or use
 * `*` for exactly one token, as in NATS.
 */

export interface PublishAck {
  seq: number;
  /** The message id had been published before (within the dedupe window); nothing was stored. */
  duplicate: boolean;
}

export interface PublishOptions {
  /** Dedupe key: a second publish with the same id inside the window stores nothing. */
  msgId: string;
}

export interface Delivery {
  readonly subject: string;
  readonly msgId: string;
  readonly seq: number;
  readonly data: Buffer;
  /** 1 on first delivery, counting every redelivery (retry-after, lease expiry, restart). */
  readonly deliveryCount: number;
  /** When the message was stored, ms since the epoch. */
  readonly publishedAt: number;
  ack(): Promise<void>;
  /** Redeliver no sooner than `delayMs` from now (JetStream: nak with delay). */
  retryAfter(delayMs: number): Promise<void>;
  /** Never redeliver (JetStream: term). */
  terminate(): Promise<void>;
  /** Extend the lease while long work is in progress (JetStream: working). */
  working(): Promise<void>;
}

export interface ConsumerOptions {
  /** How long a delivery may stay unacknowledged before it is redelivered. */
  ackWaitMs?: number;
}

export interface ConsumerInfo {
  /** Messages stored for this consumer and not yet acknowledged or terminated. */
  pending: number;
  /** Publication time of the oldest of them, if any. */
  oldestPublishedAt?: number;
}

export interface Consumer {
  readonly name: string;
  /**
   * Up to `max` deliveries that are due, oldest first. Waits up to `expiresMs` for the first one;
   * resolves with an empty array when none came, or when `signal` aborts. A networked broker
   * (NATS) may reject with a retryable PwsyncError (6970) while it cannot be reached: wait, fetch again.
   */
  fetch(opts: { max: number; expiresMs: number; signal?: AbortSignal }): Promise<Delivery[]>;
  info(): Promise<ConsumerInfo>;
}

export interface KvEntry {
  key: string;
  value: Buffer;
  revision: number;
}

/** A compare-and-set lost: somebody else wrote the key first. Retry with a fresh `get`. */
export class KvConflictError extends Error {
  constructor(readonly key: string, message: string) {
    super(message);
    this.name = 'KvConflictError';
  }
}

/**
 * Whether a failure says the broker cannot do it now (unreachable, no leader, a lost
 * compare-and-set) rather than that the record is bad: the first is tried again later, the second
 * sets the record aside (event 6975) so it holds back nothing else.
 */
export function brokerBusy(e: unknown): boolean {
  if (e instanceof KvConflictError) return true;
  return isPwsyncError(e) && e.retryable;
}

/**
 * One write of a batch (KvStore.putMany): without `revision` it writes whatever the key holds (put);
 * with 0 only if the key does not exist (create); with n only if the key is at revision n (update).
 */
export interface KvWrite {
  key: string;
  value: Buffer;
  revision?: number;
}

export interface KvStore {
  get(key: string): Promise<KvEntry | undefined>;
  put(key: string, value: Buffer): Promise<number>;
  /** Writes only if the key does not exist; else KvConflictError. */
  create(key: string, value: Buffer): Promise<number>;
  /** Writes only if the key is at `revision`; else KvConflictError. */
  update(key: string, value: Buffer, revision: number): Promise<number>;
  delete(key: string): Promise<void>;
  /** Keys that start with `prefix`, in key order. */
  keys(prefix?: string): Promise<string[]>;
  /**
   * Writes a batch (each key at most once); resolves with each entry's new revision, in order. A
   * lost compare-and-set throws KvConflictError naming its key. The embedded store writes the batch
   * in one transaction: all of it or, on any failure, none. NATS JetStream has no multi-key
   * transaction: the writes go out together and are awaited together, so after a failure some may
   * be written; a caller reads again and retries the batch (its writes must be safe to repeat).
   */
  putMany(entries: readonly KvWrite[]): Promise<number[]>;
}

export interface Broker {
  /** Resolves once the message is durable (or was a duplicate). */
  publish(subject: string, data: Buffer, opts: PublishOptions): Promise<PublishAck>;
  /** A durable consumer: its position and pending deliveries survive restarts. */
  consumer(durableName: string, filterSubject: string, opts?: ConsumerOptions): Promise<Consumer>;
  kv(bucket: string): Promise<KvStore>;
  close(): Promise<void>;
}

/**
 * A broker that can say which messages a durable consumer still holds, without taking them (the
 * embedded one; JetStream cannot): lets the hub find a set-operation whose delivery is gone.
 */
export interface PendingListing {
  /** The message ids of what `durableName` has not acknowledged or terminated yet. */
  pendingMsgIds(durableName: string): Promise<Set<string>>;
}

export function listsPending(b: Broker): b is Broker & PendingListing {
  return typeof (b as Partial<PendingListing>).pendingMsgIds === 'function';
}

/** NATS subject matching: `*` one token, `>` one or more trailing tokens. */
export function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split('.');
  const s = subject.split('.');
  for (let i = 0; i < f.length; i++) {
    const t = f[i];
    if (t === '>') return s.length > i;
    if (i >= s.length) return false;
    if (t !== '*' && t !== s[i]) return false;
  }
  return f.length === s.length;
}

/** Makes an arbitrary name safe as one subject token (connector and target names come from YAML). */
export function subjectToken(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, (c) => `~${c.charCodeAt(0).toString(16)}`);
}

/** The batch's keys, each checked and at most once (a batch's compare-and-sets are checked before its writes). */
export function checkBatch(bucket: string, entries: readonly KvWrite[]): string[] {
  const keys = entries.map((e) => {
    if (typeof e.key !== 'string' || e.key.length === 0) throw new TypeError(`kv ${bucket}: a key must be a non-empty string`);
    if (e.revision !== undefined && !(Number.isSafeInteger(e.revision) && e.revision >= 0)) {
      throw new TypeError(`kv ${bucket}: the revision of key ${JSON.stringify(e.key)} must be a whole number (0: the key must not exist), or absent`);
    }
    return e.key;
  });
  const seen = new Set<string>();
  for (const k of keys) {
    if (seen.has(k)) throw new TypeError(`kv ${bucket}: key ${JSON.stringify(k)} appears twice in one putMany; write each key once`);
    seen.add(k);
  }
  return keys;
}
