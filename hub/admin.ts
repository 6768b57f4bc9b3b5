import { randomBytes } from 'node:crypto';
import type { Broker } from '../core/broker.ts';
import { formatTime } from '../core/change-time.ts';
import { UsageError } from '../core/errors.ts';
import { EVENTS } from '../core/events.ts';
import type { Logger } from '../core/log.ts';
import { localActor, type AuditTrail } from './audit.ts';
import type { DcRecord } from './dc-registry.ts';
import { encode, SETTLED_STATES, type OperationRecord, type OperationStatus, type SyncStatus } from './records.ts';
import type { HubState } from './state.ts';
import { opsSubject } from './targets.ts';

export interface StatusQuery {
  account?: { domain?: string; samAccountName: string };
  connector?: string;
  failedOnly?: boolean;
}

const same = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

export interface StatusResult {
  sync: SyncStatus[];
  operations: OperationStatus[];
  /** With an account asked: whether this hub has a record of it on any connector. */
  accountKnown?: boolean;
  /** Whether this hub has recorded any account at all. */
  recorded: boolean;
}

/**
 * What `pwsync status` shows: per (account, connector) sync state, and the operations behind it.
 * `connectors` (the hub YAML's) refuses a connector that does not exist rather than answer nothing.
 */
export async function queryStatus(state: HubState, q: StatusQuery, connectors?: readonly string[]): Promise<StatusResult> {
  if (q.connector !== undefined && connectors && !connectors.includes(q.connector)) {
    throw new UsageError(`no such connector ${q.connector}: the hub YAML has ${connectors.length > 0 ? connectors.join(', ') : 'none'}`);
  }
  const ofAccount = (s: { domain: string; samAccountName: string }): boolean =>
    !q.account || (same(s.samAccountName, q.account.samAccountName) && (!q.account.domain || same(s.domain, q.account.domain)));
  const match = (s: { domain: string; samAccountName: string; connector: string }): boolean => ofAccount(s) && (!q.connector || s.connector === q.connector);
  const all = await state.listSync();
  const sync = all.filter(match)
    .filter((s) => !q.failedOnly || s.state === 'out-of-sync')
    .sort((a, b) => a.samAccountName.localeCompare(b.samAccountName) || a.connector.localeCompare(b.connector));
  const operations = (await state.listOperations())
    .filter((o) => match({ ...o.account, connector: o.connector }))
    .filter((o) => !q.failedOnly || o.state === 'failed')
    .sort((a, b) => a.updatedAt - b.updatedAt);
  return { sync, operations, recorded: all.length > 0, ...(q.account ? { accountKnown: all.some(ofAccount) } : {}) };
}

/** Whether what status shows holds a failure: a person out of sync, or a failed set-operation (`pwsync status` exits 3). */
export function showsFailure(r: Pick<StatusResult, 'sync' | 'operations'>): boolean {
  return r.sync.some((s) => s.state === 'out-of-sync') || r.operations.some((o) => o.state === 'failed');
}

/** A change waiting at a DC's notifier for this hub, as that DC last reported it. */
export interface PendingAtDc {
  domain: string;
  sourceDc: string;
  samAccountName: string;
  changeTime: number;
  queuedSince: number;
  held: string;
}

/** The changes the DCs last reported as waiting for this hub, for one account or all. */
export function pendingAtDcs(dcs: readonly DcRecord[], account?: StatusQuery['account']): PendingAtDc[] {
  return dcs.flatMap((d) => (d.pending ?? [])
    .filter((p) => !account || (same(p.samAccountName, account.samAccountName) && (!account.domain || same(d.domain, account.domain))))
    .map((p) => ({ domain: d.domain, sourceDc: d.sourceDc, samAccountName: p.samAccountName, changeTime: p.changeTime, queuedSince: p.queuedSince, held: p.held })))
    .sort((a, b) => a.samAccountName.localeCompare(b.samAccountName) || a.changeTime - b.changeTime);
}

