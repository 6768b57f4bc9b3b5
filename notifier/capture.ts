import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Broker, Consumer, KvStore } from '../core/broker.ts';
import { changeTimeProblem } from '../core/change-time.ts';
import { bindingMismatch, parseHeader, seal, type Binding, type RecipientKey } from '../core/envelope.ts';
import { describeError } from '../core/errors.ts';
import type { AccountRef } from '../core/extension.ts';
import type { Logger } from '../core/log.ts';
import type { Secret } from '../core/secret.ts';
import { logEvent } from './event-log.ts';
import { HookProtocolError, type HookChange, type SealedCapture } from './hook-protocol.ts';
import type { KeyHold } from './key-hold.ts';
import { encodeNotice, noticeSubject } from './notice.ts';
import type { PendingIndex } from './pending.ts';
import { decodeQueuedChange, deliverMsgId, deliverSubject, encodeQueuedChange, type QueuedChange } from './queued-change.ts';
import { ScopeUnavailable, type Scope } from './scope.ts';

/**
 * Capture → queue. A change arrives either with its password (the `pwsync hook` socket: sealed here
 * at once for each enabled target's key) or already sealed by the capturer (the Samba capture
 * script, the Windows filter DLL: one envelope per hub key). Each target's scope then decides:
 * in scope → the target's delivery queue; out of scope → a notice for the hub, no envelope kept;
 * undecidable (group missing, directory down) → the target's hold queue, sealed, retried until
 * the scope can be decided. The capturer hears `ok` only after every publish is durable.
 *
 * While a target's hold queue is not empty, its new changes join the hold queue too, so that the
 * order per account is kept.
 */

/** An enabled target, as capture needs it. Disabled targets are not handed in: they get nothing. */
export interface CaptureTarget {
  name: string;
  /** subjectToken(name) */
  token: string;
  recipient: RecipientKey;
  /** Holds the target's changes while the hub does not open its key (notifier/key-hold.ts). */
  keyHold?: KeyHold;
}

/**
 * A change sealed by the Windows filter DLL: one envelope per target, named by the DLL's own
 * settings; the account and source host are the ones in the envelopes' headers (all alike).
 */
export interface PresealedCapture {
  changeId: Buffer;
  envelopes: Array<{ target: CaptureTarget; envelope: Buffer }>;
}

export interface CaptureOptions {
  broker: Broker;
  targets: readonly CaptureTarget[];
  scope: Scope;
  /** This DC's domain: a change for another domain is refused. */
  domain: string;
  /** This DC's host name, bound into every envelope as the source host. */
  host: string;
  log: Logger;
  /** notifier.clockTolerance: a change stamped further ahead of this DC's clock is refused (6974). */
  clockToleranceMs: number;
  /** Which accounts wait, per target, for the Report; none kept when absent. */
  pending?: PendingIndex;
  now?: () => number;
  /** First wait before a held change's scope is tried again; doubles up to holdRetryMaxMs. */
  holdRetryMs?: number;
  holdRetryMaxMs?: number;
}

export interface Capture {
  /** A change with its password; the Secret is disposed once sealed. Returns the change id (hex). */
  clear(change: HookChange, password: Secret): Promise<string>;
  /** A change sealed by its capturer. Returns the change id (hex). */
  sealed(change: SealedCapture): Promise<string>;
  /**
   * A change sealed by the filter DLL, each envelope for the target it names (none opened).
   * Throws HookProtocolError when an envelope does not belong to its target or to this domain.
   */
  presealed(change: PresealedCapture): Promise<string>;
  /** Changes held for a target (by its token) until their scope can be decided. */
  held(targetToken: string): Promise<number>;
  /** A change released from the key hold, resealed for the target's key: routed by its scope like a new one. */
  resealed(target: CaptureTarget, change: QueuedChange): Promise<void>;
  /** Stops the held-change loops (what they hold stays queued). */
  stop(): Promise<void>;
}

export const holdSubject = (token: string): string => `hold.${token}`;
const holdConsumer = (token: string): string => `hold-${token}`;
const VERSIONS_BUCKET = 'capture-versions';

export async function createCapture(opts: CaptureOptions): Promise<Capture> {
  const c = new CaptureImpl(opts, await opts.broker.kv(VERSIONS_BUCKET));
  await c.startHolds();
  return c;
}

class CaptureImpl implements Capture {
  private readonly now: () => number;
  private readonly abort = new AbortController();
  private readonly holds = new Map<string, HoldLoop>();

  constructor(private readonly opts: CaptureOptions, private readonly versions: KvStore) {
    this.now = opts.now ?? Date.now;
  }

