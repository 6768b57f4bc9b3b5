import { createInbox, type Msg, type NatsConnection } from '@nats-io/transport-node';
import type { Consumer, ConsumerInfo, Delivery } from './broker.ts';
import { PwsyncError } from './errors.ts';
import type { Logger } from './log.ts';

/** What a consumer needs from the broker that owns it. */
export interface ConsumerHost {
  readonly nc: NatsConnection;
  readonly apiPrefix: string;
  readonly requestTimeoutMs: number;
  readonly log: Logger;
  readonly closed: boolean;
  assertOpen(): void;
  call<T>(what: string, fn: () => Promise<T>, idempotent: boolean): Promise<T>;
  /** The broker subject of a stored NATS subject. */
  brokerSubject(natsSubject: string): string;
}

/**
 * A waiting pull asks for at most this long at once: an aborted fetch leaves a request of at most
 * this length behind, and a pull sent to a server that then died is noticed this soon.
 */
const PULL_CHUNK_MS = 2_000;

/**
 * A durable JetStream pull consumer (explicit ack). Pulls are raw `CONSUMER.MSG.NEXT` requests
 * rather than the client's fetch(), which cannot wait less than a second nor stop without leaving
 * its request to deliver into an inbox nobody reads (those messages would sit until ack wait):
 * first a `no_wait` pull for what is there now, and only if that is empty a waiting pull for one
 * message, then `no_wait` again for the rest of the batch.
 */
export class NatsConsumer implements Consumer {
  /** Deliveries handed out and not settled, with when their lease runs out. */
  private readonly held = new Map<NatsDelivery, number>();

  constructor(
    readonly name: string,
    private readonly stream: string,
    private readonly natsFilter: string,
    public ackWaitMs: number,
    private readonly host: ConsumerHost,
  ) {}

  /**
   * Naks what this process holds whose lease still runs (bounded by the request timeout): on a
   * clean close they are due again at once. An expired one may already be with someone else.
   */
  async releaseHeld(): Promise<void> {
    const now = Date.now();
    const live = [...this.held].filter(([, until]) => until > now).map(([d]) => d);
    this.held.clear();
    await Promise.allSettled(live.map((d) => this.host.nc.request(d.ackSubject, '-NAK', { timeout: this.host.requestTimeoutMs })));
  }

