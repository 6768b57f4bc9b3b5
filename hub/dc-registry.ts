import { brokerBusy, KvConflictError, type Broker, type KvStore, type KvWrite } from '../core/broker.ts';
import { changeTimeProblem, formatTime } from '../core/change-time.ts';
import type { DomainConfig } from '../config/schema.ts';
import { describeError } from '../core/errors.ts';
import { EVENTS, type EventId } from '../core/events.ts';
import { controlCharacterIn } from '../core/identifiers.ts';
import type { Logger } from '../core/log.ts';
import type { CallerIdentity } from '../proto/auth.ts';
import type { ReportRequest__Output } from '../proto/generated/pwsync/v1/ReportRequest.ts';
import type { ReportResponse } from '../proto/generated/pwsync/v1/ReportResponse.ts';
import type { SealedChange__Output } from '../proto/generated/pwsync/v1/SealedChange.ts';
import { HubRefusal } from '../proto/refusal.ts';
import type { DomainAuthorizer } from './ingest.ts';
import { accountKey, decode, encode, keyPart } from './records.ts';

/**
 * Which domain controllers report to this hub, per domain, and what they said: when each last
 * reported or submitted, its capture state and queue, and the changes it did not send (out of
 * scope) with the reason, so that `pwsync status` can answer "why did my password not arrive".
 * Kept in the broker's key-value store, beside the rest of the hub's state.
 */

export interface DcCapture {
  source: string;
  state: string;
  detail: string;
  lastCaptureMs: number;
}

export interface DcRecord {
  /** The domain as configured (domains[].name). */
  domain: string;
  /** The DC's host name as its notifier reports it. */
  sourceDc: string;
  principal: string;
  mechanism: CallerIdentity['mechanism'];
  peer: string;
  notifierId: string;
  firstSeen: number;
  /** The last report or submit. */
  lastSeen: number;
  lastReport?: number;
  capture: DcCapture[];
  /** Changes queued for this hub at the DC, as of its last report. */
  queued?: number;
  /** Which accounts those are for (the oldest, bounded), as of its last report; `pendingOmitted` more. */
  pending?: PendingRecord[];
  pendingOmitted?: number;
  /** The key id the DC's notifier seals for, and the hub's keys when it answered (current first). */
  sealingKeyId?: string;
  hubKeyIds?: string[];
  /** The DC's clock minus the hub's, as of its last report (ms). */
  clockSkewMs?: number;
  /** Event 6955 was raised and the DC has not reported since. */
  silent: boolean;
}

/** A change queued at a DC for this hub: who, when, and why it waits there if it is held. */
export interface PendingRecord {
  samAccountName: string;
  objectGuid: string;
  userPrincipalName: string;
  changeTime: number;
  queuedSince: number;
  /** Empty while it is only waiting for delivery. */
  held: string;
}

/** A change a DC did not send to this hub, and why; the latest per (account, target). */
export interface NoticeRecord {
  noticeId: string;
  domain: string;
  samAccountName: string;
  objectGuid: string;
  userPrincipalName: string;
  distinguishedName: string;
  target: string;
  reason: string;
  changeTime: number;
  sourceDc: string;
  principal: string;
  receivedAt: number;
}

/** A submit's liveness is written at most this often per DC (a report always is). */
const SUBMIT_WRITE_EVERY_MS = 30_000;
const CAS_TRIES = 8;
const SKEW_WARN_MS = 5 * 60_000;
const MAX_TEXT = 1024;
/** Pending changes kept per DC (the notifier sends at most as many per report). */
const MAX_PENDING = 1_000;

