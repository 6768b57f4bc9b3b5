import { createHash } from 'node:crypto';
import type { ConnectorConfig } from '../config/schema.ts';
import type { Broker, Delivery } from '../core/broker.ts';
import { brokerBusy, subjectToken } from '../core/broker.ts';
import { BrokerPatience } from '../core/broker-patience.ts';
import { formatTime } from '../core/change-time.ts';
import { describeError } from '../core/errors.ts';
import type { Keyring } from '../core/envelope.ts';
import { EVENTS, type EventId } from '../core/events.ts';
import { NoWorkerError } from '../core/worker-bus.ts';
import { applyBatch, asPwsyncError } from './apply.ts';
import { decode, newerSync, operationProblem, type OperationRecord, type OperationStatus } from './records.ts';
import type { HubState } from './state.ts';
import { opsSubject, type Target } from './targets.ts';

interface Item {
  delivery: Delivery;
  op: OperationRecord;
}

type WorkerState = 'running' | 'draining' | 'stopped';

/** How long a delivered set-operation may stay unsettled before it is offered again (also an object claim's lease). */
export function ackWaitOf(_c: Pick<ConnectorConfig, 'timeout'>): number {
  // Short, because a hub renews the lease of every delivery and claim it holds every
  // HEARTBEAT_MS: what a hub killed -9 held is free again within this, not after a whole set.
  return LEASE_MS;
}

const LEASE_MS = 15_000;
const HEARTBEAT_MS = 5_000;

/** How soon an operation whose object another hub is setting is offered again. */
const CLAIMED_RETRY_MS = 250;
/** How soon an operation is offered again when the broker could not record it (outage, lost compare-and-set). */
const BUSY_RETRY_MS = 1_000;

export interface DispatchOptions {
  /** hub.clockTolerance: a queued operation stamped further ahead of the clock is set aside (6975). */
  clockToleranceMs: number;
  /** Set when hubs share the broker (NATS): objects are claimed across hubs while they are set. */
  shared?: { hubId: string; leaseMs: number };
}

/**
 * Applies one connector's set-operations. Operations are spread over `concurrency` lanes by
 * target object, so one object is never set twice at once and its operations keep their order;
 * each lane applies up to `batchSize` at a time. Latest wins: an operation older than the change
 * last applied to its object is not applied: it is superseded (6919). Each operation of a batch
 * is settled on its own: one that cannot be handled is set aside (6975) and holds back none of
 * the others.
 */
export class ConnectorWorker {
  private readonly lanes: Item[][];
  private readonly busy: boolean[];
  private readonly running = new Set<Promise<void>>();
  private queued = 0;
  /** Deliveries taken and not yet settled, and the object claims held: renewed every HEARTBEAT_MS.
   *  A delivery leaves before it is settled: an in-progress mark after a retry-after would
   *  push its retry out to a whole lease. */
  private readonly held = new Set<Delivery>();
  private readonly claims = new Set<{ renew(): Promise<void> }>();
  private state: WorkerState = 'running';
  private wake?: () => void;

  constructor(
    private readonly target: Target,
    private readonly broker: Broker,
    private readonly hubState: HubState,
    private readonly keyring: Keyring,
    private readonly opts: DispatchOptions,
  ) {
    const n = target.config.concurrency;
    this.lanes = Array.from({ length: n }, () => []);
    this.busy = Array.from({ length: n }, () => false);
  }

  private get capacity(): number {
    return this.target.config.concurrency * this.target.config.batchSize * 2;
  }

