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
  private building?: Promise<void>;

  constructor(
    private readonly connector: Connector & ObjectSource,
    private readonly rules: readonly JoinRuleConfig[],
    private readonly store: KvStore,
    private readonly log: Logger,
  ) {}

  /** Reads the connector's objects if they changed since the index was built. */
  async refresh(force = false): Promise<boolean> {
    if (this.building) {
      await this.building;
      if (!force) return false;
    }
    const version = await this.connector.version();
    if (!force && this.index?.version === version) return false;
    this.building = this.build(version).finally(() => { this.building = undefined; });
    await this.building;
    return true;
  }

  private async build(version: string): Promise<void> {
    const byId = new Map<string, TargetObject>();
    const byRule = this.rules.map(() => new Map<string, TargetObject[]>());
    for await (const o of this.connector.list()) {
      byId.set(o.id, o);
      this.rules.forEach((r, i) => {
        const v = o.attributes[r.target];
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

  async resolve(account: AccountRef): Promise<JoinOutcome> {
    if (!this.index) await this.refresh(true);
    const first = await this.lookup(account);
    if (first.joined) return first;
    // A miss may be an object added since the index was built: look again if the objects changed.
    return (await this.refresh()) ? this.lookup(account) : first;
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
