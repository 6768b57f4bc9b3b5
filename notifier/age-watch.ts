import { setTimeout as sleep } from 'node:timers/promises';
import type { Consumer } from '../core/broker.ts';
import { describeError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { logEvent } from './event-log.ts';

/**
 * Watches a target's queue age: when the oldest pending change crosses `warnAgeMs`, event 6944
 * is logged once; it is logged again only after the queue has come back under the limit.
 */
export interface AgeWatchOptions {
  consumer: Consumer;
  target: string;
  warnAgeMs: number;
  log: Logger;
  signal: AbortSignal;
  now?: () => number;
}

/** A quarter of the warning age, between 1 s and 60 s: timely without polling a calm queue hard. */
export function ageCheckInterval(warnAgeMs: number): number {
  return Math.min(60_000, Math.max(1_000, Math.floor(warnAgeMs / 4)));
}

export async function watchQueueAge(opts: AgeWatchOptions): Promise<void> {
  const now = opts.now ?? Date.now;
  const every = ageCheckInterval(opts.warnAgeMs);
  let warned = false;
  while (!opts.signal.aborted) {
    try {
      await sleep(every, undefined, { signal: opts.signal });
    } catch {
      return;
    }
    let oldestAgeMs: number | undefined;
    let pending = 0;
    try {
      const info = await opts.consumer.info();
      pending = info.pending;
      if (info.pending > 0 && info.oldestPublishedAt !== undefined) oldestAgeMs = now() - info.oldestPublishedAt;
    } catch (e) {
      if (opts.signal.aborted) return;
      opts.log.error({ target: opts.target, error: describeError(e) }, 'cannot read the queue age');
      continue;
    }
    const over = oldestAgeMs !== undefined && oldestAgeMs > opts.warnAgeMs;
    if (over && !warned) {
      logEvent(opts.log, 6944, { target: opts.target, pending, oldestAgeMs, warnAgeMs: opts.warnAgeMs });
    } else if (!over && warned) {
      opts.log.info({ target: opts.target, pending }, 'the queue is back under its warning age');
    }
    warned = over;
  }
}