  async startHolds(): Promise<void> {
    for (const t of this.opts.targets) {
      const consumer = await this.opts.broker.consumer(holdConsumer(t.token), holdSubject(t.token), { ackWaitMs: 120_000 });
      const loop = new HoldLoop(t, consumer, this, this.opts, this.abort.signal);
      this.holds.set(t.token, loop);
      await loop.start();
    }
  }

  async held(targetToken: string): Promise<number> {
    return (await this.holds.get(targetToken)?.pending()) ?? 0;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.all([...this.holds.values()].map((h) => h.stopped()));
  }

  async clear(change: HookChange, password: Secret): Promise<string> {
    try {
      const { account } = change;
      this.checkDomain(account);
      const changeId = randomBytes(16);
      const changeTime = change.changeTime ?? this.now();
      this.checkChangeTime(account, changeTime, changeId);
      const binding = this.bindingOf(account, changeId, changeTime);
      const queued: Array<{ target: CaptureTarget; change: QueuedChange }> = [];
      const keyHeld: string[] = [];
      for (const target of this.opts.targets) {
        if (target.keyHold && await target.keyHold.holding()) {
          await target.keyHold.hold(binding, queuedOf(binding, account, Buffer.alloc(0)), password);
          keyHeld.push(target.name);
        } else {
          queued.push({ target, change: queuedOf(binding, account, seal(target.recipient, binding, password)) });
        }
      }
      password.dispose();
      await this.route(account, queued, keyHeld);
      return changeId.toString('hex');
    } finally {
      password.dispose();
    }
  }

  async sealed(change: SealedCapture): Promise<string> {
    const { account } = change;
    this.checkDomain(account);
    if (change.changeId.length !== 16) throw new HookProtocolError('changeId must be 16 bytes (32 hex digits)');
    const id = change.changeId.toString('hex');
    const seen = change.version ? await this.versionSeen(change.version) : undefined;
    if (seen && !change.baseline) {
      this.opts.log.debug({ changeId: id, account: account.samAccountName, kvno: change.version?.kvno, seenKvno: seen.kvno }, 'not a new password version (replay or non-password change); nothing queued');
      return id;
    }
    if (!change.baseline) {
      this.checkChangeTime(account, change.changeTime, change.changeId);
      const binding = this.bindingOf(account, change.changeId, change.changeTime);
      const byKey = new Map<string, Buffer>();
      for (const env of change.envelopes) {
        let header;
        try {
          header = parseHeader(env).header;
        } catch (e) {
          throw new HookProtocolError(`an envelope cannot be read: ${describeError(e)}`);
        }
        const field = bindingMismatch(header, binding);
        if (field) throw new HookProtocolError(`an envelope is bound to another ${field} than the change it came with: the capturer must seal each change for its own header`);
        byKey.set(header.keyId.toString('hex'), env);
      }
      const queued = this.opts.targets.map((target) => {
        const keyId = target.recipient.keyId.toString('hex');
        const env = byKey.get(keyId);
        if (!env) throw new HookProtocolError(`no envelope sealed for target ${target.name}'s key ${keyId}: the capturer has stale keys (restart it so it reads the notifier's current keys)`);
        return { target, change: queuedOf(binding, account, env) };
      });
      await this.route(account, queued);
    }
    if (change.version) await this.recordVersion(change.version);
    if (change.baseline) this.opts.log.debug({ account: account.samAccountName, kvno: change.version?.kvno }, 'baseline: password version recorded, nothing sent');
    return id;
  }

  async presealed(change: PresealedCapture): Promise<string> {
    const id = change.changeId.toString('hex');
    let binding: Binding | undefined;
    const queued: Array<{ target: CaptureTarget; change: QueuedChange }> = [];
    for (const { target, envelope } of change.envelopes) {
      let header;
      try {
        header = parseHeader(envelope).header;
      } catch (e) {
        throw new HookProtocolError(`the envelope for target ${target.name} cannot be read: ${describeError(e)}`);
      }
      if (!header.keyId.equals(target.recipient.keyId)) {
        throw new HookProtocolError(`the envelope for target ${target.name} is sealed for key ${header.keyId.toString('hex')}, but the target's key is ${target.recipient.keyId.toString('hex')}: the DLL has a stale key (run \`pwsync notifier install\` again)`);
      }
      binding ??= header;
      const field = bindingMismatch(header, binding);
      if (field || !header.changeId.equals(change.changeId)) throw new HookProtocolError(`the envelopes of change ${id} name different ${field ?? 'change id'}s: a frame holds one change`);
      queued.push({ target, change: queuedOf(binding, accountOfBinding(binding), envelope) });
    }
    if (!binding) return id;
    const account = accountOfBinding(binding);
    this.checkDomain(account);
    this.checkChangeTime(account, binding.changeTime, change.changeId);
    await this.route(account, queued);
    return id;
  }

