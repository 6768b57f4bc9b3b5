import type { Logger } from 'pino';
import { brokerBusy, type Broker, type Delivery } from '../core/broker.ts';
import { BrokerPatience } from '../core/broker-patience.ts';
import { formatTime } from '../core/change-time.ts';
import { describeError } from '../core/errors.ts';
import { EVENTS } from '../core/events.ts';
import { operationId } from '../core/operation-id.ts';
import { asPwsyncError } from './apply.ts';
import { changeProblem, decode, encode, newerSync, type ChangeRecord, type OperationRecord } from './records.ts';
import type { HubState } from './state.ts';
import { opsSubject, type Target } from './targets.ts';

export { operationId } from '../core/operation-id.ts';

/**
 * Turns each stored change into one set-operation per joined object. A change is acknowledged
 * only after every joined connector has its operation durably queued; if a connector's objects
 * cannot be read, the change is retried (the operations already queued dedupe) and the person's
 * row for that connector says why. Each change of a fetched batch is settled on its own: one that
 * cannot be resolved is set aside (6975).
 */
export class Resolver {
  constructor(
    private readonly broker: Broker,
    private readonly state: HubState,
    private readonly targets: readonly Target[],
    private readonly opts: { retryDelayMs: number; /** hub.clockTolerance */ clockToleranceMs: number },
    private readonly log: Logger,
  ) {}

  /** Connectors that refuse the hub now, with the message logged for each. */
  private readonly refusing = new Map<string, string>();

  async run(signal: AbortSignal): Promise<void> {
    const patience = new BrokerPatience(this.log, 'resolver');
    const consumer = await patience.consumer(this.broker, 'resolver', 'changes.>', undefined, signal);
    if (!consumer) return;
    while (!signal.aborted) {
      const batch = await patience.fetch(consumer, { max: 256, expiresMs: 1000, signal });
      await Promise.all(batch.map((d) => this.handle(d).catch((e: unknown) => this.handleFailed(d, e))));
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
    const problem = changeProblem(change, Date.now(), this.opts.clockToleranceMs);
    if (problem) {
      await this.setAside(d, change, problem);
      return;
    }
    const log = this.log.child({ changeId: change.changeId, account: `${change.account.domain}\\${change.account.samAccountName}` });
    let delay: number | undefined;
    await Promise.all(this.targets.map(async (t) => {
      try {
        await this.fanOut(change, t);
        if (this.refusing.delete(t.config.name)) t.log.info('the connector\'s objects can be read again: the changes waiting for it are joined');
      } catch (e) {
        const wait = await this.cannotJoin(change, t, e, log);
        delay = Math.min(delay ?? wait, wait);
      }
    }));
    if (delay !== undefined) await d.retryAfter(delay);
    else await d.ack();
  }

  /**
   * The connector's objects cannot be read, so the account cannot be joined: the change is kept
   * (not acknowledged) and resolved again, and the person's row says why. A connector that is
   * down is tried again soon (6940). One that refuses the hub (its service account's password or
   * rights: 6942; its TLS: 6951) shows that event on the row and is tried again only at its retry
   * interval, so the change flows once an admin fixes the account, and is never lost meanwhile.
   */
  private async cannotJoin(change: ChangeRecord, t: Target, e: unknown, log: Logger): Promise<number> {
    const err = asPwsyncError(e);
    const connector = t.config.name;
    if (err.retryable) {
      log.warn({ connector, eventId: 6940, err: err.message }, 'cannot resolve the join now; the change is retried');
      await this.recordWaiting(change, connector, 'pending', 6940, `cannot read the connector's objects to join the account (${err.message}); tried again in ${this.opts.retryDelayMs / 1000}s`);
      return this.opts.retryDelayMs;
    }
    const wait = Math.max(this.opts.retryDelayMs, t.config.retry.interval);
    // Logged once per connector while it refuses, not once per change and retry.
    if (this.refusing.get(connector) !== err.message) {
      this.refusing.set(connector, err.message);
      log.error({ connector, eventId: err.eventId, err: err.message, retryInMs: wait }, `the connector refuses the hub, so accounts cannot be joined in it: its changes wait at the hub and are joined again every ${wait / 1000}s`);
    }
    await this.recordWaiting(change, connector, 'out-of-sync', err.eventId, `${err.message}; the change waits at the hub and is joined again every ${wait / 1000}s`);
    return wait;
  }

  /** The person's row for a change that waits for its join, unless a newer change already owns the row. */
  private async recordWaiting(change: ChangeRecord, connector: string, state: 'pending' | 'out-of-sync', eventId: number, reason: string): Promise<void> {
    const prior = await this.state.getSync(change.account, connector);
    if (newerSync(prior, change.changeTime, Date.now(), this.opts.clockToleranceMs)
      || (prior && prior.changeTime === change.changeTime && prior.state === state && prior.eventId === eventId && prior.reason === reason)) return;
    await this.state.putSync({
      domain: change.account.domain, samAccountName: change.account.samAccountName, connector,
      state, changeTime: change.changeTime, eventId, reason, updatedAt: Date.now(),
    });
  }

  /** What a change's handling threw: the broker unable now, retried; anything else, the change is set aside. */
  private async handleFailed(d: Delivery, e: unknown): Promise<void> {
    if (brokerBusy(e)) {
      this.log.warn({ seq: d.seq, err: e }, 'the broker cannot record a change\'s set-operations now; it is retried');
      await d.retryAfter(this.opts.retryDelayMs).catch(() => undefined);
      return;
    }
    let change: ChangeRecord | undefined;
    try {
      change = decode<ChangeRecord>(d.data);
    } catch {
      change = undefined;
    }
    await this.setAside(d, change, `it cannot be resolved: ${describeError(e)}`, e);
  }

  /**
   * A change no attempt can resolve: its delivery ended and event 6975 logged with what names it,
   * so that the changes fetched with it go on.
   */
  private async setAside(d: Delivery, change: ChangeRecord | undefined, reason: string, err?: unknown): Promise<void> {
    await d.terminate().catch((e: unknown) => this.log.warn({ seq: d.seq, err: e }, 'cannot end a set-aside change\'s delivery; it is set aside again when offered'));
    const c = change as Partial<ChangeRecord> | undefined;
    this.log.error({
      eventId: 6975, seq: d.seq, changeId: c?.changeId, sourceDc: c?.sourceDc, caller: c?.caller,
      account: c?.account ? `${String(c.account.domain)}\\${String(c.account.samAccountName)}` : undefined,
      changeTime: formatTime(c?.changeTime), reason, ...(err ? { err } : {}),
    }, EVENTS[6975].text);
  }

  private async fanOut(change: ChangeRecord, t: Target): Promise<void> {
    const connector = t.config.name;
    const now = Date.now();
    const outcome = await t.joins!.resolve(change.account);
    if (!outcome.joined) {
      const prior = await this.state.getSync(change.account, connector);
      if (!newerSync(prior, change.changeTime, now, this.opts.clockToleranceMs)) {
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
      if (!newerSync(prior, change.changeTime, now, this.opts.clockToleranceMs)) {
        await this.state.putSync({
          domain: change.account.domain, samAccountName: change.account.samAccountName, connector,
          state: 'pending', objectId: op.objectId, opId: op.opId, changeTime: change.changeTime, updatedAt: now,
        });
      }
    }
  }
}
