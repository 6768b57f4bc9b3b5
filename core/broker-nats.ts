import { connect, tokenAuthenticator, usernamePasswordAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager,
  type JetStreamClient, type JetStreamManager, type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { Broker, Consumer, ConsumerOptions, KvStore, PublishAck, PublishOptions } from './broker.ts';
import { NatsConsumer } from './broker-nats-consumer.ts';
import { apiCode, natsError } from './broker-nats-errors.ts';
import { NatsKv } from './broker-nats-kv.ts';
import {
  PREFIX_PATTERN, SEEN_BUCKET, bucketName, brokerSubject, encodeKey, firstToken, natsSubject, streamName, streamSubjects,
  type NatsNames,
} from './broker-nats-names.ts';
import { checkDurableName, checkFilter, checkSubject } from './broker-sqlite-names.ts';
import { PwsyncError } from './errors.ts';
import { natsWorkerBus } from './nats-bus.ts';
import type { WorkerBus } from './worker-bus.ts';
import { silentLogger, type Logger } from './log.ts';
import type { Secret } from './secret.ts';

export interface NatsBrokerOptions {
  /** nats://host:port or tls://host:port URLs of the cluster's servers (any of them is enough to start). */
  servers: readonly string[];
  /** PEM contents. `ca` verifies the servers; `cert` + `key` are this client's identity when NATS asks for one. */
  tls?: { ca?: string; cert?: string; key?: string };
  /** NATS user; with `password`. */
  user?: string;
  /** The user's password, or without `user` a token. */
  password?: Secret;
  /** Put in front of every subject, stream and bucket name; default `pwsync`. */
  prefix?: string;
  /** Replicas of the streams and buckets this broker creates: 1 for one server, 3 for a cluster. Default 1. */
  replicas?: number;
  /**
   * Create streams and buckets on first use (tests, a single development server). Without it, a
   * missing one is an error naming `pwsync broker init`, which creates them with the replicas meant.
   */
  create?: boolean;
  /** How long messages and their ids stay (dedupe holds this long); default 7 days. */
  retentionMs?: number;
  /** JetStream's own duplicate window (it covers publishes racing on one id); default 2 minutes. */
  duplicateWindowMs?: number;
  /** Longest one request to NATS may take; default 5 s. */
  requestTimeoutMs?: number;
  /** How long an idempotent request (publish, read, ack) is retried through an election; default 30 s. */
  retryForMs?: number;
  /** The connection's name, shown by the NATS server's monitoring. */
  name?: string;
  log?: Logger;
}

const DAY_MS = 24 * 3600_000;

interface Settings {
  servers: string[];
  names: NatsNames;
  replicas: number;
  create: boolean;
  retentionMs: number;
  duplicateWindowMs: number;
  requestTimeoutMs: number;
  retryForMs: number;
  log: Logger;
}

function settings(o: NatsBrokerOptions): Settings {
  if (!Array.isArray(o.servers) || o.servers.length === 0 || !o.servers.every((s) => typeof s === 'string' && s.length > 0)) {
    throw new TypeError('openNatsBroker: servers must list at least one NATS URL (tls://host:4222)');
  }
  const prefix = o.prefix ?? 'pwsync';
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new TypeError(`openNatsBroker: prefix ${JSON.stringify(prefix)} is invalid: use 1 to 32 letters, digits, _ or -`);
  }
  const num = (name: string, v: number | undefined, dflt: number, min: number, max = Infinity): number => {
    const n = v ?? dflt;
    if (!Number.isFinite(n) || n < min || n > max) {
      throw new RangeError(`openNatsBroker: ${name} must be a number from ${min} to ${max}, got ${String(v)}`);
    }
    return n;
  };
  const duplicateWindowMs = num('duplicateWindowMs', o.duplicateWindowMs, 120_000, 100);
  return {
    servers: [...o.servers],
    names: { prefix },
    replicas: Math.floor(num('replicas', o.replicas, 1, 1, 5)),
    create: o.create ?? false,
    retentionMs: num('retentionMs', o.retentionMs, 7 * DAY_MS, duplicateWindowMs),
    duplicateWindowMs,
    requestTimeoutMs: num('requestTimeoutMs', o.requestTimeoutMs, 5_000, 100),
    retryForMs: num('retryForMs', o.retryForMs, 30_000, 0),
    log: o.log ?? silentLogger(),
  };
}

/**
 * Connects to NATS and returns a Broker on JetStream. Fails with a retryable PwsyncError (6970)
 * when no server answers, and a permanent one (6971) when NATS refuses the credentials or has no
 * JetStream.
 */
