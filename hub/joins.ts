import type { Logger } from 'pino';
import { isIncrementalObjectSource, type Connector, type ObjectSource } from '../connectors/contract.ts';
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

/** A complete re-read of an incremental source this often drops objects deleted without a trace. */
export const FULL_READ_EVERY_MS = 60 * 60 * 1000;

interface JoinIndex {
  /** The connector's version (or incremental token) the index reflects. */
  version: string;
  /** When the objects were last read completely. */
  fullAt: number;
  byId: Map<string, TargetObject>;
  byRule: Map<string, TargetObject[]>[];
}

/**
 * One connector's side of the join table. Joins are persisted (KV `joins`), made by the
 * connector's join rules against an index of its objects, and re-checked whenever the connector's
 * objects change: a connector that reads incrementally (LDAP) is asked only what changed since
 * its last answer; any other one is read again whole when its `version()` moves. A joined object
 * that vanished is rejoined by the rules; one that was renamed keeps its id (an LDAP anchor such
 * as entryUUID) and its join.
 */
export class ConnectorJoins {
  private index?: JoinIndex;
  private checking?: Promise<boolean>;
  private unreadable = false;

  constructor(
    private readonly connector: Connector & ObjectSource,
    private readonly rules: readonly JoinRuleConfig[],
    private readonly store: KvStore,
    private readonly log: Logger,
  ) {}

  /**
   * Brings the index up to date. Concurrent callers (the resolver handles many changes at once)
   * share one read. `full` reads every object again even from an incremental source.
   */
  refresh(full = false): Promise<boolean> {
    if (!full && this.checking) return this.checking;
    const run = this.read(full);
    const shared: Promise<boolean> = run.finally(() => { if (this.checking === shared) this.checking = undefined; });
    this.checking = shared;
    return shared;
  }

  private async read(full: boolean): Promise<boolean> {
    const source = this.connector;
    if (isIncrementalObjectSource(source)) {
      const index = this.index;
      const complete = full || !index || Date.now() - index.fullAt >= FULL_READ_EVERY_MS;
      const delta = await source.changedSince(complete ? undefined : index!.version);
      if (delta.complete || !index) {
        this.index = this.build(delta.token, delta.objects);
        return true;
      }
      for (const id of delta.removed) this.remove(index, id);
      for (const o of delta.objects) {
        this.remove(index, o.id);
        this.add(index, o);
      }
      index.version = delta.token;
      if (delta.objects.length + delta.removed.length > 0) {
        this.log.debug({ connector: source.name, changed: delta.objects.length, removed: delta.removed.length }, 'join index updated');
      }
      return delta.objects.length + delta.removed.length > 0;
    }
    const version = await source.version();
    if (!full && this.index?.version === version) return false;
    const objects: TargetObject[] = [];
    for await (const o of source.list()) objects.push(o);
    this.index = this.build(version, objects);
    return true;
  }

  private build(version: string, objects: Iterable<TargetObject>): JoinIndex {
    const index: JoinIndex = { version, fullAt: Date.now(), byId: new Map(), byRule: this.rules.map(() => new Map()) };
    for (const o of objects) this.add(index, o);
    this.log.debug({ connector: this.connector.name, objects: index.byId.size }, 'join index rebuilt');
    return index;
  }

  private add(index: JoinIndex, o: TargetObject): void {
    index.byId.set(o.id, o);
    this.rules.forEach((r, i) => {
      const v = attributeOf(o, r.target);
      if (v === undefined || v === '') return;
      const k = fold(v, r.ignoreCase);
      const m = index.byRule[i]!;
      const list = m.get(k);
      if (list) list.push(o);
      else m.set(k, [o]);
    });
  }

  private remove(index: JoinIndex, id: string): void {
    const old = index.byId.get(id);
    if (!old) return;
    index.byId.delete(id);
    this.rules.forEach((r, i) => {
      const v = attributeOf(old, r.target);
      if (v === undefined || v === '') return;
      const k = fold(v, r.ignoreCase);
      const m = index.byRule[i]!;
      const rest = (m.get(k) ?? []).filter((o) => o.id !== id);
      if (rest.length > 0) m.set(k, rest);
      else m.delete(k);
    });
  }

  /**
   * The connector reported the joined object missing (6923): an incremental read cannot see a
   * deletion, so the object leaves the index now and the account's join is dropped, so that its
   * next change is joined by the rules again (to a new object with the same name, if there is one).
   */
  async objectGone(account: AccountRef, objectId: string): Promise<void> {
    if (this.index) this.remove(this.index, objectId);
    const key = this.storeKey(account);
    const stored = await this.store.get(key);
    if (stored && decode<StoredJoin>(stored.value).objectId === objectId) {
      await this.store.delete(key);
      this.log.info({ connector: this.connector.name, objectId }, 'the joined object does not exist any more: join dropped; the next change is joined by the rules');
    }
  }

  private storeKey(account: AccountRef): string {
    return `${keyPart(this.connector.name)}.${keyPart(sourceAnchor(account))}`;
  }

  /** Finds the account's object, rejoining when the connector's objects changed (an object that
   *  moved or vanished, a new one that now matches a rule). */
  async resolve(account: AccountRef): Promise<JoinOutcome> {
    // A join made stands until its object is gone: an incremental source renames and moves
    // objects under the same id, and a deletion comes back as 6923 (objectGone). So a joined
    // account needs no read of the connected system at all; only a new join does.
    const index = this.index;
    if (index && isIncrementalObjectSource(this.connector) && Date.now() - index.fullAt < FULL_READ_EVERY_MS) {
      const stored = await this.store.get(this.storeKey(account));
      const j = stored ? decode<StoredJoin>(stored.value) : undefined;
      const object = j ? index.byId.get(j.objectId) : undefined;
      if (j && object) return { joined: true, object, rule: j.rule, fresh: false };
    }
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

  private async lookup(account: AccountRef, reread = true): Promise<JoinOutcome> {
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
      if (found.length > 1 && reread && isIncrementalObjectSource(this.connector)) {
        // An incremental read cannot see deletions: one of these may be gone. Read everything once.
        this.log.info({ connector: this.connector.name, rule, matches: found.length }, 'a join rule matches several objects: reading all objects again before deciding');
        await this.refresh(true);
        return this.lookup(account, false);
      }
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
