import { KvConflictError, type Broker, type KvStore } from '../core/broker.ts';
import {
  accountKey, decode, encode, keyPart, type OperationStatus, type SyncStatus,
} from './records.ts';

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
  ) {}

  static async open(broker: Broker): Promise<HubState> {
    return new HubState(await broker.kv('operations'), await broker.kv('sync'), await broker.kv('latest'));
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

  async recordApplied(connector: string, objectId: string, changeTime: number, changeId: string): Promise<void> {
    await this.latest.put(`${keyPart(connector)}.${keyPart(objectId)}`, encode({ changeTime, changeId }));
  }
}
