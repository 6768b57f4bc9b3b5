import type { ScopeNotice__Output } from '../proto/generated/pwsync/v1/ScopeNotice.ts';

/**
 * A change that was not sent to a target, and why: queued durably per target
 * (`notices.<targetToken>`) and reported to that target's hub without any password, so the hub's
 * status can answer "why did my password not arrive".
 */
export type QueuedNotice = ScopeNotice__Output;

export function noticeSubject(targetToken: string): string {
  return `notices.${targetToken}`;
}

export function noticeConsumer(targetToken: string): string {
  return `notices-${targetToken}`;
}

export function encodeNotice(n: QueuedNotice): Buffer {
  return Buffer.from(JSON.stringify({
    v: 1, noticeId: n.noticeId.toString('hex'), account: n.account, changeTimeMs: n.changeTimeMs, target: n.target, reason: n.reason,
  }), 'utf8');
}

export function decodeNotice(data: Buffer): QueuedNotice {
  const r = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
  const a = r.account as Record<string, unknown> | null | undefined;
  if (r.v !== 1 || typeof r.noticeId !== 'string' || !a || typeof r.target !== 'string' || typeof r.reason !== 'string' || typeof r.changeTimeMs !== 'number') {
    throw new Error('queued notice record is not version 1 or lacks a field');
  }
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');
  return {
    noticeId: Buffer.from(r.noticeId, 'hex'),
    account: {
      samAccountName: str(a.samAccountName), objectGuid: str(a.objectGuid), objectSid: str(a.objectSid),
      userPrincipalName: str(a.userPrincipalName), distinguishedName: str(a.distinguishedName),
    },
    changeTimeMs: r.changeTimeMs, target: r.target, reason: r.reason,
  };
}