  async resealed(target: CaptureTarget, change: QueuedChange): Promise<void> {
    await this.routeOne(target, accountOf(change), change);
  }

  /** Routes each target's sealed copy by its scope; resolves once every publish is durable. */
  private async route(account: AccountRef, queued: Array<{ target: CaptureTarget; change: QueuedChange }>, keyHeld: string[] = []): Promise<void> {
    const outcomes = await Promise.all(queued.map(({ target, change }) => this.routeOne(target, account, change)));
    const sent = queued.filter((_, i) => outcomes[i] === 'queued').map((q) => q.target.name);
    const held = [...keyHeld, ...queued.filter((_, i) => outcomes[i] === 'held').map((q) => q.target.name)];
    const id = queued[0]?.change.changeId.toString('hex');
    this.opts.log.info({ changeId: id, domain: account.domain, account: account.samAccountName, targets: sent, ...(held.length ? { held } : {}) },
      sent.length + held.length > 0 ? 'password change queued' : 'password change is in no target\'s scope; nothing queued');
  }

  private async routeOne(target: CaptureTarget, account: AccountRef, change: QueuedChange): Promise<'queued' | 'notice' | 'held'> {
    const hold = this.holds.get(target.token);
    if (hold?.holding) {
      await this.publishHold(target, change);
      return 'held';
    }
    let decision;
    try {
      decision = await this.opts.scope.decide(account, target.name);
    } catch (e) {
      if (!(e instanceof ScopeUnavailable)) throw e;
      logEvent(this.opts.log, 6957, { target: target.name, account: account.samAccountName, changeId: change.changeId.toString('hex'), error: e.message });
      await this.publishHold(target, change);
      return 'held';
    }
    return this.publishDecided(target, account, change, decision);
  }

  async publishDecided(target: CaptureTarget, account: AccountRef, change: QueuedChange, decision: { send: true } | { send: false; reason: string }): Promise<'queued' | 'notice'> {
    const id = change.changeId.toString('hex');
    if (decision.send) {
      // Before the publish: once published, delivery may settle (and forget) the change at once.
      await this.opts.pending?.put(target.token, change, 'queued');
      await this.opts.broker.publish(deliverSubject(target.token), encodeQueuedChange(change), { msgId: deliverMsgId(id, target.token) });
      return 'queued';
    }
    await this.opts.pending?.drop(target.token, change);
    logEvent(this.opts.log, 6958, { target: target.name, account: account.samAccountName, changeId: id, reason: decision.reason });
    const notice = {
      noticeId: change.changeId, account: change.account!, changeTimeMs: change.changeTimeMs, target: target.name, reason: decision.reason,
    };
    await this.opts.broker.publish(noticeSubject(target.token), encodeNotice(notice), { msgId: `${id}.${target.token}.notice` });
    return 'notice';
  }

  private async publishHold(target: CaptureTarget, change: QueuedChange): Promise<void> {
    const id = change.changeId.toString('hex');
    await this.opts.pending?.put(target.token, change, 'scope');
    await this.opts.broker.publish(holdSubject(target.token), encodeQueuedChange(change), { msgId: `${id}.${target.token}.hold` });
    this.holds.get(target.token)?.wake();
  }

  private checkDomain(account: AccountRef): void {
    if (account.domain.toLowerCase() !== this.opts.domain.toLowerCase()) {
      throw new HookProtocolError(`the change is for domain ${account.domain}, but this notifier serves ${this.opts.domain} (notifier.domain): send the account's DNS domain name`);
    }
  }

  /**
   * Every way a change enters the notifier (the hook, Samba capture, the Windows spool) passes
   * here: one stamped too far ahead of this clock is refused before anything is queued.
   */
  private checkChangeTime(account: AccountRef, changeTime: number, changeId: Buffer): void {
    const future = changeTimeProblem(changeTime, this.now(), this.opts.clockToleranceMs);
    if (!future) return;
    logEvent(this.opts.log, 6974, {
      changeId: changeId.toString('hex'), domain: account.domain, account: account.samAccountName, sourceDc: this.opts.host,
      skewMs: future.skewMs, clockToleranceMs: this.opts.clockToleranceMs,
    });
    throw new HookProtocolError(`${future.reason} (event 6974); nothing was queued`);
  }

  private bindingOf(account: AccountRef, changeId: Buffer, changeTime: number): Binding {
    return {
      changeId, changeTime, domain: account.domain, samAccountName: account.samAccountName, objectGuid: account.objectGuid,
      objectSid: account.objectSid, upn: account.upn, dn: account.dn, sourceHost: this.opts.host,
    };
  }

