import { KvConflictError, type Broker, type KvStore } from '../core/broker.ts';
import {
  accountKey, decode, encode, keyPart, type OperationStatus, type SyncStatus,
} from './records.ts';

interface ObjectClaim {
  hub: string;
  /** ms since the epoch; past it, the claim is free to take. */
  until: number;
}

/**
 * The hub's readable state, kept in the broker's key-value store so that it lives wherever the
 * queues live (embedded file or JetStream): set-operation status, per (account, connector) sync
 * state, and the change time last applied to each target object (latest wins).
 */
export class HubState {
  private constructor(
    private readonly ops: KvStore,
    private readonly sync: KvStore,
    private readonly latest: KvStore,
    private readonly claims: KvStore,
  ) {}

  static async open(broker: Broker): Promise<HubState> {
    return new HubState(await broker.kv('operations'), await broker.kv('sync'), await broker.kv('latest'), await broker.kv('claims'));
  }

  async getOperation(opId: string): Promise<OperationStatus | undefined> {
    const e = await this.ops.get(opId);
    return e && decode<OperationStatus>(e.value);
  }

  async putOperation(s: OperationStatus): Promise<void> {
    await this.ops.put(s.opId, encode(s));
  }

  /** Records a new operation; false when it already exists (a re-resolved change). */
  async createOperation(s: OperationStatus): Promise<boolean> {
    try {
      await this.ops.create(s.opId, encode(s));
      return true;
    } catch (e) {
      if (e instanceof KvConflictError) return false;
      throw e;
    }
  }

  async deleteOperation(opId: string): Promise<void> {
    await this.ops.delete(opId);
  }

  async listOperations(): Promise<OperationStatus[]> {
    const out: OperationStatus[] = [];
    for (const k of await this.ops.keys()) {
      const s = await this.getOperation(k);
      if (s) out.push(s);
    }
    return out;
  }

  async putSync(s: SyncStatus): Promise<void> {
    await this.sync.put(`${accountKey(s)}.${keyPart(s.connector)}`, encode(s));
  }

  async getSync(account: { domain: string; samAccountName: string }, connector: string): Promise<SyncStatus | undefined> {
    const e = await this.sync.get(`${accountKey(account)}.${keyPart(connector)}`);
    return e && decode<SyncStatus>(e.value);
  }

  async listSync(account?: { domain: string; samAccountName: string }): Promise<SyncStatus[]> {
    const out: SyncStatus[] = [];
    for (const k of await this.sync.keys(account ? `${accountKey(account)}.` : undefined)) {
      const e = await this.sync.get(k);
      if (e) out.push(decode<SyncStatus>(e.value));
    }
    return out;
  }

  /** The change time last applied to a target object, if any. */
  async latestApplied(connector: string, objectId: string): Promise<{ changeTime: number; changeId: string } | undefined> {
    const e = await this.latest.get(`${keyPart(connector)}.${keyPart(objectId)}`);
    return e && decode(e.value);
  }

  /**
   * Claims a target object for one hub while it applies a set-operation to it, so that hubs
   * sharing a broker never set one object at once (one hub's lanes already keep that order within
   * the hub). A claim past its `leaseMs` belongs to a hub that died mid-set and is taken over with
   * compare-and-set. Returns a release function, or the holder's id when another hub holds it.
   */
  async claimObject(connector: string, objectId: string, hubId: string, leaseMs: number): Promise<{ release(): Promise<void>; renew(): Promise<void> } | { heldBy: string }> {
    const key = `${keyPart(connector)}.${keyPart(objectId)}`;
    const value = (): Buffer => encode({ hub: hubId, until: Date.now() + leaseMs } satisfies ObjectClaim);
    let revision: number;
    try {
      revision = await this.claims.create(key, value());
    } catch (e) {
      if (!(e instanceof KvConflictError)) throw e;
      const held = await this.claims.get(key);
      if (held) {
        const c = decode<ObjectClaim>(held.value);
        if (c.until > Date.now() && c.hub !== hubId) return { heldBy: c.hub };
      }
      try {
        revision = held ? await this.claims.update(key, value(), held.revision) : await this.claims.create(key, value());
      } catch (e2) {
        if (e2 instanceof KvConflictError) return { heldBy: 'another hub (it claimed the object just now)' };
        throw e2;
      }
    }
    let released = false;
    return {
      release: async () => {
        released = true;
        // Only our own claim goes: one taken over after our lease ran out stays with its new holder.
        const now = await this.claims.get(key);
        if (now && now.revision === revision) await this.claims.delete(key);
      },
      // Extends the lease while the set goes on; a claim another hub took over is left to it.
      renew: async () => {
        if (!released) revision = await this.claims.update(key, value(), revision);
      },
    };
  }

  /**
   * Forgets the change time last applied to a target object (an admin's repair of a wrong one,
   * e.g. stamped in the future): the next change for it is applied whatever its time. Returns
   * what was cleared, or undefined when nothing was recorded.
   */
  async clearLatest(connector: string, objectId: string): Promise<{ changeTime: number; changeId: string } | undefined> {
    const old = await this.latestApplied(connector, objectId);
    if (old) await this.latest.delete(`${keyPart(connector)}.${keyPart(objectId)}`);
    return old;
  }

  async recordApplied(connector: string, objectId: string, changeTime: number, changeId: string): Promise<void> {
    await this.latest.put(`${keyPart(connector)}.${keyPart(objectId)}`, encode({ changeTime, changeId }));
  }
}