  async fetch(opts: { max: number; expiresMs: number; signal?: AbortSignal }): Promise<Delivery[]> {
    this.host.assertOpen();
    if (!Number.isInteger(opts.max) || opts.max < 1) {
      throw new RangeError(`consumer ${this.name}: fetch max must be a positive integer, got ${opts.max}`);
    }
    const deadline = Date.now() + Math.max(0, opts.expiresMs);
    for (const [d, until] of this.held) if (until <= Date.now()) this.held.delete(d);
    const now = await this.pull(opts.max, 0);
    if (now.length > 0) return bySeq(now);
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0 || opts.signal?.aborted || this.host.closed) return [];
      const first = await this.pull(1, Math.min(left, PULL_CHUNK_MS), opts.signal);
      if (first.length === 0) continue;
      if (opts.max === 1 || this.host.closed) return first;
      try {
        return bySeq([...first, ...await this.pull(opts.max - 1, 0)]);
      } catch (e) {
        // The first delivery is in hand: hand it out; the rest stays in the stream.
        this.host.log.warn({ consumer: this.name, err: e }, 'pull for the rest of a batch failed');
        return first;
      }
    }
  }

  async info(): Promise<ConsumerInfo> {
    this.host.assertOpen();
    const ci = await this.request<ApiConsumerInfo>(`CONSUMER.INFO.${this.stream}.${this.name}`, undefined, 'info');
    const pending = ci.num_pending + ci.num_ack_pending;
    if (pending === 0) return { pending };
    // Everything at or below the ack floor is settled, so the first matching message above it is the oldest pending.
    const got = await this.request<ApiMsgGet>(`STREAM.MSG.GET.${this.stream}`,
      { seq: ci.ack_floor.stream_seq + 1, next_by_subj: this.natsFilter }, 'oldest pending message', true);
    return got.message ? { pending, oldestPublishedAt: isoToMs(got.message.time) } : { pending };
  }

  /**
   * One pull request: `no_wait` when `expiresMs` is 0. Resolves at the server's end-of-request
   * status (404 no messages, 408 expired), when `batch` arrived, or when `signal` aborts; a
   * delivery that arrives after an abort goes back at once (nak), counted as a redelivery.
   */
  private pull(batch: number, expiresMs: number, signal?: AbortSignal): Promise<Delivery[]> {
    this.host.assertOpen();
    const { nc } = this.host;
    const inbox = createInbox();
    const out: Delivery[] = [];
    return new Promise<Delivery[]>((resolve, reject) => {
      let settled = false;
      const finish = (err?: unknown): void => {
        clearTimeout(guard);
        signal?.removeEventListener('abort', onAbort);
        if (!sub.isClosed()) sub.unsubscribe();
        if (settled) return;
        settled = true;
        if (err !== undefined) reject(err);
        else resolve(out);
      };
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        resolve(out);
        // The request stays open on the server until it expires: keep listening, and return late deliveries.
      };
      const sub = nc.subscribe(inbox, {
        callback: (err, m) => {
          if (err) return finish(err);
          const status = m.headers?.code ?? 0;
          if (status === 0) {
            const d = this.delivery(m);
            if (settled) void d.retryAfter(0).catch(() => { /* it is redelivered after ack wait instead */ });
            else {
              out.push(d);
              this.held.set(d, Date.now() + this.ackWaitMs);
            }
            if (out.length >= batch) finish();
            return;
          }
          if (status === 404 || status === 408 || status === 409) return finish();
          if (status === 503) {
            return finish(new PwsyncError(6970, `consumer ${this.name}: no JetStream server answers for stream ${this.stream} ` +
              '(no leader, or NATS is restarting); fetch again shortly', { retryable: true }));
          }
          if (status === 100) return; // idle heartbeat
          finish(new Error(`consumer ${this.name}: pull answered ${status} ${m.headers?.description ?? ''}`));
        },
      });
      // Bounds the wait whatever the server does: the request's own length plus one request timeout.
      const guard = setTimeout(() => {
        if (out.length > 0 || expiresMs > 0) return finish();
        finish(new PwsyncError(6970, `consumer ${this.name}: NATS did not answer a pull in ${this.host.requestTimeoutMs} ms ` +
          `(unreachable, or this NATS user may not publish to ${this.host.apiPrefix}.CONSUMER.MSG.NEXT.${this.stream}.${this.name}); fetch again shortly`, { retryable: true }));
      }, expiresMs + this.host.requestTimeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      const body = expiresMs > 0 ? { batch, expires: Math.max(1, Math.round(expiresMs)) * 1_000_000 } : { batch, no_wait: true };
      nc.publish(`${this.host.apiPrefix}.CONSUMER.MSG.NEXT.${this.stream}.${this.name}`, JSON.stringify(body), { reply: inbox });
    });
  }

  private delivery(m: Msg): NatsDelivery {
    const meta = parseAckSubject(m.reply ?? '');
    if (!meta) throw new Error(`consumer ${this.name}: a delivery without a JetStream ack subject (${m.reply ?? 'none'})`);
    return new NatsDelivery(this, this.host.brokerSubject(m.subject), m.headers?.get('Nats-Msg-Id') ?? '', meta,
      Buffer.from(m.data), m.reply!);
  }

  /** Sends an ack-family reply and waits for the server's confirmation (double ack). */
  async settle(d: NatsDelivery, body: string, what: string): Promise<void> {
    this.host.assertOpen();
    await this.host.call(`consumer ${this.name}: ${what} of seq ${d.seq}`, async () => {
      await this.host.nc.request(d.ackSubject, body, { timeout: this.host.requestTimeoutMs });
    }, true);
    if (body === '+WPI') {
      if (this.held.has(d)) this.held.set(d, Date.now() + this.ackWaitMs);
    } else {
      this.held.delete(d);
    }
  }

  private request<T>(api: string, body: unknown, what: string, allowNotFound = false): Promise<T> {
    return this.host.call(`consumer ${this.name}: ${what}`, async () => {
      const r = await this.host.nc.request(`${this.host.apiPrefix}.${api}`, body === undefined ? '' : JSON.stringify(body),
        { timeout: this.host.requestTimeoutMs });
      const parsed = r.json<T & { error?: { code: number; err_code: number; description: string } }>();
      if (parsed.error) {
        if (allowNotFound && parsed.error.err_code === 10037) return {} as T;
        throw Object.assign(new Error(`${parsed.error.description} (JetStream error ${parsed.error.err_code})`),
          { name: 'JetStreamApiError', code: parsed.error.err_code });
      }
      return parsed;
    }, true);
  }
}

