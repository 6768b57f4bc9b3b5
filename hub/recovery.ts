import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { listsPending, subjectToken, type Broker } from '../core/broker.ts';
import { describeError } from '../core/errors.ts';
import { EVENTS } from '../core/events.ts';
import { requeueOperation } from './admin.ts';
import type { AuditTrail } from './audit.ts';
import { ackWaitOf } from './dispatcher.ts';
import type { OperationStatus } from './records.ts';
import type { HubState } from './state.ts';
import { opsSubject, type Target } from './targets.ts';

export interface RecoveryOptions {
  hubId: string;
  audit: AuditTrail;
  /** Only operations untouched this long count (ms): a status is written just before its publish. 0 at start, before any loop runs. */
  graceMs: number;
  /** Without a broker that lists what is queued (JetStream): an operation waiting this long past its due time (ms) is taken as stuck. */
  staleMs: number;
}

const unsettled = (o: OperationStatus): boolean => o.state === 'queued' || o.state === 'in-progress' || o.state === 'retrying';

/**
 * Finds set-operations that are queued, in progress or retrying while nothing will move them (the
 * delivery was acknowledged or terminated by another process, or a status was written after the
 * queue moved on) and queues them again, so that no operation stays unsettled for good. The
 * embedded broker says exactly what is queued; with JetStream an operation long past its due time
 * is taken as stuck, and should its old delivery still come, the dispatcher drops it.
 * Returns how many operations were re-queued.
 */
export async function recoverStuckOperations(broker: Broker, state: HubState, targets: readonly Target[], o: RecoveryOptions, log: Logger, now = Date.now()): Promise<number> {
  const ops = (await state.listOperations()).filter((s) => unsettled(s) && s.updatedAt <= now - o.graceMs);
  if (ops.length === 0) return 0;
  let recovered = 0;
  for (const t of targets) {
    const mine = ops.filter((s) => s.connector === t.config.name);
    if (mine.length === 0) continue;
    const stuck = await stuckOf(broker, t, mine, o.staleMs, now);
    for (const s of stuck) {
      try {
        if (await recover(broker, state, s, o, t.log)) recovered++;
      } catch (e) {
        t.log.warn({ opId: s.opId, err: describeError(e) }, 'cannot re-queue a stuck set-operation now; the next sweep tries again');
      }
    }
  }
  if (recovered > 0) log.warn({ eventId: 6983, recovered }, 'set-operations that nothing would have applied were queued again');
  return recovered;
}

async function stuckOf(broker: Broker, t: Target, ops: OperationStatus[], staleMs: number, now: number): Promise<OperationStatus[]> {
  if (!listsPending(broker)) {
    return ops.filter((s) => (s.state === 'retrying' ? s.nextAttemptAt ?? s.updatedAt : s.updatedAt) < now - staleMs);
  }
  const durable = `ops-${subjectToken(t.config.name)}`;
  // The consumer as the dispatcher makes it, so that a connector's first start does not find everything missing.
  await broker.consumer(durable, opsSubject(t.config.name), { ackWaitMs: ackWaitOf(t.config) });
  const pending = await broker.pendingMsgIds(durable);
  // Without a recorded delivery id, any message of the operation counts (the resolver's, or an older `pwsync retry`'s).
  const pendingOps = new Set([...pending].map((id) => id.split('.')[0]!));
  return ops.filter((s) => (s.delivery ? !pending.has(s.delivery) : !pendingOps.has(s.opId)));
}

async function recover(broker: Broker, state: HubState, s: OperationStatus, o: RecoveryOptions, log: Logger): Promise<boolean> {
  const audit = { actor: `hub ${o.hubId}`, from: hostname(), action: 'recover', subject: s.opId };
  if (!s.envelope) {
    // Recorded before statuses kept the sealed password: it cannot be queued again, so it fails visibly instead of waiting forever.
    const reason = `it was ${s.state} with nothing queued to apply it, and holds no sealed password: the person must change the password again`;
    await state.putOperation({ ...s, state: 'failed', eventId: 6941, reason, nextAttemptAt: undefined, updatedAt: Date.now() });
    await o.audit.record({ ...audit, result: 'failed', detail: `was ${s.state}; no sealed password: failed with 6941` });
    log.error({ eventId: 6941, opId: s.opId, objectId: s.objectId, reason }, EVENTS[6941].text);
    return false;
  }
  await requeueOperation(broker, state, s, `recovered: it was ${s.state} with nothing queued to apply it`, true);
  await o.audit.record({ ...audit, result: 'ok', detail: `was ${s.state} (attempts ${s.attempts}) with no queued delivery` });
  log.warn({ eventId: 6983, opId: s.opId, objectId: s.objectId, was: s.state, by: `hub ${o.hubId}` }, EVENTS[6983].text);
  return true;
}