  private async versionSeen(v: { objectGuid: string; kvno: number }): Promise<{ kvno: number } | undefined> {
    const e = await this.versions.get(v.objectGuid.toLowerCase());
    if (!e) return undefined;
    const kvno = Number(e.value.toString('utf8'));
    return kvno >= v.kvno ? { kvno } : undefined;
  }

  private async recordVersion(v: { objectGuid: string; kvno: number }): Promise<void> {
    const key = v.objectGuid.toLowerCase();
    const e = await this.versions.get(key);
    if (e && Number(e.value.toString('utf8')) >= v.kvno) return;
    await this.versions.put(key, Buffer.from(String(v.kvno), 'utf8'));
  }
}

function queuedOf(binding: Binding, account: AccountRef, sealedPassword: Buffer): QueuedChange {
  return {
    changeId: binding.changeId, domain: binding.domain, sourceDc: binding.sourceHost,
    account: {
      samAccountName: account.samAccountName, objectGuid: account.objectGuid, objectSid: account.objectSid,
      userPrincipalName: account.upn, distinguishedName: account.dn,
    },
    changeTimeMs: binding.changeTime,
    sealedPassword,
  };
}

function accountOfBinding(b: Binding): AccountRef {
  return { domain: b.domain, samAccountName: b.samAccountName, objectGuid: b.objectGuid, objectSid: b.objectSid, upn: b.upn, dn: b.dn };
}

function accountOf(c: QueuedChange): AccountRef {
  const a = c.account!;
  return { domain: c.domain, samAccountName: a.samAccountName, objectGuid: a.objectGuid, objectSid: a.objectSid, upn: a.userPrincipalName, dn: a.distinguishedName };
}

/**
 * A target's held changes, in order: the first is retried until its scope can be decided, then
 * moved to the delivery queue (or turned into a notice), then the next. Nothing newer for that
 * target passes while something is held.
 */
class HoldLoop {
  holding = false;
  private failures = 0;
  private wakeUp: (() => void) | undefined;
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly target: CaptureTarget,
    private readonly consumer: Consumer,
    private readonly capture: CaptureImpl,
    private readonly opts: CaptureOptions,
    private readonly signal: AbortSignal,
  ) {}

  async start(): Promise<void> {
    this.holding = (await this.consumer.info()).pending > 0;
    this.done = this.run().catch((e: unknown) => this.opts.log.error({ target: this.target.name, err: describeError(e) }, 'the held-change loop stopped; held changes wait for a restart'));
  }

  stopped(): Promise<void> {
    this.wakeUp?.();
    return this.done;
  }

  async pending(): Promise<number> {
    return (await this.consumer.info()).pending;
  }

  wake(): void {
    this.holding = true;
    this.wakeUp?.();
  }

  private async run(): Promise<void> {
    const first = this.opts.holdRetryMs ?? 5_000;
    const max = this.opts.holdRetryMaxMs ?? 300_000;
    while (!this.signal.aborted) {
      if (!this.holding) {
        await new Promise<void>((resolve) => { this.wakeUp = resolve; });
        this.wakeUp = undefined;
        continue;
      }
      const [d] = await this.consumer.fetch({ max: 1, expiresMs: 1_000, signal: this.signal });
      if (!d) {
        if ((await this.consumer.info()).pending === 0) this.holding = false;
        continue;
      }
      let change: QueuedChange;
      try {
        change = decodeQueuedChange(d.data);
      } catch (e) {
        this.opts.log.error({ target: this.target.name, err: describeError(e) }, 'a held change cannot be read; dropped');
        await d.terminate();
        continue;
      }
      const account = accountOf(change);
      try {
        const decision = await this.opts.scope.decide(account, this.target.name);
        await this.capture.publishDecided(this.target, account, change, decision);
        await d.ack();
        if (this.failures > 0) this.opts.log.info({ target: this.target.name }, 'scope can be decided again; held changes move on');
        this.failures = 0;
      } catch (e) {
        this.failures++;
        const delay = Math.min(max, first * 2 ** Math.min(this.failures - 1, 20));
        if (e instanceof ScopeUnavailable) {
          logEvent(this.opts.log, 6957, { target: this.target.name, account: account.samAccountName, changeId: change.changeId.toString('hex'), error: e.message, retryInMs: delay }, { quiet: this.failures > 1 });
        } else {
          this.opts.log.warn({ target: this.target.name, err: describeError(e), retryInMs: delay }, 'a held change could not be moved on; retrying');
        }
        await d.retryAfter(delay);
        await sleep(delay, undefined, { signal: this.signal }).catch(() => undefined);
      }
    }
  }
}
