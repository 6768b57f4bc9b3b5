import type { Logger } from 'pino';
import type { Broker } from '../core/broker.ts';
import { subjectToken } from '../core/broker.ts';
import { bindingMismatch, parseHeader, type Binding, type Keyring } from '../core/envelope.ts';
import { changeTimeProblem } from '../core/change-time.ts';
import { describeError } from '../core/errors.ts';
import type { EventId } from '../core/events.ts';
import { controlCharacterIn } from '../core/identifiers.ts';
import { EVENTS } from '../core/events.ts';
import type { DomainConfig } from '../config/schema.ts';
import type { CallerIdentity } from '../proto/auth.ts';
import type { ChangeAck } from '../proto/generated/pwsync/v1/ChangeAck.ts';
import type { SealedChange__Output } from '../proto/generated/pwsync/v1/SealedChange.ts';
import { encode, type ChangeRecord } from './records.ts';

const MAX_ENVELOPE = 64 * 1024;

/**
 * Decides whether a caller may speak for a domain: the DC check over LDAP (hub/dc-check.ts) plugs
 * in here. Resolves when it may; throws HubRefusal('forbidden') when it may not (the whole call is
 * refused and the notifier keeps the changes queued), HubRefusal('unavailable') when it cannot
 * tell now (directory down).
 */
export interface DomainAuthorizer {
  authorize(caller: CallerIdentity, domain: DomainConfig): Promise<void>;
}

export const allowConfiguredDomains: DomainAuthorizer = { authorize: async () => {} };

export const changeSubject = (domain: string): string => `changes.${subjectToken(domain.toLowerCase())}`;

/**
 * The hub's front door: checks each sealed change, stores it durably (still sealed) and only then
 * acknowledges it. Duplicates (same change id) are acknowledged as such and stored once. The
 * envelope is not opened here: only the worker that applies a password opens it.
 */
export class Ingest {
  private readonly domains: Map<string, DomainConfig>;

  constructor(
    private readonly broker: Broker,
    private readonly keyring: Keyring,
    domains: readonly DomainConfig[],
    private readonly authorizer: DomainAuthorizer,
    private readonly log: Logger,
    /** hub.clockTolerance: how far ahead of this hub's clock a change time may lie. */
    private readonly clockToleranceMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.domains = new Map(domains.map((d) => [d.name.toLowerCase(), d]));
  }

  /**
   * One ack per change, in order. The caller is authorized for every served domain in the batch
   * first: a refusal refuses the whole call (nothing acknowledged, the notifier keeps it all).
   * Throws only then, or when nothing could be stored (the caller retries). When `signal` aborts
   * (the caller has gone) before the changes are handed to the broker, none is stored and it throws.
   */
  async submit(changes: readonly SealedChange__Output[], caller: CallerIdentity, signal?: AbortSignal): Promise<ChangeAck[]> {
    const served = new Set<DomainConfig>();
    for (const c of changes) {
      const d = typeof c.domain === 'string' ? this.domains.get(c.domain.toLowerCase()) : undefined;
      if (d) served.add(d);
    }
    for (const d of served) {
      signal?.throwIfAborted();
      await this.authorizer.authorize(caller, d);
    }
    signal?.throwIfAborted();
    return Promise.all(changes.map((c) => this.one(c, caller.principal)));
  }

