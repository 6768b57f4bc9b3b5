import type { Logger } from 'pino';
import type { Broker, Delivery } from '../core/broker.ts';
import { BrokerPatience } from '../core/broker-patience.ts';
import { describeError } from '../core/errors.ts';
import { operationId } from '../core/operation-id.ts';
import { decode, encode, type ChangeRecord, type OperationRecord } from './records.ts';
import type { HubState } from './state.ts';
import { opsSubject, type Target } from './targets.ts';

export { operationId } from '../core/operation-id.ts';

/**
 * Turns each stored change into one set-operation per joined object. A change is acknowledged
 * only after every joined connector has its operation durably queued; if a connector's objects
 * cannot be read, the change is retried and the operations already queued dedupe.
 */
export class Resolver {
  constructor(
    private readonly broker: Broker,
    private readonly state: HubState,
    private readonly targets: readonly Target[],
    private readonly retryDelayMs: number,
    private readonly log: Logger,
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    const patience = new BrokerPatience(this.log, 'resolver');
    const consumer = await patience.consumer(this.broker, 'resolver', 'changes.>', undefined, signal);
    if (!consumer) return;
    while (!signal.aborted) {
      const batch = await patience.fetch(consumer, { max: 256, expiresMs: 1000, signal });
      await Promise.all(batch.map((d) => this.handle(d)));
    }
  }

  private async handle(d: Delivery): Promise<void> {
    let change: ChangeRecord;
    try {
      change = decode<ChangeRecord>(d.data);
    } catch (e) {
      this.log.error({ seq: d.seq, err: describeError(e) }, 'unreadable change record dropped');
      await d.terminate();
      return;
    }
    const log = this.log.child({ changeId: change.changeId, account: `${change.account.domain}\\${change.account.samAccountName}` });
    let failed = false;
    await Promise.all(this.targets.map(async (t) => {
      try {
        await this.fanOut(change, t);
      } catch (e) {
        failed = true;
        log.warn({ connector: t.config.name, eventId: 6940, err: describeError(e) }, 'cannot resolve the join now; the change is retried');
      }
    }));
    if (failed) await d.retryAfter(this.retryDelayMs);
    else await d.ack();
  }

  private async fanOut(change: ChangeRecord, t: Target): Promise<void> {
    const connector = t.config.name;
    const now = Date.now();
    const outcome = await t.joins!.resolve(change.account);
    if (!outcome.joined) {
      const prior = await this.state.getSync(change.account, connector);
      if (!prior || prior.changeTime <= change.changeTime) {
        await this.state.putSync({
          domain: change.account.domain, samAccountName: change.account.samAccountName, connector,
          state: 'not-joined', changeTime: change.changeTime, eventId: 6948, reason: outcome.reason, updatedAt: now,
        });
      }
      t.log.debug({ eventId: 6948, changeId: change.changeId, reason: outcome.reason }, 'account not joined');
      return;
    }
    const op: OperationRecord = {
      opId: operationId(change.changeId, connector, outcome.object.id),
      changeId: change.changeId, connector, objectId: outcome.object.id,
      account: change.account, changeTime: change.changeTime, envelope: change.envelope,
    };
    const fresh = await this.state.createOperation({
      opId: op.opId, changeId: op.changeId, connector, objectId: op.objectId, account: op.account,
      changeTime: op.changeTime, state: 'queued', attempts: 0, updatedAt: now, envelope: op.envelope,
    });
    await this.broker.publish(opsSubject(connector), encode(op), { msgId: op.opId });
    if (fresh) {
      const prior = await this.state.getSync(change.account, connector);
      if (!prior || prior.changeTime <= change.changeTime) {
        await this.state.putSync({
          domain: change.account.domain, samAccountName: change.account.samAccountName, connector,
          state: 'pending', objectId: op.objectId, opId: op.opId, changeTime: change.changeTime, updatedAt: now,
        });
      }
    }
  }
}
