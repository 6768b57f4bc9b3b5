import { changeTimeProblem } from '../core/change-time.ts';
import type { AccountRef } from '../core/extension.ts';

/**
 * What the hub keeps in its broker: a change as accepted from a notifier, and a set-operation
 * (one change applied to one joined object). Both carry the password only as the sealed envelope
 * (base64 of ciphertext), opened by the worker that applies it.
 */
export interface ChangeRecord {
  changeId: string;
  domain: string;
  sourceDc: string;
  account: AccountRef;
  changeTime: number;
  envelope: string;
  receivedAt: number;
  caller: string;
}

/** One change for one joined object: the change's identity and envelope, and where it goes. */
export type OperationRecord = Pick<ChangeRecord, 'changeId' | 'account' | 'changeTime' | 'envelope'> & {
  opId: string;
  connector: string;
  objectId: string;
};

/** `superseded`: not applied because a newer change for the same object won (6919); not a failure. */
export type OperationState = 'queued' | 'in-progress' | 'successful' | 'retrying' | 'failed' | 'superseded';

/** The states an operation ends in: nothing more happens to it unless an admin retries a failed one. */
export const SETTLED_STATES: ReadonlySet<OperationState> = new Set(['successful', 'failed', 'superseded']);

/** What `pwsync status` shows for one set-operation. */
export interface OperationStatus {
  opId: string;
  changeId: string;
  connector: string;
  objectId: string;
  account: AccountRef;
  changeTime: number;
  state: OperationState;
  attempts: number;
  nextAttemptAt?: number;
  eventId?: number;
  reason?: string;
  updatedAt: number;
  /** The sealed password, kept while the operation is not settled successfully (a failure keeps
   *  it until it is older than `keepFailedFor`), so that the hub can re-queue an operation whose
   *  delivery is gone and `pwsync retry` can re-queue any unsettled one. */
  envelope?: string;
  /** The message id of the queued set-operation that carries it since it was last re-queued: a
   *  delivery under another id was superseded and is dropped. Unset: the resolver's (the op id). */
  delivery?: string;
}

export type SyncState = 'in-sync' | 'pending' | 'out-of-sync' | 'not-joined';

/** Per (account, connector): did the latest password arrive, and if not, why. */
export interface SyncStatus {
  domain: string;
  samAccountName: string;
  connector: string;
  state: SyncState;
  objectId?: string;
  opId?: string;
  changeTime: number;
  eventId?: number;
  reason?: string;
  updatedAt: number;
}

export const encode = (v: unknown): Buffer => Buffer.from(JSON.stringify(v), 'utf8');
export const decode = <T>(b: Buffer): T => JSON.parse(b.toString('utf8')) as T;

/** KV keys are dot-separated tokens; names and ids from outside are base64url-encoded. */
export const keyPart = (s: string): string => Buffer.from(s, 'utf8').toString('base64url') || '-';

export function accountKey(a: { domain: string; samAccountName: string }): string {
  return keyPart(`${a.domain.toLowerCase()}\\${a.samAccountName.toLowerCase()}`);
}

/** The stable source anchor of an account: its objectGUID when known, else domain\name. */
export function sourceAnchor(a: AccountRef): string {
  return a.objectGuid ? `guid:${a.objectGuid.toLowerCase()}` : `name:${a.domain.toLowerCase()}\\${a.samAccountName.toLowerCase()}`;
}

const isText = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

function shapeProblem(r: unknown, fields: readonly string[]): string | undefined {
  if (typeof r !== 'object' || r === null) return 'the record is not an object';
  const o = r as Record<string, unknown>;
  for (const f of fields) if (!isText(o[f])) return `${f} is missing or empty`;
  const a = o.account as Record<string, unknown> | undefined;
  if (typeof a !== 'object' || a === null || !isText(a.domain) || !isText(a.samAccountName)) return 'account (domain, samAccountName) is missing';
  return undefined;
}

/**
 * Why a stored change cannot be resolved, or undefined when it can: a record written by an older
 * hub (or by hand) with a part missing, or with a change time beyond the clock plus the tolerance,
 * which would outrank every real change of that person. Such a record is set aside (6975).
 */
export function changeProblem(c: ChangeRecord, now: number, clockToleranceMs: number): string | undefined {
  return shapeProblem(c, ['changeId', 'envelope']) ?? changeTimeProblem(c.changeTime, now, clockToleranceMs)?.reason;
}

/** As changeProblem, for a queued set-operation. */
export function operationProblem(op: OperationRecord, now: number, clockToleranceMs: number): string | undefined {
  return shapeProblem(op, ['opId', 'changeId', 'connector', 'objectId', 'envelope']) ?? changeTimeProblem(op.changeTime, now, clockToleranceMs)?.reason;
}

/**
 * Whether a stored sync state speaks of a newer change than one of `changeTime`, so it stays. One
 * stamped beyond the clock (stored before change times were checked) never does: it would hide
 * every later state of that account.
 */
export function newerSync(prior: SyncStatus | undefined, changeTime: number, now: number, clockToleranceMs: number): boolean {
  return prior !== undefined && prior.changeTime > changeTime && prior.changeTime <= now + clockToleranceMs;
}
