import type { Broker } from '../core/broker.ts';
import { UsageError } from '../core/errors.ts';
import type { DcRecord } from './dc-registry.ts';
import { encode, type OperationRecord, type OperationStatus, type SyncStatus } from './records.ts';
import type { HubState } from './state.ts';
import { opsSubject } from './targets.ts';

export interface StatusQuery {
  account?: { domain?: string; samAccountName: string };
  connector?: string;
  failedOnly?: boolean;
}

const same = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

/** What `pwsync status` shows: per (account, connector) sync state, and the operations behind it. */
export async function queryStatus(state: HubState, q: StatusQuery): Promise<{ sync: SyncStatus[]; operations: OperationStatus[] }> {
  const match = (s: { domain: string; samAccountName: string; connector: string }): boolean =>
    (!q.account || (same(s.samAccountName, q.account.samAccountName) && (!q.account.domain || same(s.domain, q.account.domain))))
    && (!q.connector || s.connector === q.connector);
  const sync = (await state.listSync()).filter(match)
    .filter((s) => !q.failedOnly || s.state === 'out-of-sync')
    .sort((a, b) => a.samAccountName.localeCompare(b.samAccountName) || a.connector.localeCompare(b.connector));
  const operations = (await state.listOperations())
    .filter((o) => match({ ...o.account, connector: o.connector }))
    .filter((o) => !q.failedOnly || o.state === 'failed')
    .sort((a, b) => a.updatedAt - b.updatedAt);
  return { sync, operations };
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
  const at = (ms: number): string => new Date(ms).toISOString();
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
 * Re-queues a failed set-operation with its sealed password, as if new: attempts start again.
 * Works while the hub runs (it picks the operation up) or is stopped (it does at start).
 */
export async function retryOperation(broker: Broker, state: HubState, opId: string): Promise<OperationStatus> {
  const status = await state.getOperation(opId);
  if (!status) throw new UsageError(`no set-operation ${opId}: list them with \`pwsync status --failed\``);
  if (status.state !== 'failed') throw new UsageError(`set-operation ${opId} is ${status.state}, not failed: only failed operations are retried`);
  if (!status.envelope) {
    throw new UsageError(`set-operation ${opId} no longer holds its sealed password (${status.eventId === 6919 ? 'a newer change was applied' : 'kept only for hub.keepFailedFor'}): the person must change the password again`);
  }
  const op: OperationRecord = {
    opId, changeId: status.changeId, connector: status.connector, objectId: status.objectId,
    account: status.account, changeTime: status.changeTime, envelope: status.envelope,
  };
  const requeued: OperationStatus = { ...status, state: 'queued', attempts: 0, eventId: undefined, reason: 'retried by an admin', updatedAt: Date.now() };
  await state.putOperation(requeued);
  await broker.publish(opsSubject(status.connector), encode(op), { msgId: `${opId}.retry.${Date.now()}` });
  return requeued;
}

/**
 * Housekeeping: drops the sealed passwords of failures older than `keepFailedMs`, and forgets
 * settled operations (successful or failed) older than `keepHistoryMs`, so the state stays bounded.
 */
export async function purgeOperations(state: HubState, keepFailedMs: number, keepHistoryMs: number, now = Date.now()): Promise<{ sealed: number; forgotten: number }> {
  let sealed = 0;
  let forgotten = 0;
  for (const o of await state.listOperations()) {
    const settled = o.state === 'successful' || o.state === 'failed';
    if (settled && o.updatedAt < now - keepHistoryMs) {
      await state.deleteOperation(o.opId);
      forgotten++;
    } else if (o.state === 'failed' && o.envelope && o.updatedAt < now - keepFailedMs) {
      await state.putOperation({ ...o, envelope: undefined });
      sealed++;
    }
  }
  return { sealed, forgotten };
}
