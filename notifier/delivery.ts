import { setTimeout as sleep } from 'node:timers/promises';
import type { Broker, Consumer, Delivery } from '../core/broker.ts';
import { describeError } from '../core/errors.ts';
import { isEventId } from '../core/events.ts';
import type { Logger } from '../core/log.ts';
import type { ChangeAck__Output } from '../proto/generated/pwsync/v1/ChangeAck.ts';
import type { ReportRequest } from '../proto/generated/pwsync/v1/ReportRequest.ts';
import type { ReportResponse__Output } from '../proto/generated/pwsync/v1/ReportResponse.ts';
import type { SubmitRequest } from '../proto/generated/pwsync/v1/SubmitRequest.ts';
import { watchQueueAge } from './age-watch.ts';
import { logEvent } from './event-log.ts';
import { refusedKeyId, type HubKeyCheck, type KeyHold } from './key-hold.ts';
import type { PendingIndex } from './pending.ts';
import { decodeQueuedChange, deliverConsumer, deliverSubject, type QueuedChange } from './queued-change.ts';

/**
 * Delivery to one target: a loop over the target's durable queue. Order per account is kept by
 * keeping order overall: one batch in flight, batches in queue order, and a batch that failed is
 * made due again as a whole and fetched again before anything newer (the loop waits out the delay
 * before its next fetch). Each target has its own loop and channel, so a target that is down
 * slows no other.
 */

/** The call to a hub; throws on a failed call (a DeliveryError saying whether it is retryable). */
export interface SubmitChannel {
  submit(req: SubmitRequest): Promise<ChangeAck__Output[]>;
  close(): void;
}

/** The whole channel to a hub: changes (this loop) and reports (notifier/report.ts). */
export interface HubChannel extends SubmitChannel {
  report(req: ReportRequest): Promise<ReportResponse__Output>;
}

export interface DeliveryTarget {
  name: string;
  /** subjectToken(name) */
  token: string;
  batchSize: number;
  retryIntervalMs: number;
  maxRetryIntervalMs: number;
  /** Longest one call may take; the broker lease outlasts it. */
  timeoutMs: number;
}

export interface DeliveryOptions {
  broker: Broker;
  channel: SubmitChannel;
  target: DeliveryTarget;
  warnAgeMs: number;
  maxAgeMs: number;
  /** This notifier's host name, sent as notifier_id. */
  notifierId: string;
  log: Logger;
  now?: () => number;
  /** How long one fetch waits for a change before looping (also bounds how soon stop is seen). */
  fetchWaitMs?: number;
  /** While the hub does not open the target's key nothing is sent; a change it refuses as sealed for another key is parked. */
  keys?: { check: HubKeyCheck; hold: KeyHold };
  /** Forgets a change here once the hub has it (or it is dropped). */
  pending?: PendingIndex;
}

export interface TargetDelivery {
  readonly target: string;
  /** Changes in the target's queue not yet acknowledged by its hub. */
  queued(): Promise<number>;
  /** Stops fetching; resolves when the call in flight, if any, has finished and been recorded. */
  stop(): Promise<void>;
}

/** A repeated delivery failure is logged at warn at most this often; the rest at debug. */
const REPEAT_LOG_MS = 60_000;
/** The retried batch is fetched this long after its redelivery time, so all of it is due again. */
const DUE_MARGIN_MS = 25;

export function backoffMs(failures: number, retryIntervalMs: number, maxRetryIntervalMs: number): number {
  let delay = retryIntervalMs;
  for (let i = 1; i < failures && delay < maxRetryIntervalMs; i++) delay *= 2;
  return Math.min(delay, maxRetryIntervalMs);
}

export async function startDelivery(opts: DeliveryOptions): Promise<TargetDelivery> {
  const { target, log } = opts;
  const consumer = await opts.broker.consumer(deliverConsumer(target.token), deliverSubject(target.token), {
    ackWaitMs: target.timeoutMs + 60_000,
  });
  const abort = new AbortController();
  const loop = new DeliveryLoop(opts, consumer, abort.signal);
  const running = Promise.all([
    loop.run(),
    watchQueueAge({ consumer, target: target.name, warnAgeMs: opts.warnAgeMs, log, signal: abort.signal, ...(opts.now ? { now: opts.now } : {}) }),
  ]);
  return {
    target: target.name,
    queued: async () => (await consumer.info()).pending,
    stop: async () => {
      abort.abort();
      await running;
    },
  };
}

interface Sendable {
  delivery: Delivery;
  change: QueuedChange;
  id: string;
}

class DeliveryLoop {
  private failures = 0;
  private lastWarnAt = 0;
  /**
   * Halved when the hub answers RESOURCE_EXHAUSTED (a batch above its message limit) and kept so
   * until restart: growing back would fail every other call against the same limit.
   */
  private batchLimit: number;
  private readonly now: () => number;
  private readonly log: Logger;

  constructor(private readonly opts: DeliveryOptions, private readonly consumer: Consumer, private readonly signal: AbortSignal) {
    this.now = opts.now ?? Date.now;
    this.log = opts.log.child({ target: opts.target.name });
    this.batchLimit = opts.target.batchSize;
  }

  async run(): Promise<void> {
    while (!this.signal.aborted) {
      try {
        await this.step();
      } catch (e) {
        if (this.signal.aborted) return;
        // The broker failed (not the hub): wait a retry interval rather than spin.
        this.log.error({ error: describeError(e) }, 'delivery loop error; retrying');
        await this.pause(this.opts.target.retryIntervalMs);
      }
    }
  }