/**
 * JetStream hands out redeliveries in the order their delays ran out; the contract promises what
 * is due oldest first, which holds within each fetch.
 */
function bySeq(ds: Delivery[]): Delivery[] {
  return ds.sort((a, b) => a.seq - b.seq);
}

interface ApiConsumerInfo {
  num_pending: number;
  num_ack_pending: number;
  ack_floor: { stream_seq: number };
}

interface ApiMsgGet {
  message?: { time: string };
}

interface AckMeta {
  stream: string;
  deliveryCount: number;
  streamSeq: number;
  publishedAt: number;
}

/**
 * `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>`, and the
 * newer form with domain and account hash after `$JS.ACK` (and a trailing token).
 */
function parseAckSubject(s: string): AckMeta | undefined {
  const t = s.split('.');
  if (t[0] !== '$JS' || t[1] !== 'ACK') return undefined;
  const o = t.length === 9 ? 2 : t.length >= 11 ? 4 : -1;
  if (o < 0) return undefined;
  const ns = t[o + 5];
  if (!ns || !/^\d+$/.test(ns)) return undefined;
  return {
    stream: t[o]!,
    deliveryCount: Number(t[o + 2]),
    streamSeq: Number(t[o + 3]),
    publishedAt: Number(BigInt(ns) / 1_000_000n),
  };
}

/** RFC 3339 with nanoseconds, to ms since the epoch (truncated, as the ack subject's timestamp). */
function isoToMs(time: string): number {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(time);
  if (!m) return Date.parse(time);
  return Date.parse(`${m[1]}${m[3]}`) + Number((m[2] ?? '').padEnd(3, '0').slice(0, 3));
}

class NatsDelivery implements Delivery {
  readonly seq: number;
  readonly deliveryCount: number;
  readonly publishedAt: number;

  constructor(
    private readonly consumer: NatsConsumer,
    readonly subject: string,
    readonly msgId: string,
    meta: AckMeta,
    readonly data: Buffer,
    readonly ackSubject: string,
  ) {
    this.seq = meta.streamSeq;
    this.deliveryCount = meta.deliveryCount;
    this.publishedAt = meta.publishedAt;
  }

  ack(): Promise<void> {
    return this.consumer.settle(this, '+ACK', 'ack');
  }

  retryAfter(delayMs: number): Promise<void> {
    if (!(Number.isFinite(delayMs) && delayMs >= 0)) {
      return Promise.reject(new RangeError(`consumer ${this.consumer.name}: retryAfter needs a delay >= 0 ms, got ${delayMs}`));
    }
    const body = delayMs > 0 ? `-NAK ${JSON.stringify({ delay: Math.round(delayMs) * 1_000_000 })}` : '-NAK';
    return this.consumer.settle(this, body, 'retry');
  }

  /** Bare +TERM: nats-server 2.9 does not understand `+TERM reason` and would redeliver. */
  terminate(): Promise<void> {
    return this.consumer.settle(this, '+TERM', 'terminate');
  }

  working(): Promise<void> {
    return this.consumer.settle(this, '+WPI', 'in-progress');
  }
}
