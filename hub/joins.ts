import type { Logger } from 'pino';
import type { Connector, ObjectSource } from '../connectors/contract.ts';
import type { KvStore } from '../core/broker.ts';
import type { AccountRef, TargetObject } from '../core/extension.ts';
import type { JoinRuleConfig, SourceAttribute } from '../config/schema.ts';
import { decode, encode, keyPart, sourceAnchor } from './records.ts';

/** The value of a source attribute for an account, as the domain controller reported it. */
export function sourceValue(account: AccountRef, attribute: SourceAttribute): string {
  switch (attribute) {
    case 'sAMAccountName': return account.samAccountName;
    case 'objectGUID': return account.objectGuid;
    case 'objectSID': return account.objectSid;
    case 'userPrincipalName': return account.upn;
    case 'distinguishedName': return account.dn;
  }
}

/** Case rule of joins: with ignoreCase, both sides are compared after Unicode lower-casing. */
const fold = (s: string, ignoreCase: boolean): string => (ignoreCase ? s.normalize('NFC').toLowerCase() : s.normalize('NFC'));

/** An object's attribute by name: exactly, else without case (LDAP names ignore case; a rule may differ). */
function attributeOf(o: TargetObject, name: string): string | undefined {
  const exact = o.attributes[name];
  if (exact !== undefined) return exact;
  const folded = name.toLowerCase();
  for (const [k, v] of Object.entries(o.attributes)) if (k.toLowerCase() === folded) return v;
  return undefined;
}

export type JoinOutcome =
  | { joined: true; object: TargetObject; rule: string; fresh: boolean }
  | { joined: false; reason: string };

interface StoredJoin {
  objectId: string;
  rule: string;
  joinedAt: number;
}

/**
 * One connector's side of the join table. Joins are persisted (KV `joins`), made by the
 * connector's join rules against an index of its objects, and re-checked whenever the connector's
 * objects change (`version()`): a joined object that vanished or moved is rejoined by the rules.
 */
export class ConnectorJoins {
  private index?: { version: string; byId: Map<string, TargetObject>; byRule: Map<string, TargetObject[]>[] };
  private checking?: Promise<boolean>;
  private unreadable = false;

  constructor(
    private readonly connector: Connector & ObjectSource,
    private readonly rules: readonly JoinRuleConfig[],
    private readonly store: KvStore,
    private readonly log: Logger,
  ) {}

  /**
   * Rebuilds the index if the connector's objects changed since it was built. Concurrent callers
   * (the resolver handles many changes at once) share one version check and one rebuild.
   */
  refresh(force = false): Promise<boolean> {
    if (!force && this.checking) return this.checking;
    const run = (async (): Promise<boolean> => {
      const version = await this.connector.version();
      if (!force && this.index?.version === version) return false;
      await this.build(version);
      return true;
    })();
    const shared: Promise<boolean> = run.finally(() => { if (this.checking === shared) this.checking = undefined; });
    this.checking = shared;
    return shared;
  }

  private async build(version: string): Promise<void> {
    const byId = new Map<string, TargetObject>();
    const byRule = this.rules.map(() => new Map<string, TargetObject[]>());
    for await (const o of this.connector.list()) {
      byId.set(o.id, o);
      this.rules.forEach((r, i) => {
        const v = attributeOf(o, r.target);
        if (v === undefined || v === '') return;
        const k = fold(v, r.ignoreCase);
        const m = byRule[i]!;
        const list = m.get(k);
        if (list) list.push(o);
        else m.set(k, [o]);
      });
    }
    this.index = { version, byId, byRule };
    this.log.debug({ connector: this.connector.name, objects: byId.size }, 'join index rebuilt');
  }

  private storeKey(account: AccountRef): string {
    return `${keyPart(this.connector.name)}.${keyPart(sourceAnchor(account))}`;
  }

  /** Finds the account's object, rejoining when the connector's objects changed (an object that
   *  moved or vanished, a new one that now matches a rule). */
  async resolve(account: AccountRef): Promise<JoinOutcome> {
    try {
      await this.refresh(!this.index);
      if (this.unreadable) this.log.info({ connector: this.connector.name }, 'the connector\'s objects can be read again');
      this.unreadable = false;
    } catch (e) {
      // The objects cannot be read (the connected system is down). A join already made stands:
      // the set-operation is queued and the connector's own retry policy applies, so `pwsync
      // status` says why it waits. With no join and nothing read, the resolver retries the change.
      if (!this.index) {
        const stored = await this.store.get(this.storeKey(account));
        if (!stored) throw e;
        const j = decode<StoredJoin>(stored.value);
        return { joined: true, object: { id: j.objectId, attributes: {} }, rule: j.rule, fresh: false };
      }
      if (!this.unreadable) this.log.warn({ connector: this.connector.name, err: e instanceof Error ? e.message : String(e) }, 'cannot read the connector\'s objects; joining with the last ones read');
      this.unreadable = true;
    }
    return this.lookup(account);
  }

  private async lookup(account: AccountRef): Promise<JoinOutcome> {
    const index = this.index!;
    const key = this.storeKey(account);
    const stored = await this.store.get(key);
    if (stored) {
      const j = decode<StoredJoin>(stored.value);
      const object = index.byId.get(j.objectId);
      if (object) return { joined: true, object, rule: j.rule, fresh: false };
      this.log.info({ connector: this.connector.name, objectId: j.objectId }, 'joined object is gone or moved: rejoining by rules');
    }
    const reasons: string[] = [];
    for (const [i, r] of this.rules.entries()) {
      const v = sourceValue(account, r.source);
      const rule = `${r.target} = ${r.source}${r.ignoreCase ? ' (ignoring case)' : ''}`;
      if (!v) {
        reasons.push(`${rule}: the DC did not report ${r.source}`);
        continue;
      }
      const found = index.byRule[i]!.get(fold(v, r.ignoreCase)) ?? [];
      if (found.length === 1) {
        const object = found[0]!;
        await this.store.put(key, encode({ objectId: object.id, rule, joinedAt: Date.now() } satisfies StoredJoin));
        return { joined: true, object, rule, fresh: true };
      }
      reasons.push(found.length === 0 ? `${rule}: no object has ${r.target} ${JSON.stringify(v)}` : `${rule}: ${found.length} objects match, so none is joined`);
    }
    if (stored) await this.store.delete(key);
    return { joined: false, reason: reasons.join('; ') };
  }
}
