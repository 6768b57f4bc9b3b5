import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Broker, Consumer } from '../core/broker.ts';
import { keyringOf, open, parseHeader, privateRecipientFromPem, seal, type Binding, type PrivateRecipientKey, type RecipientKey } from '../core/envelope.ts';
import { describeError } from '../core/errors.ts';
import { generateRecipientKeys, writeKeyFile } from '../core/keys.ts';
import type { Logger } from '../core/log.ts';
import type { Secret } from '../core/secret.ts';
import { logEvent } from './event-log.ts';
import type { PendingIndex } from './pending.ts';
import { decodeQueuedChange, deliverMsgId, deliverSubject, encodeQueuedChange, type QueuedChange } from './queued-change.ts';

/**
 * A notifier never drops a change it could keep. Each Report answer names the keys the hub opens
 * (current first); the notifier compares the key it seals for:
 *  - not among them (6987): the target is held. Delivery stops (its queue stays, sealed); a change
 *    with its password (the hook) is sealed for the notifier's own hold key instead, and resealed
 *    for the target's key once a report confirms it (after the admin fixed the key and restarted).
 *  - a retired one (6989): delivered, with a warning to roll the current key.
 * A change the hub refuses anyway as sealed for another key (it rotated between reports) is parked
 * (6988), and moved back to delivery once the hub opens its key again.
 */

export type KeyState = 'unknown' | 'current' | 'retired' | 'mismatch';

/** The hub's key ids as of its last report answer, against the key this notifier seals for. */
export class HubKeyCheck {
  state: KeyState = 'unknown';
  hubKeyIds: string[] = [];

  constructor(readonly target: string, readonly keyId: string, private readonly log: Logger) {}

  /** Nothing is sent to the hub: it would refuse it. */
  get holding(): boolean {
    return this.state === 'mismatch';
  }

  /** A report said the hub opens this key. */
  get confirmed(): boolean {
    return this.state === 'current' || this.state === 'retired';
  }

  /**
   * After each report; a hub that names no keys (an older version) leaves the check unknown. At
   * start, with the keys the hub named last (`fromLastReport`), so that a notifier restarted with a
   * wrong key holds its changes before the first report of this run.
   */
  update(ids: readonly string[], fromLastReport = false): void {
    const was = this.state;
    if (ids.length === 0) {
      this.state = 'unknown';
      return;
    }
    this.hubKeyIds = [...ids];
    this.state = ids[0] === this.keyId ? 'current' : ids.includes(this.keyId) ? 'retired' : 'mismatch';
    const fields = { target: this.target, sealingKeyId: this.keyId, hubKeyIds: this.hubKeyIds, ...(fromLastReport ? { fromLastReport } : {}) };
    if (this.state === 'mismatch') logEvent(this.log, 6987, fields);
    else if (this.state === 'retired') logEvent(this.log, 6989, fields, { quiet: was === 'retired' });
    if (was === 'mismatch' && this.state !== 'mismatch') this.log.info(fields, 'the hub opens the notifier\'s key again: held changes are sent');
  }

  /** The hub refused a change sealed for `keyId` as sealed for another key. */
  refused(keyId: string): void {
    // Only the key this notifier seals for holds the target: an older change sealed for a previous key is parked alone.
    if (keyId === this.keyId && this.state !== 'mismatch') {
      this.state = 'mismatch';
      logEvent(this.log, 6987, { target: this.target, sealingKeyId: this.keyId, hubKeyIds: this.hubKeyIds, refusedBySubmit: true });
    }
  }

  /** Why the target's changes wait, for the hub's status; undefined when they are not held by key. */
  reason(): string | undefined {
    return this.holding ? `held: sealed for key ${this.keyId}, the hub has key ${this.hubKeyIds.join(', ') || 'unknown'} (6987)` : undefined;
  }
}

/** The notifier's own P-256 pair (`<dataDir>/hold.key`, mode 0600) for changes held by key: created once. */
export function loadHoldKey(dataDir: string): PrivateRecipientKey {
  const file = join(dataDir, 'hold.key');
  if (!existsSync(file)) {
    try {
      writeKeyFile(file, generateRecipientKeys().privatePem, { mode: 0o600 });
    } catch (e) {
      if (!existsSync(file)) throw e;
    }
  }
  try {
    return privateRecipientFromPem(readFileSync(file));
  } catch (e) {
    throw new Error(`cannot read the notifier's hold key ${file} (${describeError(e)}): remove it only if no change is held (it opens them)`, { cause: e });
  }
}

export interface KeyHoldOptions {
  broker: Broker;
  target: { name: string; token: string; recipient: RecipientKey };
  check: HubKeyCheck;
  holdKey: PrivateRecipientKey;
  pending: PendingIndex;
  log: Logger;
}

const keyHoldSubject = (token: string): string => `keyhold.${token}`;
const parkedSubject = (token: string): string => `parked.${token}`;
/** Key ids a refusal names (hub/ingest.ts: "sealed for key id <hex>, but this hub opens only ..."). */
const SEALED_FOR = /sealed for key id ([0-9a-f]{32})/;

export function refusedKeyId(reason: string): string | undefined {
  return SEALED_FOR.exec(reason)?.[1];
}

/** One target's key hold and parked changes. */
export class KeyHold {
  private held!: Consumer;
  private parked!: Consumer;
  private readonly abort = new AbortController();
  private loop: Promise<void> = Promise.resolve();
  private failures = 0;

  private constructor(private readonly opts: KeyHoldOptions) {}