  private async one(c: SealedChange__Output, caller: string): Promise<ChangeAck> {
    const changeId = c.changeId ?? Buffer.alloc(0);
    const reject = (reason: string, eventId: EventId = 6946): ChangeAck => {
      // A refused identifier is logged by its field only: its value may hold what forges a log line.
      const account = eventId === 6979 ? undefined : c.account?.samAccountName;
      this.log.warn({ eventId, changeId: changeId.toString('hex'), domain: eventId === 6979 ? undefined : c.domain, account, caller, reason }, 'change rejected');
      return { changeId, status: 'REJECTED', reason };
    };
    const problem = this.check(c);
    if (problem) return reject(problem);
    const control = controlCharacterIn(identifiersOf(c));
    if (control) return reject(`${control} (event 6979)`, 6979);
    const future = changeTimeProblem(c.changeTimeMs, this.now(), this.clockToleranceMs);
    if (future) {
      // Stored, it would outrank every later real change of this person (latest wins): never stored.
      this.log.warn({
        eventId: 6974, changeId: changeId.toString('hex'), domain: c.domain, account: c.account?.samAccountName,
        sourceDc: c.sourceDc, caller, skewMs: future.skewMs, clockToleranceMs: this.clockToleranceMs,
      }, EVENTS[6974].text);
      return { changeId, status: 'REJECTED', reason: `${future.reason} (event 6974, from ${c.sourceDc || 'an unnamed DC'} as ${caller})` };
    }
    const served = this.domains.get(c.domain.toLowerCase());
    if (!served) return reject(`domain ${JSON.stringify(c.domain)} is not served by this hub (event 6949): add it under domains: in the hub YAML`);
    const domain = served.name;
    const a = c.account!;
    const claimed: Binding = {
      changeId, changeTime: c.changeTimeMs, domain: c.domain, samAccountName: a.samAccountName,
      objectGuid: a.objectGuid, objectSid: a.objectSid, upn: a.userPrincipalName, dn: a.distinguishedName,
      sourceHost: c.sourceDc,
    };
    try {
      const { header } = parseHeader(c.sealedPassword);
      if (!this.keyring.get(header.keyId)) {
        return reject(`sealed for key id ${header.keyId.toString('hex')}, but this hub opens only ${this.keyring.ids().join(', ')}: give the notifier the hub's current public key`);
      }
      const field = bindingMismatch(header, claimed);
      if (field) return reject(`the sealed password's header names another ${field} than the change: it was sealed for another account or change`);
    } catch (e) {
      return reject(describeError(e));
    }
    const record: ChangeRecord = {
      changeId: changeId.toString('hex'), domain, sourceDc: c.sourceDc,
      account: { domain, samAccountName: a.samAccountName, objectGuid: a.objectGuid, objectSid: a.objectSid, upn: a.userPrincipalName, dn: a.distinguishedName },
      changeTime: c.changeTimeMs, envelope: c.sealedPassword.toString('base64'), receivedAt: Date.now(), caller,
    };
    const ack = await this.broker.publish(changeSubject(domain), encode(record), { msgId: record.changeId });
    this.log.debug({ changeId: record.changeId, account: a.samAccountName, duplicate: ack.duplicate }, 'change stored');
    return { changeId, status: ack.duplicate ? 'DUPLICATE' : 'ACCEPTED_DURABLE', reason: '' };
  }

  private check(c: SealedChange__Output): string | undefined {
    if (!c.changeId || c.changeId.length !== 16) return 'change_id must be 16 bytes';
    if (!c.domain) return 'domain is empty';
    if (!c.account || !c.account.samAccountName) return 'account.sam_account_name is empty';
    if (!Number.isSafeInteger(c.changeTimeMs) || c.changeTimeMs <= 0) return 'change_time_ms must be a positive time in ms since the epoch';
    if (!c.sealedPassword || c.sealedPassword.length === 0) return 'sealed_password is empty';
    if (c.sealedPassword.length > MAX_ENVELOPE) return `sealed_password is larger than ${MAX_ENVELOPE} bytes`;
    return undefined;
  }
}

/** A change's identifiers by their proto names, for the control-character check. */
function identifiersOf(c: SealedChange__Output): Record<string, string | undefined> {
  const a = c.account;
  return {
    domain: c.domain, source_dc: c.sourceDc, 'account.sam_account_name': a?.samAccountName, 'account.object_guid': a?.objectGuid,
    'account.object_sid': a?.objectSid, 'account.user_principal_name': a?.userPrincipalName, 'account.distinguished_name': a?.distinguishedName,
  };
}