/** "pending at dc1: change of T held (…)" or "queued at dc1 since T". */
export function describePending(p: PendingAtDc): string {
  const at = formatTime;
  return p.held ? `pending at ${p.sourceDc}: change of ${at(p.changeTime)} ${p.held}` : `queued at ${p.sourceDc} since ${at(p.queuedSince)} (change of ${at(p.changeTime)})`;
}

/**
 * A row is not in-sync while a newer change of its account waits at a DC: it shows as pending,
 * with where and why. (A change the hub has, but not yet applied, is pending already.)
 */
export function withPending(sync: readonly SyncStatus[], pending: readonly PendingAtDc[]): SyncStatus[] {
  return sync.map((s) => {
    const newer = pending.filter((p) => same(p.domain, s.domain) && same(p.samAccountName, s.samAccountName) && p.changeTime > s.changeTime);
    if (newer.length === 0 || (s.state !== 'in-sync' && s.state !== 'pending')) return s;
    const latest = newer[newer.length - 1]!;
    return { ...s, state: 'pending', reason: describePending(latest) };
  });
}

/**
 * Queues a set-operation again with its sealed password, under a new message id that the status
 * records: a delivery of it still queued under an older id is dropped when it comes (dispatcher).
 * Works while the hub runs (it picks the operation up) or is stopped (it does at start).
 * `keepAttempts`: a recovered operation goes on counting; one an admin or the hub retries starts again.
 */
export async function requeueOperation(broker: Broker, state: HubState, status: OperationStatus, why: string, keepAttempts = false): Promise<OperationStatus> {
  if (!status.envelope) throw new UsageError(`set-operation ${status.opId} holds no sealed password: ${noPasswordWhy(status)}`);
  const delivery = `${status.opId}.requeue.${Date.now()}.${randomBytes(4).toString('hex')}`;
  const op: OperationRecord = {
    opId: status.opId, changeId: status.changeId, connector: status.connector, objectId: status.objectId,
    account: status.account, changeTime: status.changeTime, envelope: status.envelope,
  };
  const requeued: OperationStatus = {
    ...status, state: 'queued', attempts: keepAttempts ? status.attempts : 0, eventId: undefined, nextAttemptAt: undefined,
    reason: why, delivery, updatedAt: Date.now(),
  };
  // Status first: a crash before the publish leaves a queued operation without a delivery, which the next start recovers.
  await state.putOperation(requeued);
  await broker.publish(opsSubject(status.connector), encode(op), { msgId: delivery });
  return requeued;
}

function noPasswordWhy(o: OperationStatus): string {
  return o.eventId === 6919
    ? 'it was superseded (6919): a newer change for the same object was applied, so this one is never applied again and there is nothing to retry'
    : 'it was dropped after hub.keepFailedFor: the person must change the password again';
}

/**
 * `pwsync retry ID`: re-queues any set-operation that is not settled successfully (failed,
 * retrying, queued or in progress), as if new: attempts start again.
 */
export async function retryOperation(broker: Broker, state: HubState, opId: string): Promise<OperationStatus> {
  const status = await state.getOperation(opId);
  if (!status) throw new UsageError(`no set-operation ${opId}: list them with \`pwsync status --failed\``);
  if (status.state === 'superseded') {
    throw new UsageError(`set-operation ${opId} was superseded by a newer change for the same object (6919): there is nothing to retry, the newer password is the one that counts`);
  }
  if (status.state === 'successful') throw new UsageError(`set-operation ${opId} is successful: the password is set, there is nothing to retry`);
  if (!status.envelope) throw new UsageError(`set-operation ${opId} cannot be retried: ${noPasswordWhy(status)}`);
  return requeueOperation(broker, state, status, 'retried by an admin');
}

/** Which failed operations a bulk retry takes: one connector, optionally one event and a span of failure times (ms). */
export interface RetryFilter {
  connector: string;
  eventId?: number;
  from?: number;
  to?: number;
}