export async function openNatsBroker(opts: NatsBrokerOptions): Promise<NatsBroker> {
  const s = settings(opts);
  const nc = await connectNats(opts, s.servers, s.requestTimeoutMs);
  try {
    const jsm = await jetstreamManager(nc, { timeout: s.requestTimeoutMs });
    const broker = new NatsBroker(s, nc, jsm, jetstream(nc, { timeout: s.requestTimeoutMs }));
    broker.watchStatus();
    return broker;
  } catch (e) {
    await nc.close().catch(() => undefined);
    if (e instanceof Error && e.name === 'JetStreamNotEnabled') {
      throw new PwsyncError(6971, `the NATS servers at ${s.servers.join(', ')} have no JetStream for this user: ` +
        'start nats-server with JetStream (-js, or jetstream {} in its config) and give the account JetStream', { cause: e, retryable: false });
    }
    throw natsError(e, 'opening JetStream', s.servers);
  }
}

/**
 * A plain NATS connection (TLS, user and password from a Secret, reconnecting for ever): the
 * broker's, and a connector worker's, which has no JetStream rights at all. `inboxPrefix` keeps
 * the replies to this client's own requests inside subjects its user may subscribe to.
 */
export async function connectNats(opts: Pick<NatsBrokerOptions, 'tls' | 'user' | 'password' | 'name'> & { inboxPrefix?: string }, servers: readonly string[], timeoutMs: number): Promise<NatsConnection> {
  try {
    return await connect({
      servers: [...servers],
      name: opts.name ?? 'pwsync',
      timeout: timeoutMs,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      ...(opts.inboxPrefix ? { inboxPrefix: opts.inboxPrefix } : {}),
      ...(opts.tls ? { tls: { ...opts.tls } } : {}),
      ...(opts.password ? { authenticator: authenticator(opts.user, opts.password) } : opts.user ? { user: opts.user } : {}),
    });
  } catch (e) {
    throw natsError(e, 'connecting to the broker', servers);
  }
}

/** The password is read from the Secret at each (re)connect rather than held as a string. */
function authenticator(user: string | undefined, password: Secret) {
  const read = (): string => password.use((b) => b.toString('utf8'));
  return user ? usernamePasswordAuthenticator(user, read) : tokenAuthenticator(read);
}

/** What a layout needs: streams by first subject token, KV buckets, and durable consumers. */
export interface NatsLayout {
  readonly streams: readonly string[];
  readonly buckets: readonly string[];
  readonly consumers: ReadonlyArray<{ readonly durable: string; readonly filter: string; readonly ackWaitMs?: number }>;
}

export interface LayoutReport {
  created: string[];
  existing: string[];
}

const DEFAULT_ACK_WAIT_MS = 30_000;
/** A consumer may hold this many delivered, unacknowledged messages (all hubs together). */
const MAX_ACK_PENDING = 20_000;

/**
 * JetStream as a Broker: a stream per first subject token, durable pull consumers with explicit
 * ack, and KV buckets. See broker-nats-names.ts for how names map.
 */
export class NatsBroker implements Broker {
  closed = false;
  readonly apiPrefix = '$JS.API';
  readonly log: Logger;
  private readonly streams = new Map<string, Promise<string>>();
  private readonly buckets = new Map<string, Promise<KV>>();
  private readonly kvs = new Map<string, NatsKv>();
  private readonly consumers = new Map<string, NatsConsumer>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly kvm: Kvm;

  constructor(private readonly s: Settings, readonly nc: NatsConnection, private readonly jsm: JetStreamManager, private readonly js: JetStreamClient) {
    this.log = s.log.child({ component: 'broker', servers: s.servers.join(',') });
    this.kvm = new Kvm(js);
  }

  get requestTimeoutMs(): number {
    return this.s.requestTimeoutMs;
  }

  /** Request-reply with connector workers over this broker's connection. */
  bus(): WorkerBus {
    return natsWorkerBus(this.nc, this.s.names.prefix, this.s.servers);
  }

  get servers(): readonly string[] {
    return this.s.servers;
  }

  assertOpen(): void {
    if (this.closed) {
      throw new Error(`broker on NATS ${this.s.servers.join(', ')} is closed; open it again with openNatsBroker() to use it`);
    }
  }

  brokerSubject(natsSubj: string): string {
    return brokerSubject(this.s.names, natsSubj);
  }