const dcKey = (domain: string, sourceDc: string): string => `${keyPart(domain.toLowerCase())}.${keyPart(sourceDc.toLowerCase())}`;
const clip = (s: string): string => (s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}…` : s);

const LEVEL = { info: 'info', warning: 'warn', error: 'error' } as const;

function logEvent(log: Logger, eventId: EventId, fields: Record<string, unknown>): void {
  log[LEVEL[EVENTS[eventId].severity]]({ eventId, ...fields }, EVENTS[eventId].text);
}

/** Reads and writes a key with compare-and-set, retrying when another writer came first. */
async function modify<T>(kv: KvStore, key: string, fn: (old: T | undefined) => T | undefined): Promise<{ old: T | undefined; next: T | undefined }> {
  for (let i = 0; ; i++) {
    const e = await kv.get(key);
    const old = e ? decode<T>(e.value) : undefined;
    const next = fn(old);
    if (next === undefined) return { old, next };
    try {
      if (e) await kv.update(key, encode(next), e.revision);
      else await kv.create(key, encode(next));
      return { old, next };
    } catch (err) {
      if (!(err instanceof KvConflictError) || i >= CAS_TRIES) throw err;
    }
  }
}

export class DcRegistry {
  private readonly lastWrite = new Map<string, number>();
  private readonly now: () => number;

  private constructor(private readonly dcs: KvStore, private readonly notices: KvStore, private readonly log: Logger, now?: () => number) {
    this.now = now ?? Date.now;
  }

  static async open(broker: Broker, log: Logger, now?: () => number): Promise<DcRegistry> {
    return new DcRegistry(await broker.kv('dcs'), await broker.kv('notices'), log, now);
  }

  /** Records a report: liveness, capture state and queue. Raises 6956 the first time and after silence. */
  async recordReport(domain: DomainConfig, req: ReportRequest__Output, caller: CallerIdentity, hubKeyIds: readonly string[] = []): Promise<DcRecord> {
    const now = this.now();
    // Shown to admins as it came: an entry whose names hold a control character is left out (6979's rule).
    const pending = (req.pending ?? []).filter((p) => p.account?.samAccountName && !controlCharacterIn({
      sam: p.account.samAccountName, guid: p.account.objectGuid, upn: p.account.userPrincipalName, held: p.held,
    })).slice(0, MAX_PENDING).map((p): PendingRecord => ({
      samAccountName: clip(p.account!.samAccountName), objectGuid: clip(p.account!.objectGuid), userPrincipalName: clip(p.account!.userPrincipalName),
      changeTime: p.changeTimeMs, queuedSince: p.queuedSinceMs, held: clip(p.held),
    }));
    const omitted = (req.pendingOmitted ?? 0) + Math.max(0, (req.pending?.length ?? 0) - MAX_PENDING);
    const skew = req.sentTimeMs > 0 ? req.sentTimeMs - now : undefined;
    const rec = await this.touch(domain.name, req.sourceDc, caller, req.notifierId, now, (r) => ({
      ...r,
      lastReport: now,
      capture: req.capture.slice(0, 16).map((c) => ({ source: clip(c.source), state: clip(c.state), detail: clip(c.detail), lastCaptureMs: c.lastCaptureMs })),
      queued: req.queued,
      pending, pendingOmitted: omitted,
      ...(req.sealingKeyId ? { sealingKeyId: clip(req.sealingKeyId), hubKeyIds: [...hubKeyIds] } : {}),
      ...(skew !== undefined ? { clockSkewMs: skew } : {}),
    }));
    if (skew !== undefined && Math.abs(skew) > SKEW_WARN_MS) {
      this.log.warn({ domain: domain.name, sourceDc: req.sourceDc, clockSkewMs: skew }, `the clock of ${req.sourceDc} differs from the hub's by ${Math.round(skew / 1000)} s: Kerberos refuses beyond 5 minutes; sync both clocks (NTP)`);
    }
    this.lastWrite.set(dcKey(domain.name, req.sourceDc), now);
    return rec;
  }

  /** Records that a DC submitted changes (accepted by the hub): liveness only, written at most every 30 s per DC. */
  async recordSubmit(domains: readonly DomainConfig[], notifierId: string, changes: readonly SealedChange__Output[], caller: CallerIdentity): Promise<void> {
    const now = this.now();
    const seen = new Map<string, { domain: string; sourceDc: string }>();
    for (const c of changes) {
      const d = domains.find((x) => x.name.toLowerCase() === c.domain?.toLowerCase());
      if (d && c.sourceDc && !controlCharacterIn({ source_dc: c.sourceDc })) seen.set(dcKey(d.name, c.sourceDc), { domain: d.name, sourceDc: c.sourceDc });
    }
    for (const [key, { domain, sourceDc }] of seen) {
      if (now - (this.lastWrite.get(key) ?? 0) < SUBMIT_WRITE_EVERY_MS) continue;
      this.lastWrite.set(key, now);
      await this.touch(domain, sourceDc, caller, notifierId, now, (r) => r);
    }
  }

  /**
   * Stores notices in one write of the notices bucket (one transaction on the embedded broker),
   * each unless one at least as new is stored for its account and target. Once it resolves, every
   * one is stored (now or before, or a newer one for its account and target): the notifier may
   * forget them all.
   */
  async storeNotices(notices: readonly NoticeRecord[]): Promise<void> {
    const latest = new Map<string, NoticeRecord>();
    for (const n of notices) {
      const key = `${accountKey(n)}.${keyPart(n.target)}`;
      const seen = latest.get(key);
      if (!seen || n.changeTime >= seen.changeTime) latest.set(key, n);
    }
    for (let i = 0; ; i++) {
      const writes = await Promise.all([...latest].map(async ([key, n]): Promise<KvWrite | undefined> => {
        const e = await this.notices.get(key);
        const old = e ? decode<NoticeRecord>(e.value) : undefined;
        if (old && (old.noticeId === n.noticeId || old.changeTime > n.changeTime)) return undefined;
        return { key, value: encode(n), revision: e?.revision ?? 0 };
      }));
      const todo = writes.filter((w) => w !== undefined);
      if (todo.length === 0) return;
      try {
        await this.notices.putMany(todo);
        return;
      } catch (err) {
        if (!(err instanceof KvConflictError) || i >= CAS_TRIES) throw err;
      }
    }
  }

  async listDcs(domain?: string): Promise<DcRecord[]> {
    const out: DcRecord[] = [];
    for (const k of await this.dcs.keys(domain ? `${keyPart(domain.toLowerCase())}.` : undefined)) {
      const e = await this.dcs.get(k);
      if (e) out.push(decode<DcRecord>(e.value));
    }
    return out.sort((a, b) => a.domain.localeCompare(b.domain) || a.sourceDc.localeCompare(b.sourceDc));
  }

  async listNotices(account?: { domain?: string; samAccountName: string }): Promise<NoticeRecord[]> {
    const prefix = account?.domain ? `${accountKey({ domain: account.domain, samAccountName: account.samAccountName })}.` : undefined;
    const out: NoticeRecord[] = [];
    for (const k of await this.notices.keys(prefix)) {
      const e = await this.notices.get(k);
      if (!e) continue;
      const n = decode<NoticeRecord>(e.value);
      if (account && n.samAccountName.toLowerCase() !== account.samAccountName.toLowerCase()) continue;
      out.push(n);
    }
    return out.sort((a, b) => a.samAccountName.localeCompare(b.samAccountName) || a.target.localeCompare(b.target));
  }

  /**
   * Raises 6955 once for each DC that reported and has been silent longer than its domain's
   * dcSilentAfter. `since` (the hub's start) counts as heard: a hub that was down does not blame
   * the DCs for its own absence.
   */
  async checkSilence(domains: readonly DomainConfig[], since: number): Promise<DcRecord[]> {
    const now = this.now();
    const raised: DcRecord[] = [];
    for (const d of domains) {
      for (const r of await this.listDcs(d.name)) {
        if (r.silent || Math.max(r.lastSeen, since) >= now - d.dcSilentAfter) continue;
        const { next } = await modify<DcRecord>(this.dcs, dcKey(r.domain, r.sourceDc), (old) => {
          if (!old || old.silent || Math.max(old.lastSeen, since) >= now - d.dcSilentAfter) return undefined;
          return { ...old, silent: true };
        });
        if (!next) continue;
        logEvent(this.log, 6955, {
          domain: r.domain, sourceDc: r.sourceDc, principal: r.principal, lastSeen: formatTime(r.lastSeen),
          silentMs: now - r.lastSeen, dcSilentAfterMs: d.dcSilentAfter,
        });
        raised.push(next);
      }
    }
    return raised;
  }

  /** Starts checking for silent DCs every quarter of the shortest dcSilentAfter (1 s to 60 s). */
  watchSilence(domains: readonly DomainConfig[], since = this.now()): { stop(): void } {
    const shortest = Math.min(...domains.map((d) => d.dcSilentAfter));
    const every = Math.min(60_000, Math.max(1_000, Math.floor(shortest / 4)));
    const timer = setInterval(() => {
      this.checkSilence(domains, since).catch((e: unknown) => this.log.warn({ err: describeError(e) }, 'cannot check which DCs stopped reporting'));
    }, every);
    timer.unref();
    return { stop: () => clearInterval(timer) };
  }

  private async touch(domain: string, sourceDc: string, caller: CallerIdentity, notifierId: string, now: number, update: (r: DcRecord) => DcRecord): Promise<DcRecord> {
    const { old, next } = await modify<DcRecord>(this.dcs, dcKey(domain, sourceDc), (prev) => update({
      domain, sourceDc, capture: [], firstSeen: now, ...prev,
      principal: caller.principal, mechanism: caller.mechanism, peer: caller.peer, notifierId, lastSeen: now, silent: false,
    }));
    const fields = { domain, sourceDc, principal: caller.principal, notifierId };
    if (!old) logEvent(this.log, 6956, { ...fields, first: true });
    else if (old.silent) logEvent(this.log, 6956, { ...fields, first: false, silentSince: formatTime(old.lastSeen) });
    return next!;
  }
}

