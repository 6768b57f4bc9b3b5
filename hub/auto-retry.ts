import { hostname } from 'node:os';
import type { Broker } from '../core/broker.ts';
import { describeError } from '../core/errors.ts';
import { EVENTS } from '../core/events.ts';
import { requeueOperation } from './admin.ts';
import type { AuditTrail } from './audit.ts';
import type { OperationStatus } from './records.ts';
import type { HubState } from './state.ts';
import type { Target } from './targets.ts';

/**
 * Failed for want of a reachable target: retries ran out (6941; only retryable causes are retried)
 * and the sealed password is still kept. A refusal (policy, rights, unknown object, no extension)
 * stays failed until an admin acts: the target answering again changes nothing for it.
 */
export const failedUnreachable = (o: OperationStatus): boolean => o.state === 'failed' && o.eventId === 6941 && o.envelope !== undefined;

/**
 * retry.failedWhenReachable: while a connector has operations that failed because its target was
 * unreachable, the hub probes the target (the connector's test(), as `pwsync connector test`)
 * every retry.probeEvery; once it answers, those operations are queued again (event 6984, audited
 * as the hub). Returns a function that stops the probes.
 */
export function startAutoRetry(broker: Broker, state: HubState, targets: readonly Target[], audit: AuditTrail, hubId: string): () => void {
  const timers = targets.filter((t) => t.config.retry.failedWhenReachable && !t.refusal).map((t) => {
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      retryWhenReachable(broker, state, t, audit, hubId)
        .catch((e: unknown) => t.log.warn({ err: describeError(e) }, 'automatic retry of failed set-operations failed; the next probe tries again'))
        .finally(() => { busy = false; });
    }, t.config.retry.probeEvery);
    timer.unref();
    return timer;
  });
  return () => { for (const t of timers) clearInterval(t); };
}

/** One probe: re-queues the connector's unreachable-target failures if it answers; returns how many. */
export async function retryWhenReachable(broker: Broker, state: HubState, t: Target, audit: AuditTrail, hubId: string): Promise<number> {
  const failed = (await state.listOperations()).filter((o) => o.connector === t.config.name && failedUnreachable(o));
  if (failed.length === 0) return 0;
  try {
    await t.connector.test();
  } catch (e) {
    t.log.debug({ failed: failed.length, err: describeError(e) }, 'target still unreachable: its failed set-operations wait');
    return 0;
  }
  let n = 0;
  for (const o of failed) {
    await requeueOperation(broker, state, o, 'retried automatically: the connector answered again');
    await audit.record({ actor: `hub ${hubId}`, from: hostname(), action: 'retry', subject: o.opId, result: 'ok', detail: `connector ${o.connector} answered again; was event ${o.eventId}` });
    t.log.info({ eventId: 6984, opId: o.opId, objectId: o.objectId, failedAt: new Date(o.updatedAt).toISOString() }, EVENTS[6984].text);
    n++;
  }
  return n;
}