  /**
   * Publishes with the msgId as Nats-Msg-Id. JetStream only dedupes within its duplicate window
   * (minutes: it keeps every id of the window in memory), and a notifier may resend a change hours
   * later; so each id also gets a "seen" marker in a KV bucket whose entries live as long as the
   * messages (retentionMs). The marker is looked up before publishing and created after the
   * PubAck, without holding up the caller: two publishes racing on one id, or a resend of one whose
   * marker is not written yet, meet in the duplicate window instead. The lookup may read any
   * replica (direct get): a replica lags by far less than that window. Only a crash between
   * PubAck and marker followed by a resend after the window stores an id twice, which consumers
   * tolerate anyway (JetStream delivers at least once).
   */
  async publish(subject: string, data: Buffer, opts: PublishOptions): Promise<PublishAck> {
    this.assertOpen();
    checkSubject(subject);
    const msgId = opts?.msgId;
    if (typeof msgId !== 'string' || msgId.length === 0 || /[\r\n]/.test(msgId)) {
      throw new TypeError(`publish to ${subject}: opts.msgId must be a non-empty string on one line (it is the dedupe key)`);
    }
    const copy = Buffer.from(data);
    return this.track((async () => {
      await this.stream(firstToken(subject));
      const seen = await this.seenBucket();
      const key = encodeKey(msgId);
      const marker = await this.call(`publish to ${subject}: dedupe check`, () => seen.get(key), true);
      if (marker && marker.operation === 'PUT') return { seq: Number(marker.string()), duplicate: true };
      const ack = await this.call(`publish to ${subject}`,
        () => this.js.publish(natsSubject(this.s.names, subject), copy, { msgID: msgId, timeout: this.s.requestTimeoutMs }), true);
      void this.track(seen.create(key, String(ack.seq)).catch((e: unknown) => {
        if (apiCode(e) === 10071 || apiCode(e) === 10164) return; // another publish of this id wrote it
        this.log.warn({ subject, err: natsError(e, 'dedupe marker', this.s.servers) },
          'stored, but its long-horizon dedupe marker was not written: a resend after the duplicate window would be stored again');
      }));
      return { seq: ack.seq, duplicate: ack.duplicate };
    })());
  }

  async consumer(durableName: string, filterSubject: string, opts: ConsumerOptions = {}): Promise<Consumer> {
    this.assertOpen();
    checkDurableName(durableName);
    checkFilter(filterSubject);
    const token = firstToken(filterSubject);
    if (token === '*' || token === '>') {
      throw new TypeError(`consumer ${durableName}: filter ${filterSubject} must start with a plain token: on NATS it names the stream`);
    }
    const ackWaitMs = opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS;
    if (!(Number.isFinite(ackWaitMs) && ackWaitMs > 0)) {
      throw new RangeError(`consumer ${durableName}: ackWaitMs must be a number > 0, got ${String(opts.ackWaitMs)}`);
    }
    const stream = await this.stream(token);
    const natsFilter = natsSubject(this.s.names, filterSubject);
    await this.ensureConsumer(stream, durableName, natsFilter, ackWaitMs);
    let c = this.consumers.get(durableName);
    if (!c) this.consumers.set(durableName, c = new NatsConsumer(durableName, stream, natsFilter, ackWaitMs, this));
    c.ackWaitMs = ackWaitMs;
    return c;
  }

  async kv(bucket: string): Promise<KvStore> {
    this.assertOpen();
    if (typeof bucket !== 'string' || !/^[A-Za-z0-9_-]+$/.test(bucket)) {
      throw new TypeError(`kv bucket name ${JSON.stringify(bucket)} is invalid; use letters, digits, _ and - only`);
    }
    let kv = this.kvs.get(bucket);
    if (!kv) {
      kv = new NatsKv(bucket, bucketName(this.s.names, bucket), await this.bucket(bucket), this.js, this);
      this.kvs.set(bucket, kv);
    }
    return kv;
  }