  static async open(opts: KeyHoldOptions): Promise<KeyHold> {
    const k = new KeyHold(opts);
    k.held = await opts.broker.consumer(`keyhold-${opts.target.token}`, keyHoldSubject(opts.target.token), { ackWaitMs: 120_000 });
    k.parked = await opts.broker.consumer(`parked-${opts.target.token}`, parkedSubject(opts.target.token), { ackWaitMs: 120_000 });
    return k;
  }

  /** Whether a change with its password goes to the key hold: the target is held, or older ones still wait there (order per account). */
  async holding(): Promise<boolean> {
    return this.opts.check.holding || (await this.held.info()).pending > 0;
  }

  /** Changes in the key hold and parked, for the report's count. */
  async count(): Promise<number> {
    return (await this.held.info()).pending + (await this.parked.info()).pending;
  }

  /** Seals the change for the hold key and keeps it until the hub opens the target's key. */
  async hold(binding: Binding, change: Omit<QueuedChange, 'sealedPassword'>, password: Secret): Promise<void> {
    const { target } = this.opts;
    const held: QueuedChange = { ...change, sealedPassword: seal(this.opts.holdKey, binding, password) };
    const id = held.changeId.toString('hex');
    await this.opts.pending.put(target.token, held, 'key');
    await this.opts.broker.publish(keyHoldSubject(target.token), encodeQueuedChange(held), { msgId: `${id}.${target.token}.key` });
    this.opts.log.warn({ target: target.name, changeId: id, account: held.account?.samAccountName, sealingKeyId: this.opts.check.keyId, hubKeyIds: this.opts.check.hubKeyIds },
      'the hub does not open the target\'s key: the change is held at the notifier, sealed for its hold key, until the key is fixed (6987)');
  }

  /** A change the hub refused as sealed for `keyId`: kept aside, never dropped. */
  async park(change: QueuedChange, keyId: string): Promise<void> {
    const { target } = this.opts;
    const id = change.changeId.toString('hex');
    await this.opts.pending.put(target.token, change, 'parked', keyId);
    // A change parked a second time must not be taken for a duplicate of the first.
    await this.opts.broker.publish(parkedSubject(target.token), encodeQueuedChange(change), { msgId: `${id}.${target.token}.parked.${Date.now()}` });
    logEvent(this.opts.log, 6988, { target: target.name, changeId: id, account: change.account?.samAccountName, keyId, hubKeyIds: this.opts.check.hubKeyIds });
    this.opts.check.refused(keyId);
  }

  /** Starts moving held changes on (resealed, through `route`) once a report confirms the key. */
  start(route: (change: QueuedChange) => Promise<void>): void {
    this.loop = this.run(route).catch((e: unknown) => this.opts.log.error({ target: this.opts.target.name, err: describeError(e) }, 'the key-hold loop stopped; held changes wait for a restart'));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  /** After a report: parked changes whose key the hub opens go back to delivery. */
  async releaseParked(hubKeyIds: readonly string[]): Promise<number> {
    const { target } = this.opts;
    const batch = await this.parked.fetch({ max: 100, expiresMs: 0 });
    let released = 0;
    for (const d of batch) {
      let change: QueuedChange;
      try {
        change = decodeQueuedChange(d.data);
      } catch (e) {
        // Kept: an unreadable record stays parked for an admin rather than vanish.
        this.opts.log.error({ target: target.name, msgId: d.msgId, err: describeError(e) }, 'a parked change cannot be read; it stays parked');
        await d.retryAfter(3_600_000);
        continue;
      }
      const keyId = parseHeader(change.sealedPassword).header.keyId.toString('hex');
      if (!hubKeyIds.includes(keyId)) {
        await d.retryAfter(0);
        continue;
      }
      const id = change.changeId.toString('hex');
      await this.opts.pending.put(target.token, change, 'queued');
      await this.opts.broker.publish(deliverSubject(target.token), encodeQueuedChange(change), { msgId: `${deliverMsgId(id, target.token)}.unparked.${Date.now()}` });
      await d.ack();
      released++;
    }
    if (released > 0) this.opts.log.info({ target: target.name, released }, 'the hub opens the key of parked changes again: they are sent');
    return released;
  }

  private async run(route: (change: QueuedChange) => Promise<void>): Promise<void> {
    const signal = this.abort.signal;
    const keyring = keyringOf([this.opts.holdKey]);
    while (!signal.aborted) {
      if (!this.opts.check.confirmed || (await this.held.info()).pending === 0) {
        await sleep(500, undefined, { signal }).catch(() => undefined);
        continue;
      }
      const [d] = await this.held.fetch({ max: 1, expiresMs: 0, signal });
      if (!d) continue;
      try {
        const change = decodeQueuedChange(d.data);
        const { header, password } = open(change.sealedPassword, keyring);
        let resealed: Buffer;
        try {
          resealed = seal(this.opts.target.recipient, header, password);
        } finally {
          password.dispose();
        }
        await route({ ...change, sealedPassword: resealed });
        await d.ack();
        this.failures = 0;
      } catch (e) {
        this.failures++;
        const delay = Math.min(60_000, 1_000 * 2 ** Math.min(this.failures - 1, 6));
        this.opts.log.error({ target: this.opts.target.name, msgId: d.msgId, err: describeError(e), retryInMs: delay }, 'a change held by key could not be resealed for the target; it stays held');
        await d.retryAfter(delay);
        await sleep(delay, undefined, { signal }).catch(() => undefined);
      }
    }
  }
}
