import type { Broker, KvStore } from '../core/broker.ts';
import type { QueuedChange } from './queued-change.ts';

/**
 * Which accounts have a change waiting at this notifier, per target, so that the Report can tell
 * the hub "pending at <DC>". Account identifiers and times only: never an envelope. Keyed by
 * change time, so that the oldest come first.
 */

/** Where a change waits: the delivery queue, the scope hold, the key hold (sealed for the
 *  notifier's own hold key), or parked after the hub refused it as sealed for another key. */
export type PendingWhere = 'queued' | 'scope' | 'key' | 'parked';

export interface PendingEntry {
  samAccountName: string;
  objectGuid: string;
  objectSid: string;
  userPrincipalName: string;
  distinguishedName: string;
  changeTimeMs: number;
  sinceMs: number;
  where: PendingWhere;
  /** Parked: the key id the change is sealed for. */
  keyId?: string;
}

const BUCKET = 'pending';

export class PendingIndex {
  private constructor(private readonly kv: KvStore, private readonly now: () => number) {}

  static async open(broker: Broker, now: () => number = Date.now): Promise<PendingIndex> {
    return new PendingIndex(await broker.kv(BUCKET), now);
  }

  private static key(token: string, change: QueuedChange): string {
    return `${token}.${String(change.changeTimeMs).padStart(15, '0')}.${change.changeId.toString('hex')}`;
  }

  async put(token: string, change: QueuedChange, where: PendingWhere, keyId?: string): Promise<void> {
    const a = change.account;
    const entry: PendingEntry = {
      samAccountName: a?.samAccountName ?? '', objectGuid: a?.objectGuid ?? '', objectSid: a?.objectSid ?? '',
      userPrincipalName: a?.userPrincipalName ?? '', distinguishedName: a?.distinguishedName ?? '',
      changeTimeMs: change.changeTimeMs, sinceMs: this.now(), where, ...(keyId ? { keyId } : {}),
    };
    await this.kv.put(PendingIndex.key(token, change), Buffer.from(JSON.stringify(entry), 'utf8'));
  }

  async drop(token: string, change: QueuedChange): Promise<void> {
    await this.kv.delete(PendingIndex.key(token, change));
  }

  /** Forgets every entry of a target: called when its queues are empty, so an entry a crash left behind does not stay. */
  async clear(token: string): Promise<void> {
    for (const k of await this.kv.keys(`${token}.`)) await this.kv.delete(k);
  }

  /** The oldest `max` entries of a target, and how many more there are. */
  async list(token: string, max: number): Promise<{ entries: PendingEntry[]; omitted: number }> {
    const keys = await this.kv.keys(`${token}.`);
    const entries: PendingEntry[] = [];
    for (const k of keys.slice(0, max)) {
      const e = await this.kv.get(k);
      if (e) entries.push(JSON.parse(e.value.toString('utf8')) as PendingEntry);
    }
    return { entries, omitted: Math.max(0, keys.length - max) };
  }
}