  /**
   * Waits for publishes already issued, hands back (nak) the deliveries this process still holds
   * so that another hub, or this one restarted, gets them at once, then drains the connection.
   * Every step is bounded.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.inFlight]);
    // Deliveries this process holds and never settled go back now, not at the end of their ack wait.
    const released = Promise.allSettled([...this.consumers.values()].map((c) => c.releaseHeld()));
    await Promise.race([released, new Promise<void>((r) => setTimeout(r, this.s.requestTimeoutMs).unref())]);
    const drained = this.nc.drain().catch(() => undefined);
    const bound = new Promise<void>((r) => setTimeout(r, this.s.requestTimeoutMs).unref());
    await Promise.race([drained, bound]);
    if (!this.nc.isClosed()) await this.nc.close().catch(() => undefined);
  }

  /**
   * Creates what `layout` names and is missing (streams with this broker's replicas, retention and
   * duplicate window; buckets; consumers), leaving what exists as it is. Idempotent.
   */
  async initLayout(layout: NatsLayout): Promise<LayoutReport> {
    this.assertOpen();
    const report: LayoutReport = { created: [], existing: [] };
    const note = (what: string, created: boolean): void => { (created ? report.created : report.existing).push(what); };
    for (const token of [...layout.streams]) {
      const name = streamName(this.s.names, token);
      const created = await this.createStream(token);
      note(`stream ${name} (${streamSubjects(this.s.names, token).join(', ')}; ${await this.replicasOf(name, created)})`, created);
    }
    for (const b of [SEEN_BUCKET, ...layout.buckets]) {
      const created = await this.createBucket(b);
      note(`kv bucket ${bucketName(this.s.names, b)} (${await this.replicasOf(`KV_${bucketName(this.s.names, b)}`, created)})`, created);
    }
    for (const c of layout.consumers) {
      const stream = streamName(this.s.names, firstToken(c.filter));
      const created = await this.ensureConsumer(stream, c.durable, natsSubject(this.s.names, c.filter), c.ackWaitMs ?? DEFAULT_ACK_WAIT_MS);
      note(`consumer ${c.durable} on ${stream} (${natsSubject(this.s.names, c.filter)})`, created);
    }
    return report;
  }

  /** `R3`, or for one that existed with other replicas, `R1, not the configured R3` (init leaves it as it is). */
  private async replicasOf(stream: string, created: boolean): Promise<string> {
    if (created) return `R${this.s.replicas}`;
    const info = await this.call(`stream ${stream}: info`, () => this.jsm.streams.info(stream), true);
    const r = info.config.num_replicas;
    return r === this.s.replicas ? `R${r}` : `R${r}, not the configured R${this.s.replicas}`;
  }

  /** What `layout` names that does not exist (streams and buckets; consumers are made on first use). */
  async missingFromLayout(layout: NatsLayout): Promise<string[]> {
    this.assertOpen();
    const missing: string[] = [];
    for (const token of layout.streams) {
      if (!await this.streamExists(streamName(this.s.names, token))) missing.push(`stream ${streamName(this.s.names, token)}`);
    }
    for (const b of [SEEN_BUCKET, ...layout.buckets]) {
      if (!await this.streamExists(`KV_${bucketName(this.s.names, b)}`)) missing.push(`kv bucket ${bucketName(this.s.names, b)}`);
    }
    return missing;
  }

  /** Reconnects and server errors are logged; the client reconnects on its own. */
  watchStatus(): void {
    void (async () => {
      for await (const st of this.nc.status()) {
        if (st.type === 'disconnect') this.log.warn({ eventId: 6970, server: st.server }, 'disconnected from a NATS server; reconnecting');
        else if (st.type === 'reconnect') this.log.info({ server: st.server }, 'reconnected to NATS');
        else if (st.type === 'error') this.log.warn({ eventId: 6970, err: st.error }, 'NATS connection error');
      }
    })().catch(() => undefined);
  }

  /**
   * Runs a NATS call with the failure sorted into PwsyncError. An idempotent call (publish with a
   * msgId, a read, an ack) is tried again through elections and reconnects, for up to retryForMs.
   */
  async call<T>(what: string, fn: () => Promise<T>, idempotent: boolean): Promise<T> {
    const deadline = Date.now() + this.s.retryForMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        const err = natsError(e, what, this.s.servers);
        const retry = idempotent && err instanceof PwsyncError && err.retryable && !this.closed;
        const wait = Math.min(1000, 100 * 2 ** Math.min(attempt, 4));
        if (!retry || Date.now() + wait > deadline) throw err;
        this.log.debug({ attempt, err: err.message }, 'broker request retried');
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    const done = (): void => { this.inFlight.delete(p); };
    p.then(done, done);
    return p;
  }

  /** The stream for a first token: checked once (created in create mode). */
  private stream(token: string): Promise<string> {
    let p = this.streams.get(token);
    if (!p) {
      const name = streamName(this.s.names, token);
      p = (async () => {
        if (this.s.create) await this.createStream(token);
        else if (!await this.streamExists(name)) throw this.missing(`stream ${name}`);
        return name;
      })();
      this.streams.set(token, p);
      p.catch(() => this.streams.delete(token));
    }
    return p;
  }

  private seenBucket(): Promise<KV> {
    return this.bucket(SEEN_BUCKET);
  }