export interface ReportHandlerOptions {
  domains: readonly DomainConfig[];
  /** The hub's key ids (hex), current first: answered so that a notifier sealing for another key holds its changes. */
  keyIds?: readonly string[];
  authorizer: DomainAuthorizer;
  registry: DcRegistry;
  log: Logger;
  /** hub.clockTolerance: a notice stamped further ahead is answered but not stored (6974). */
  clockToleranceMs: number;
  now?: () => number;
}

/**
 * The hub's Report call: authorized like Submit (the caller must be a DC of the domain it
 * reports), then liveness and capture state recorded, and the well-formed notices stored durably
 * in one write before their ids are answered (a notice the hub cannot read is left out, so the
 * notifier keeps it). When `signal` aborts (the caller has gone) the remaining steps are skipped.
 */
export function createReportHandler(opts: ReportHandlerOptions): (req: ReportRequest__Output, caller: CallerIdentity, signal?: AbortSignal) => Promise<ReportResponse> {
  const now = opts.now ?? Date.now;
  const served = new Map(opts.domains.map((d) => [d.name.toLowerCase(), d]));
  return async (req, caller, signal) => {
    const control = controlCharacterIn({ domain: req.domain, source_dc: req.sourceDc });
    if (control) throw new HubRefusal('malformed', `${control} (event 6979)`);
    const domain = served.get(req.domain.toLowerCase());
    if (!domain) {
      throw new HubRefusal('forbidden', `domain ${JSON.stringify(req.domain)} is not served by this hub (event 6949): add it under domains: in the hub YAML, or point the notifier (notifier.domain ${req.domain}) at the hub that serves it`);
    }
    if (!req.sourceDc) throw new HubRefusal('malformed', 'a report needs source_dc (the DC\'s host name)');
    await opts.authorizer.authorize(caller, domain);
    signal?.throwIfAborted();
    await opts.registry.recordReport(domain, req, caller, opts.keyIds);
    const notices: NoticeRecord[] = [];
    const stored: Buffer[] = [];
    for (const n of req.notices) {
      const a = n.account;
      const problem = n.noticeId.length !== 16 ? 'notice_id must be 16 bytes'
        : !a?.samAccountName ? 'the account has no sam_account_name'
          : !n.target ? 'target is empty' : !n.reason ? 'reason is empty'
            : controlCharacterIn({
              'account.sam_account_name': a.samAccountName, 'account.object_guid': a.objectGuid, 'account.object_sid': a.objectSid,
              'account.user_principal_name': a.userPrincipalName, 'account.distinguished_name': a.distinguishedName,
            });
      if (problem) {
        opts.log.warn({ domain: domain.name, sourceDc: req.sourceDc, principal: caller.principal, problem }, 'a notice in a report cannot be read; not stored');
        continue;
      }
      const fields = { domain: domain.name, sourceDc: req.sourceDc, principal: caller.principal, noticeId: n.noticeId.toString('hex'), account: a!.samAccountName, target: n.target };
      const future = changeTimeProblem(n.changeTimeMs, now(), opts.clockToleranceMs);
      if (future) {
        // Stored, it would hide every newer notice for that account and target: answered, so the
        // notifier forgets it, and not stored.
        logEvent(opts.log, 6974, { ...fields, skewMs: future.skewMs, clockToleranceMs: opts.clockToleranceMs, reason: future.reason });
        stored.push(n.noticeId);
        continue;
      }
      notices.push({
        noticeId: n.noticeId.toString('hex'), domain: domain.name, samAccountName: a!.samAccountName, objectGuid: a!.objectGuid,
        userPrincipalName: a!.userPrincipalName, distinguishedName: a!.distinguishedName, target: clip(n.target), reason: clip(n.reason),
        changeTime: n.changeTimeMs, sourceDc: req.sourceDc, principal: caller.principal, receivedAt: now(),
      });
      stored.push(n.noticeId);
    }
    signal?.throwIfAborted();
    if (notices.length > 0) await storeAll(notices, stored, opts.registry, opts.log);
    if (stored.length > 0) opts.log.info({ domain: domain.name, sourceDc: req.sourceDc, notices: stored.length }, 'out-of-scope notices stored');
    return { hubTimeMs: now(), storedNoticeIds: stored, keyIds: [...opts.keyIds ?? []] };
  };
}

/**
 * A report's notices in one write. If that write fails for a reason other than a busy broker (which
 * fails the call: nothing answered, the notifier sends them again), each notice is written on its
 * own, so one that cannot be stored is set aside (6975, answered) and holds back none of the others.
 */
async function storeAll(notices: NoticeRecord[], answered: Buffer[], registry: DcRegistry, log: Logger): Promise<void> {
  try {
    await registry.storeNotices(notices);
    return;
  } catch (e) {
    if (brokerBusy(e)) throw e;
  }
  for (const n of notices) {
    try {
      await registry.storeNotices([n]);
    } catch (e) {
      const fields = { domain: n.domain, sourceDc: n.sourceDc, principal: n.principal, noticeId: n.noticeId, account: n.samAccountName, target: n.target };
      if (brokerBusy(e)) {
        // Not answered: the notifier sends it again with its next report.
        log.warn({ ...fields, err: e }, 'a notice cannot be stored now; the notifier sends it again');
        const i = answered.findIndex((id) => id.toString('hex') === n.noticeId);
        if (i >= 0) answered.splice(i, 1);
        continue;
      }
      logEvent(log, 6975, { ...fields, changeTime: formatTime(n.changeTime), err: e });
    }
  }
}