/**
 * The failed operations that match `f`, split into those that can be re-queued and those that no
 * longer hold a sealed password (superseded by a newer change, or older than keepFailedFor).
 */
export async function failedMatching(state: HubState, f: RetryFilter): Promise<{ retryable: OperationStatus[]; withoutPassword: OperationStatus[] }> {
  const matching = (await state.listOperations()).filter((o) => o.state === 'failed' && o.connector === f.connector
    && (f.eventId === undefined || o.eventId === f.eventId)
    && (f.from === undefined || o.updatedAt >= f.from) && (f.to === undefined || o.updatedAt <= f.to))
    .sort((a, b) => a.updatedAt - b.updatedAt);
  return { retryable: matching.filter((o) => o.envelope), withoutPassword: matching.filter((o) => !o.envelope) };
}

/**
 * Housekeeping: drops the sealed passwords of failures older than `keepFailedMs`, and forgets
 * settled operations (successful, failed, superseded) older than `keepHistoryMs`, so the state stays bounded.
 */
export async function purgeOperations(state: HubState, keepFailedMs: number, keepHistoryMs: number, now = Date.now()): Promise<{ sealed: number; forgotten: number }> {
  let sealed = 0;
  let forgotten = 0;
  for (const o of await state.listOperations()) {
    if (SETTLED_STATES.has(o.state) && o.updatedAt < now - keepHistoryMs) {
      await state.deleteOperation(o.opId);
      forgotten++;
    } else if (o.state === 'failed' && o.envelope && o.updatedAt < now - keepFailedMs) {
      await state.putOperation({ ...o, envelope: undefined });
      sealed++;
    }
  }
  return { sealed, forgotten };
}

/** The change time last applied to one target object, as `pwsync status --account` lists it. */
export interface LatestApplied {
  connector: string;
  objectId: string;
  changeTime: number;
  changeId: string;
}

/** The latest-applied change time of each object the account's sync states and operations name. */
export async function latestOf(state: HubState, seen: ReadonlyArray<{ connector: string; objectId?: string }>): Promise<LatestApplied[]> {
  const objects = new Map<string, { connector: string; objectId: string }>();
  for (const s of seen) if (s.objectId) objects.set(`${s.connector}\0${s.objectId}`, { connector: s.connector, objectId: s.objectId });
  const out: LatestApplied[] = [];
  for (const o of objects.values()) {
    const l = await state.latestApplied(o.connector, o.objectId);
    if (l) out.push({ ...o, changeTime: l.changeTime, changeId: l.changeId });
  }
  return out.sort((a, b) => a.connector.localeCompare(b.connector) || a.objectId.localeCompare(b.objectId));
}

/**
 * Clears a target object's latest-applied change time (one stamped in the future refuses every
 * real change as older, 6919): recorded in the audit trail as `latest-clear` and logged as 6976.
 */
export async function clearLatestApplied(
  state: HubState, audit: AuditTrail, log: Logger, connector: string, objectId: string, who = localActor(),
): Promise<LatestApplied> {
  const subject = `${connector}/${objectId}`;
  const old = await state.clearLatest(connector, objectId);
  if (!old) {
    await audit.record({ ...who, action: 'latest-clear', subject, result: 'refused', detail: 'no latest-applied change time recorded' });
    throw new UsageError(`connector ${connector} has no latest-applied change time for object ${objectId}: \`pwsync status --account NAME\` lists the recorded ones`);
  }
  await audit.record({ ...who, action: 'latest-clear', subject, result: 'ok', detail: `cleared change ${old.changeId} of ${formatTime(old.changeTime)}` });
  log.info({ eventId: 6976, connector, objectId, changeId: old.changeId, changeTime: formatTime(old.changeTime), actor: who.actor, from: who.from }, EVENTS[6976].text);
  return { connector, objectId, ...old };
}