  private bucket(bucket: string): Promise<KV> {
    let p = this.buckets.get(bucket);
    if (!p) {
      const full = bucketName(this.s.names, bucket);
      p = (async () => {
        if (this.s.create) await this.createBucket(bucket);
        else if (!await this.streamExists(`KV_${full}`)) throw this.missing(`kv bucket ${full}`);
        // Leader reads (compare-and-set needs the current revision), except for the seen markers (see publish).
        return this.call(`kv ${full}: open`, () => this.kvm.open(full, { allow_direct: bucket === SEEN_BUCKET }), true);
      })();
      this.buckets.set(bucket, p);
      p.catch(() => this.buckets.delete(bucket));
    }
    return p;
  }

  private missing(what: string): PwsyncError {
    return new PwsyncError(6971, `${what} does not exist on NATS at ${this.s.servers.join(', ')}: ` +
      'run `pwsync broker init --config HUB.yaml` once, which creates the streams and buckets with the configured replicas', { retryable: false });
  }

  private async streamExists(name: string): Promise<boolean> {
    try {
      await this.call(`stream ${name}: info`, () => this.jsm.streams.info(name), true);
      return true;
    } catch (e) {
      if (apiCode(e) === 10059 || apiCode((e as { cause?: unknown }).cause) === 10059) return false;
      throw e;
    }
  }

  /** Creates the stream for `token` unless it exists; true when it was created. */
  private async createStream(token: string): Promise<boolean> {
    const name = streamName(this.s.names, token);
    if (await this.streamExists(name)) return false;
    const config: Partial<StreamConfig> & { name: string } = {
      name,
      subjects: streamSubjects(this.s.names, token),
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      num_replicas: this.s.replicas,
      max_age: this.s.retentionMs * 1_000_000,
      duplicate_window: this.s.duplicateWindowMs * 1_000_000,
    };
    try {
      await this.call(`stream ${name}: create`, () => this.jsm.streams.add(config), false);
      return true;
    } catch (e) {
      // Another broker created it just now (same name, perhaps other settings): use it.
      if (await this.streamExists(name).catch(() => false)) return false;
      throw this.replicaHint(e, `stream ${name}`);
    }
  }

  /** Creates a bucket unless it exists; true when it was created. */
  private async createBucket(bucket: string): Promise<boolean> {
    const full = bucketName(this.s.names, bucket);
    if (await this.streamExists(`KV_${full}`)) return false;
    try {
      await this.call(`kv ${full}: create`, () => this.kvm.create(full, {
        history: 1,
        replicas: this.s.replicas,
        allow_direct: bucket === SEEN_BUCKET,
        storage: StorageType.File,
        ...(bucket === SEEN_BUCKET ? { ttl: this.s.retentionMs } : {}),
      }), false);
      return true;
    } catch (e) {
      if (await this.streamExists(`KV_${full}`).catch(() => false)) return false;
      throw this.replicaHint(e, `kv bucket ${full}`);
    }
  }

  private replicaHint(e: unknown, what: string): Error {
    if (apiCode(e) === 10023 || apiCode((e as { cause?: unknown }).cause) === 10023) {
      return new PwsyncError(6971, `${what}: NATS has too few servers for ${this.s.replicas} replicas: ` +
        'set broker.replicas to the number of JetStream servers that are up (1 for a single server, 3 for a cluster of 3)', { cause: e, retryable: false });
    }
    return e instanceof Error ? e : new Error(String(e));
  }

  /**
   * Makes sure the durable exists with this filter; a different filter is refused, a different ack
   * wait is updated. True when it was created.
   */
  private async ensureConsumer(stream: string, durable: string, natsFilter: string, ackWaitMs: number): Promise<boolean> {
    const ackWait = Math.round(ackWaitMs) * 1_000_000;
    let info;
    try {
      info = await this.call(`consumer ${durable}: info`, () => this.jsm.consumers.info(stream, durable), true);
    } catch (e) {
      if (apiCode(e) !== 10014 && apiCode((e as { cause?: unknown }).cause) !== 10014) throw e;
    }
    if (info) {
      if (info.config.filter_subject !== natsFilter) {
        throw new Error(`consumer ${durable} already exists with filter ${info.config.filter_subject ?? '(none)'}, not ${natsFilter}; ` +
          'use another durable name for the new filter');
      }
      if (info.config.ack_wait !== ackWait) {
        await this.call(`consumer ${durable}: update ack wait`, () => this.jsm.consumers.update(stream, durable, { ack_wait: ackWait }), true);
      }
      return false;
    }
    await this.call(`consumer ${durable}: create`, () => this.jsm.consumers.add(stream, {
      durable_name: durable,
      filter_subject: natsFilter,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: ackWait,
      max_deliver: -1,
      max_ack_pending: MAX_ACK_PENDING,
    }), true);
    return true;
  }
}
