import { setTimeout as sleep } from 'node:timers/promises';
import type { Broker, Consumer, Delivery } from '../core/broker.ts';
import { describeError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { PendingChange } from '../proto/generated/pwsync/v1/PendingChange.ts';
import type { ReportRequest } from '../proto/generated/pwsync/v1/ReportRequest.ts';
import type { ReportResponse__Output } from '../proto/generated/pwsync/v1/ReportResponse.ts';
import { MAX_REPORT_NOTICES } from '../proto/service.ts';
import type { CaptureState } from './capture-source.ts';
import { backoffMs } from './delivery.ts';
import { decodeNotice, noticeConsumer, noticeSubject, type QueuedNotice } from './notice.ts';

/**
 * Reports to each target's hub: every `intervalMs` (and as soon as an out-of-scope notice is
 * queued) one Report call says that this DC is alive, how its capture is doing, how many changes
 * wait for that hub, and carries the notices queued for it. A notice leaves the queue only once
 * the hub answers that it stored it; a failed call keeps them all and backs off.
 */

export interface ReportChannel {
  report(req: ReportRequest): Promise<ReportResponse__Output>;
}

export interface ReportTarget {
  name: string;
  /** subjectToken(name) */
  token: string;
  channel: ReportChannel;
  /** Changes waiting for this hub (delivery queue and held changes). */
  queued: () => Promise<number>;
  /** Which accounts those are (a bounded list, the oldest first) and how many more. */
  pending?: () => Promise<{ changes: PendingChange[]; omitted: number }>;
  /** Hex key id of the public key the notifier seals for this hub. */
  sealingKeyId?: string;
  /** The hub's answer named the keys it opens (current first). */
  hubKeys?: (keyIds: string[]) => Promise<void>;
  /** First wait after a failed report, doubled up to maxRetryIntervalMs (default 5 s, and intervalMs). */
  retryIntervalMs?: number;
  maxRetryIntervalMs?: number;
  /** Longest one call may take; the notices' lease outlasts it. Default 10 s. */
  timeoutMs?: number;
}

export interface ReportOptions {
  broker: Broker;
  targets: readonly ReportTarget[];
  notifierId: string;
  /** This DC's domain (DNS name) and host name. */
  domain: string;
  host: string;
  /** The capture sources' states, read at each report. */
  capture: () => CaptureState[];
  /** notifier.report */
  intervalMs: number;
  /** Notices per call; default 100, never more than a hub takes (MAX_REPORT_NOTICES). */
  maxNotices?: number;
  log: Logger;
  now?: () => number;
}

export interface RunningReports {
  stop(): Promise<void>;
}

/** A notice the hub does not store after this many reports is dropped (logged): it would never leave. */
const MAX_NOTICE_TRIES = 20;
const REPEAT_LOG_MS = 60_000;

export async function startReports(opts: ReportOptions): Promise<RunningReports> {
  const abort = new AbortController();
  const loops: Promise<void>[] = [];
  for (const t of opts.targets) {
    const consumer = await opts.broker.consumer(noticeConsumer(t.token), noticeSubject(t.token), { ackWaitMs: (t.timeoutMs ?? 10_000) + 60_000 });
    loops.push(new ReportLoop(opts, t, consumer, abort.signal).run());
  }
  return {
    stop: async () => {
      abort.abort();
      await Promise.allSettled(loops);
    },
  };
}

class ReportLoop {
  private failures = 0;
  private lastWarnAt = 0;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly maxNotices: number;

  constructor(private readonly opts: ReportOptions, private readonly target: ReportTarget, private readonly consumer: Consumer, private readonly signal: AbortSignal) {
    this.now = opts.now ?? Date.now;
    this.maxNotices = Math.min(opts.maxNotices ?? 100, MAX_REPORT_NOTICES);
    this.log = opts.log.child({ target: target.name });
  }

  async run(): Promise<void> {
    let next = this.now();
    while (!this.signal.aborted) {
      try {
        const wait = Math.max(0, next - this.now());
        let batch: Delivery[] = [];
        if (this.failures === 0) {
          // Wakes early when a notice is queued: the hub hears about it at once.
          batch = await this.consumer.fetch({ max: this.maxNotices, expiresMs: wait, signal: this.signal });
        } else {
          await this.pause(wait);
        }
        if (this.signal.aborted) return;
        if (batch.length === 0 && this.now() < next) continue;
        if (this.failures > 0) batch = await this.consumer.fetch({ max: this.maxNotices, expiresMs: 0 });
        const ok = await this.report(batch);
        next = this.now() + (ok ? this.opts.intervalMs : this.backoff());
      } catch (e) {
        if (this.signal.aborted) return;
        this.log.error({ err: describeError(e) }, 'report loop error; retrying');
        next = this.now() + this.backoff();
      }
    }
  }

  private backoff(): number {
    return backoffMs(Math.max(1, this.failures), this.target.retryIntervalMs ?? 5_000, this.target.maxRetryIntervalMs ?? this.opts.intervalMs);
  }

  /** One Report call with these notices; true when the hub answered. */
  private async report(batch: Delivery[]): Promise<boolean> {
    const notices: Array<{ d: Delivery; n: QueuedNotice }> = [];
    for (const d of batch) {
      try {
        notices.push({ d, n: decodeNotice(d.data) });
      } catch (e) {
        this.log.error({ msgId: d.msgId, err: describeError(e) }, 'a queued notice cannot be read; dropped');
        await d.terminate();
      }
    }
    let res: ReportResponse__Output;
    const pending = await this.target.pending?.();
    try {
      res = await this.target.channel.report({
        notifierId: this.opts.notifierId, domain: this.opts.domain, sourceDc: this.opts.host,
        capture: this.opts.capture().map((c) => ({ source: c.source, state: c.state, detail: c.detail, lastCaptureMs: c.lastCaptureMs })),
        notices: notices.map(({ n }) => n), sentTimeMs: this.now(), queued: await this.target.queued(),
        ...(pending ? { pending: pending.changes, pendingOmitted: pending.omitted } : {}),
        ...(this.target.sealingKeyId ? { sealingKeyId: this.target.sealingKeyId } : {}),
      });
    } catch (e) {
      this.failures++;
      const delay = this.backoff();
      await Promise.all(notices.map(({ d }) => d.retryAfter(delay)));
      const quiet = this.failures > 1 && this.now() - this.lastWarnAt < REPEAT_LOG_MS;
      if (!quiet) this.lastWarnAt = this.now();
      this.log[quiet ? 'debug' : 'warn']({
        err: describeError(e), notices: notices.length, failures: this.failures, retryInMs: delay,
        ...((e as { code?: unknown }).code !== undefined ? { code: (e as { code?: unknown }).code } : {}),
      }, 'report to the hub failed; its notices stay queued');
      return false;
    }
    if (this.failures > 0) this.log.info({ failures: this.failures }, 'reports to the hub resumed');
    this.failures = 0;
    await this.target.hubKeys?.(res.keyIds);
    const stored = new Set(res.storedNoticeIds.map((id) => Buffer.from(id).toString('hex')));
    await Promise.all(notices.map(async ({ d, n }) => {
      if (stored.has(n.noticeId.toString('hex'))) return d.ack();
      if (d.deliveryCount >= MAX_NOTICE_TRIES) {
        this.log.error({ account: n.account?.samAccountName, reason: n.reason, tries: d.deliveryCount }, 'the hub did not store a notice after many reports; dropped (see the hub\'s log)');
        return d.terminate();
      }
      return d.retryAfter(this.opts.intervalMs);
    }));
    this.log.debug({ notices: notices.length, stored: stored.size, hubClockSkewMs: res.hubTimeMs ? this.now() - res.hubTimeMs : undefined }, 'reported');
    return true;
  }

  private async pause(ms: number): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: this.signal });
    } catch {
      // aborted: the loop sees the signal
    }
  }
}