  async run(signal: AbortSignal): Promise<void> {
    const c = this.target.config;
    const patience = new BrokerPatience(this.target.log, `set-operations of connector ${c.name}`);
    const consumer = await patience.consumer(this.broker, `ops-${subjectToken(c.name)}`, opsSubject(c.name), { ackWaitMs: ackWaitOf(c) }, signal);
    if (!consumer) return;
    const heartbeat = setInterval(() => this.renewLeases(), HEARTBEAT_MS);
    try {
      while (!signal.aborted) {
        if (this.queued >= this.capacity) {
          await new Promise<void>((r) => { this.wake = r; setTimeout(r, 1000); });
          continue;
        }
        const batch = await patience.fetch(consumer, { max: this.capacity - this.queued, expiresMs: 1000, signal });
        for (const delivery of batch) this.enqueue(delivery);
      }
      this.state = 'draining';
      await Promise.allSettled([...this.running]);
      this.state = 'stopped';
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** Keeps what this hub holds from being offered to another while it waits in a lane or is set. */
  private renewLeases(): void {
    for (const d of this.held) d.working().catch(() => undefined);
    for (const c of this.claims) {
      c.renew().catch((e: unknown) => this.target.log.warn({ err: String(e) }, 'cannot renew an object claim; another hub may take the object after its lease'));
    }
  }

  private enqueue(delivery: Delivery): void {
    let op: OperationRecord;
    try {
      op = decode<OperationRecord>(delivery.data);
    } catch {
      this.target.log.error({ seq: delivery.seq }, 'unreadable set-operation dropped');
      void delivery.terminate();
      return;
    }
    const problem = operationProblem(op, Date.now(), this.opts.clockToleranceMs);
    if (problem) {
      const p = this.setAside({ delivery, op }, problem).finally(() => this.running.delete(p));
      this.running.add(p);
      return;
    }
    const lane = createHash('sha1').update(op.objectId).digest().readUInt32BE(0) % this.lanes.length;
    this.held.add(delivery);
    this.lanes[lane]!.push({ delivery, op });
    this.queued++;
    this.pump(lane);
  }

  private pump(lane: number): void {
    if (this.busy[lane] || this.lanes[lane]!.length === 0) return;
    this.busy[lane] = true;
    const items = this.lanes[lane]!.splice(0, this.target.config.batchSize);
    const p = this.process(items)
      .catch((e: unknown) => this.target.log.error({ err: String(e) }, 'set-operation batch failed unexpectedly; its operations are redelivered'))
      .finally(() => {
        for (const i of items) this.held.delete(i.delivery);
        this.running.delete(p);
        this.queued -= items.length;
        this.busy[lane] = false;
        this.wake?.();
        if (this.state === 'running') this.pump(lane);
      });
    this.running.add(p);
  }

  private async process(batch: Item[]): Promise<void> {
    const t = this.target;
    const statuses = new Map<string, OperationStatus>();
    const items: Item[] = [];
    for (const i of batch) {
      await this.settleOne(i, async () => {
        const status = await this.statusOf(i.op);
        if (await this.staleCopy(i, status)) return;
        statuses.set(i.op.opId, status);
        items.push(i);
      });
    }
    if (t.refusal) {
      await Promise.all(items.map((i) => this.settleOne(i, () => this.fail(i, statuses.get(i.op.opId)!, t.refusal!.eventId, t.refusal!.reason))));
      return;
    }
    const newest = new Map<string, Item>();
    for (const i of items) {
      const seen = newest.get(i.op.objectId);
      if (!seen || i.op.changeTime >= seen.op.changeTime) newest.set(i.op.objectId, i);
    }
    const apply: Item[] = [];
    const releases: Array<() => Promise<void>> = [];
    try {
      for (const i of items) await this.settleOne(i, () => this.chooseOne(i, statuses.get(i.op.opId)!, newest, apply, releases));
      if (apply.length === 0) return;
      await this.applyChosen(apply, statuses);
    } finally {
      await Promise.allSettled(releases.map((r) => r()));
    }
  }

  /** Which operations are applied: the newest per object, claimed (shared broker), not older than the one applied. */
  private async chooseOne(i: Item, status: OperationStatus, newest: Map<string, Item>, apply: Item[], releases: Array<() => Promise<void>>): Promise<void> {
    const t = this.target;
    if (newest.get(i.op.objectId) !== i) {
      await this.supersede(i, status, 'a newer change for the same object is being applied');
      return;
    }
    if (this.opts.shared) {
      // Another hub may hold an operation for this object: the claim orders them, and the
      // latest-applied check below then sees what the other hub applied.
      const claim = await this.hubState.claimObject(t.config.name, i.op.objectId, this.opts.shared.hubId, this.opts.shared.leaseMs);
      if ('heldBy' in claim) {
        t.log.debug({ opId: i.op.opId, objectId: i.op.objectId, heldBy: claim.heldBy }, 'object being set by another hub: this operation waits');
        this.held.delete(i.delivery);
        await i.delivery.retryAfter(CLAIMED_RETRY_MS);
        return;
      }
      this.claims.add(claim);
      releases.push(async () => {
        this.claims.delete(claim);
        await claim.release();
      });
    }
    const latest = await this.hubState.latestApplied(t.config.name, i.op.objectId);
    if (latest && i.op.changeTime < latest.changeTime) {
      const ahead = latest.changeTime > Date.now() + this.opts.clockToleranceMs
        ? `; that time lies in the future, so no real change can pass it: clear it with \`pwsync latest clear --connector ${t.config.name} --object ${i.op.objectId}\`` : '';
      await this.supersede(i, status, `change of ${formatTime(i.op.changeTime)} is older than the one applied (${formatTime(latest.changeTime)})${ahead}`);
      return;
    }
    status.state = 'in-progress';
    status.attempts += 1;
    status.nextAttemptAt = undefined;
    status.updatedAt = Date.now();
    apply.push(i);
  }

  private async applyChosen(chosen: Item[], statuses: Map<string, OperationStatus>): Promise<void> {
    const t = this.target;
    const marked = new Set<Item>();
    await Promise.all(chosen.map((i) => this.settleOne(i, async () => {
      await this.hubState.putOperation(statuses.get(i.op.opId)!);
      marked.add(i);
    })));
    const apply = chosen.filter((i) => marked.has(i));
    if (apply.length === 0) return;
    let outcomes;
    try {
      outcomes = await applyBatch(t, apply.map((i) => i.op), this.keyring);
    } catch (e) {
      // Every outcome is this failure: retried (asPwsyncError), none of them lost.
      outcomes = new Map<string, unknown>(apply.map((i) => [i.op.opId, e]));
    }
    await Promise.all(apply.map((i) => this.settleOne(i, async () => {
      const status = statuses.get(i.op.opId)!;
      const outcome = outcomes.get(i.op.opId);
      if (outcome === undefined && outcomes.has(i.op.opId)) return this.succeed(i, status);
      const err = asPwsyncError(outcome ?? new Error('no outcome recorded'));
      if (!err.retryable) return this.fail(i, status, err.eventId, err.message);
      // Nothing reached the target (no connector worker listened): not an attempt.
      if (err instanceof NoWorkerError) status.attempts -= 1;
      if (status.attempts > t.config.retry.count) {
        return this.fail(i, status, 6941, `gave up after ${status.attempts} attempts; last: ${err.message}`);
      }
      return this.retry(i, status, err.message);
    })));
  }

  /**
   * Runs one operation's step; what it throws settles that operation alone. The broker unable to
   * record it now: offered again soon. Anything else says the record itself cannot be handled:
   * set aside (6975).
   */
  private async settleOne(i: Item, step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (e) {
      if (!brokerBusy(e)) {
        await this.setAside(i, `it cannot be handled: ${describeError(e)}`, e);
        return;
      }
      this.target.log.warn({ opId: i.op.opId, objectId: i.op.objectId, err: e }, 'the broker cannot record a set-operation now; it is offered again');
      this.held.delete(i.delivery);
      await i.delivery.retryAfter(BUSY_RETRY_MS).catch(() => undefined);
    }
  }

  /**
   * An operation no attempt can apply (a part missing, a change time beyond the clock, a record
   * that makes a step fail): recorded as failed with 6975 where it can be, its delivery ended.
   */
  private async setAside(i: Item, reason: string, err?: unknown): Promise<void> {
    const { op } = i;
    this.held.delete(i.delivery);
    const now = Date.now();
    const shapeOk = operationProblem({ ...op, changeTime: now }, now, 0) === undefined;
    const timeOk = shapeOk && operationProblem(op, now, this.opts.clockToleranceMs) === undefined;
    try {
      if (shapeOk) {
        // Kept for `pwsync retry` once the cause is fixed, like any failure; a time beyond the clock never passes.
        await this.hubState.putOperation({ ...await this.statusOf(op), state: 'failed', eventId: 6975, reason, nextAttemptAt: undefined, updatedAt: now, envelope: timeOk ? op.envelope : undefined });
      }
      // A change time beyond the clock would outrank the account's later sync states: not written there.
      if (timeOk) await this.updateSync(op, { state: 'out-of-sync', eventId: 6975, reason });
    } catch (e) {
      this.target.log.warn({ opId: op?.opId, err: e }, 'cannot record a set-aside set-operation in the status');
    }
    await i.delivery.terminate().catch((e: unknown) => this.target.log.warn({ opId: op?.opId, err: e }, 'cannot end a set-aside set-operation\'s delivery; it is set aside again when offered'));
    this.target.log.error({
      eventId: 6975, opId: op?.opId, changeId: op?.changeId, objectId: op?.objectId, changeTime: formatTime(op?.changeTime), reason, ...(err ? { err } : {}),
    }, EVENTS[6975].text);
  }

  private async statusOf(op: OperationRecord): Promise<OperationStatus> {
    const status = await this.hubState.getOperation(op.opId) ?? {
      opId: op.opId, changeId: op.changeId, connector: op.connector, objectId: op.objectId,
      account: op.account, changeTime: op.changeTime, state: 'queued', attempts: 0, updatedAt: Date.now(),
    };
    // Kept until settled, so that an operation whose delivery is lost can be queued again.
    status.envelope ??= op.envelope;
    return status;
  }

  /**
   * A delivery that must not be applied: its operation was set already, or it was re-queued under
   * another message id (`pwsync retry`, recovery) and this is the copy left behind. Dropped.
   */
  private async staleCopy(i: Item, status: OperationStatus): Promise<boolean> {
    const stale = status.state === 'successful' ? 'already set' : status.delivery !== undefined && status.delivery !== i.delivery.msgId ? `re-queued as ${status.delivery}` : undefined;
    if (!stale) return false;
    this.target.log.debug({ opId: i.op.opId, msgId: i.delivery.msgId, why: stale }, 'a stale copy of a set-operation dropped');
    this.held.delete(i.delivery);
    await i.delivery.ack();
    return true;
  }

  private async succeed(i: Item, status: OperationStatus): Promise<void> {
    const now = Date.now();
    await Promise.all([
      this.hubState.recordApplied(i.op.connector, i.op.objectId, i.op.changeTime, i.op.changeId),
      this.hubState.putOperation({ ...status, state: 'successful', eventId: 6947, reason: undefined, envelope: undefined, updatedAt: now }),
      this.updateSync(i.op, { state: 'in-sync', eventId: undefined, reason: undefined }),
    ]);
    this.held.delete(i.delivery);
    await i.delivery.ack();
    this.target.log.info({ eventId: 6947, opId: i.op.opId, changeId: i.op.changeId, objectId: i.op.objectId, attempts: status.attempts }, EVENTS[6947].text);
  }

  private async retry(i: Item, status: OperationStatus, reason: string): Promise<void> {
    const delay = this.target.config.retry.interval;
    const next = Date.now() + delay;
    await Promise.all([
      this.hubState.putOperation({ ...status, state: 'retrying', eventId: 6940, reason, nextAttemptAt: next, updatedAt: Date.now() }),
      this.updateSync(i.op, { state: 'pending', eventId: 6940, reason: `retrying at ${formatTime(next)}: ${reason}` }),
    ]);
    this.held.delete(i.delivery);
    await i.delivery.retryAfter(delay);
    this.target.log.warn({ eventId: 6940, opId: i.op.opId, objectId: i.op.objectId, attempt: status.attempts, nextAttemptAt: formatTime(next), reason }, EVENTS[6940].text);
  }

  /** Logged once with its event id, never retried (the operation's delivery is terminated). */
  private async fail(i: Item, status: OperationStatus, eventId: EventId, reason: string): Promise<void> {
    await Promise.all([
      // The sealed password travels in the queued operation; a failure keeps it for `pwsync
      // retry` (until hub.keepFailedFor).
      this.hubState.putOperation({ ...status, state: 'failed', eventId, reason, nextAttemptAt: undefined, updatedAt: Date.now(), envelope: i.op.envelope }),
      this.updateSync(i.op, { state: 'out-of-sync', eventId, reason }),
    ]);
    await this.settle(i, eventId, reason);
    if (eventId === 6923) await this.target.joins?.objectGone(i.op.account, i.op.objectId);
  }

  /**
   * A newer change for the same object won (6919): not a failure, nothing to retry, and the
   * person's sync state belongs to the newer change. No sealed password is kept.
   */
  private async supersede(i: Item, status: OperationStatus, reason: string): Promise<void> {
    await this.hubState.putOperation({ ...status, state: 'superseded', eventId: 6919, reason, nextAttemptAt: undefined, updatedAt: Date.now(), envelope: undefined });
    await this.settle(i, 6919, reason);
  }

  private async settle(i: Item, eventId: EventId, reason: string): Promise<void> {
    this.held.delete(i.delivery);
    await i.delivery.terminate();
    const level = EVENTS[eventId].severity === 'error' ? 'error' : 'warn';
    this.target.log[level]({ eventId, opId: i.op.opId, changeId: i.op.changeId, objectId: i.op.objectId, reason }, EVENTS[eventId].text);
  }

  private async updateSync(op: OperationRecord, s: { state: 'in-sync' | 'pending' | 'out-of-sync'; eventId: number | undefined; reason: string | undefined }): Promise<void> {
    const prior = await this.hubState.getSync(op.account, op.connector);
    if (newerSync(prior, op.changeTime, Date.now(), this.opts.clockToleranceMs)) return;
    await this.hubState.putSync({
      domain: op.account.domain, samAccountName: op.account.samAccountName, connector: op.connector,
      objectId: op.objectId, opId: op.opId, changeTime: op.changeTime, updatedAt: Date.now(), ...s,
    });
  }
}
