import type { SealedChange__Output } from '../proto/generated/pwsync/v1/SealedChange.ts';

/**
 * What a target's queue holds for one change: exactly the SealedChange sent to the hub, and
 * nothing else. The password is inside `sealedPassword` (the envelope), never beside it.
 */
export type QueuedChange = SealedChange__Output;

const VERSION = 1;

export function deliverSubject(targetToken: string): string {
  return `deliver.${targetToken}`;
}

export function deliverConsumer(targetToken: string): string {
  return `deliver-${targetToken}`;
}

/**
 * The dedupe key of a change in one target's queue. The broker dedupes across all subjects (as a
 * JetStream stream does), so the change id alone would keep a change out of every queue but the
 * first.
 */
export function deliverMsgId(changeIdHex: string, targetToken: string): string {
  return `${changeIdHex}.${targetToken}`;
}

export function encodeQueuedChange(c: QueuedChange): Buffer {
  return Buffer.from(JSON.stringify({
    v: VERSION,
    changeId: c.changeId.toString('hex'),
    domain: c.domain,
    sourceDc: c.sourceDc,
    account: c.account,
    changeTimeMs: c.changeTimeMs,
    sealedPassword: c.sealedPassword.toString('base64'),
  }), 'utf8');
}

/** Throws when the record is not one this build wrote. */
export function decodeQueuedChange(data: Buffer): QueuedChange {
  const r = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
  const a = r.account as Record<string, unknown> | null | undefined;
  if (r.v !== VERSION || typeof r.changeId !== 'string' || typeof r.sealedPassword !== 'string' || !a
    || typeof r.domain !== 'string' || typeof r.sourceDc !== 'string' || typeof r.changeTimeMs !== 'number') {
    throw new Error(`queued change record is not version ${VERSION} or lacks a field`);
  }
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');
  return {
    changeId: Buffer.from(r.changeId, 'hex'),
    domain: r.domain,
    sourceDc: r.sourceDc,
    account: {
      samAccountName: str(a.samAccountName), objectGuid: str(a.objectGuid), objectSid: str(a.objectSid),
      userPrincipalName: str(a.userPrincipalName), distinguishedName: str(a.distinguishedName),
    },
    changeTimeMs: r.changeTimeMs,
    sealedPassword: Buffer.from(r.sealedPassword, 'base64'),
  };
}