  private async step(): Promise<void> {
    if (this.opts.keys?.check.holding) {
      // Held (6987): the queue keeps every change, sealed, until a report says the hub opens the key.
      await this.pause(Math.min(this.opts.fetchWaitMs ?? 5_000, 1_000));
      return;
    }
    const batch = await this.consumer.fetch({
      max: this.batchLimit, expiresMs: this.opts.fetchWaitMs ?? 5_000, signal: this.signal,
    });
    if (batch.length === 0) return;
    const sendable = await this.readable(batch);
    if (sendable.length === 0) return;
    const unacknowledged = await this.send(sendable);
    if (unacknowledged.length === 0) return;
    const delay = backoffMs(this.failures, this.opts.target.retryIntervalMs, this.opts.target.maxRetryIntervalMs);
    // Called together, in queue order: one commit, and the same delay keeps their relative order.
    await Promise.all(unacknowledged.map((s) => s.delivery.retryAfter(delay)));
    await this.pause(delay + DUE_MARGIN_MS);
  }

  /** Drops what expired or cannot be read; the rest, in queue order. */
  private async readable(batch: Delivery[]): Promise<Sendable[]> {
    const out: Sendable[] = [];
    const dropped: Array<Promise<void>> = [];
    for (const delivery of batch) {
      let change: QueuedChange;
      try {
        change = decodeQueuedChange(delivery.data);
      } catch (e) {
        logEvent(this.log, 6946, { msgId: delivery.msgId, reason: `unreadable queue record: ${describeError(e)}` });
        dropped.push(delivery.terminate());
        continue;
      }
      const id = change.changeId.toString('hex');
      const ageMs = this.now() - delivery.publishedAt;
      if (ageMs > this.opts.maxAgeMs) {
        logEvent(this.log, 6945, { changeId: id, domain: change.domain, account: change.account?.samAccountName, ageMs, maxAgeMs: this.opts.maxAgeMs });
        dropped.push(this.settle(delivery.terminate(), change));
        continue;
      }
      out.push({ delivery, change, id });
    }
    await Promise.all(dropped);
    return out;
  }

  /** One Submit call; records its outcome and returns what must be sent again. */
  private async send(batch: Sendable[]): Promise<Sendable[]> {
    let acks: ChangeAck__Output[];
    try {
      acks = await this.opts.channel.submit({ notifierId: this.opts.notifierId, changes: batch.map((s) => s.change) });
    } catch (e) {
      this.failed(batch.length, describeError(e), e);
      if ((e as { code?: unknown }).code === 'RESOURCE_EXHAUSTED' && batch.length > 1) {
        this.batchLimit = Math.max(1, Math.floor(batch.length / 2));
        this.log.warn({ batchSize: this.batchLimit }, 'the hub refused the batch as too large; sending smaller batches until restart (lower targets[].batchSize or raise hub.maxMessageBytes)');
      }
      return batch;
    }
    const byId = new Map(acks.map((a) => [Buffer.from(a.changeId).toString('hex'), a]));
    const missing: Sendable[] = [];
    const settled: Array<Promise<void>> = [];
    let accepted = 0;
    for (const s of batch) {
      const ack = byId.get(s.id);
      const keyId = ack?.status === 'REJECTED' && this.opts.keys ? refusedKeyId(ack.reason) : undefined;
      if (ack?.status === 'ACCEPTED_DURABLE' || ack?.status === 'DUPLICATE') {
        settled.push(this.settle(s.delivery.ack(), s.change));
        accepted++;
      } else if (keyId && this.opts.keys) {
        // Sealed for a key the hub does not open (any more): kept, never dropped on that reason.
        const keys = this.opts.keys;
        settled.push(keys.hold.park(s.change, keyId).then(() => s.delivery.terminate()));
      } else if (ack?.status === 'REJECTED') {
        logEvent(this.log, 6946, { changeId: s.id, domain: s.change.domain, account: s.change.account?.samAccountName, reason: ack.reason });
        settled.push(this.settle(s.delivery.terminate(), s.change));
      } else {
        missing.push(s);
      }
    }
    await Promise.all(settled);
    if (missing.length > 0) {
      this.failed(missing.length, `the hub did not acknowledge ${missing.length} of ${batch.length} changes`);
    } else {
      if (this.failures > 0) this.log.info({ failures: this.failures }, 'delivery to the target resumed');
      this.failures = 0;
    }
    this.log.debug({ sent: batch.length, accepted, retry: missing.length }, 'batch delivered');
    return missing;
  }

  /** After an ack or terminate: the change no longer waits here. */
  private async settle(done: Promise<void>, change: QueuedChange): Promise<void> {
    await done;
    await this.opts.pending?.drop(this.opts.target.token, change);
  }

  private failed(count: number, error: string, cause?: unknown): void {
    this.failures++;
    const retryInMs = backoffMs(this.failures, this.opts.target.retryIntervalMs, this.opts.target.maxRetryIntervalMs);
    const quiet = this.failures > 1 && this.now() - this.lastWarnAt < REPEAT_LOG_MS;
    if (!quiet) this.lastWarnAt = this.now();
    const detail = cause as { retryable?: unknown; code?: unknown; eventId?: unknown } | undefined;
    logEvent(this.log, typeof detail?.eventId === 'number' && isEventId(detail.eventId) ? detail.eventId : 6943, {
      changes: count, failures: this.failures, retryInMs, error,
      ...(typeof detail?.retryable === 'boolean' ? { retryable: detail.retryable } : {}),
      ...(detail?.code !== undefined ? { code: detail.code } : {}),
    }, { quiet });
  }

  private async pause(ms: number): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: this.signal });
    } catch {
      // aborted: the loop sees the signal
    }
  }
}
