import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { natsBrokerOptions } from '../config/broker.ts';
import type { LoadedWorkerConfig } from '../config/load.ts';
import type { ConnectorConfig, WorkerConnectorConfig } from '../config/schema.ts';
import { isObjectSource, type Connector, type ObjectSource } from '../connectors/contract.ts';
import {
  decodeWire, encodeWire, PROTOCOL, workerInboxPrefix, workerSubject,
  type ObjectsReply, type ObjectsRequest, type SetReply, type SetRequest, type WireError, type WireOutcome, type WorkerState,
} from '../connectors/remote/protocol.ts';
import { connectNats } from '../core/broker-nats.ts';
import { describeError, isPwsyncError, PwsyncError, UsageError } from '../core/errors.ts';
import type { TargetObject } from '../core/extension.ts';
import type { Secret } from '../core/secret.ts';
import { natsWorkerBus } from '../core/nats-bus.ts';
import { applyOpened, asPwsyncError } from '../hub/apply.ts';
import type { OperationRecord } from '../hub/records.ts';
import { loadKeyring } from '../hub/service.ts';
import { closeTarget, openTarget, type Target } from '../hub/targets.ts';
import { HEARTBEAT_MS } from '../hub/workers.ts';
import { openForWorker } from './open.ts';

export interface RunningWorker {
  state(): WorkerState;
  stop(): Promise<void>;
}

/** How long a listing for joins stays readable by pages, and how many are kept at once. */
const LISTING_TTL_MS = 5 * 60_000;
const LISTINGS_MAX = 4;
const PAGE_OBJECTS = 500;

/** The connector this worker runs: the one named, or the only one in the file. */
export function pickConnector(config: LoadedWorkerConfig, name: string | undefined): WorkerConnectorConfig {
  const names = config.connectors.map((c) => c.name);
  if (name === undefined) {
    if (config.connectors.length === 1) return config.connectors[0]!;
    throw new UsageError(`${config.sourceFile} has ${names.length} connectors (${names.join(', ')}): name the one to run with --connector NAME`);
  }
  const found = config.connectors.find((c) => c.name === name);
  if (!found) throw new UsageError(`--connector ${name}: no such connector in ${config.sourceFile}; it has ${names.join(', ')}`);
  return found;
}

/**
 * A connector worker: runs one connector (and its password extension) next to its target and only
 * connects out, to NATS. It answers its connector's subjects: set-operations a hub re-sealed for
 * its key, reads for the hub's joins, and pings; and says every few seconds that it is alive. It
 * keeps no queue: a hub holds each set-operation until the worker's answer, so a worker killed at
 * any moment loses nothing (the hub retries what was not answered).
 */
export async function startWorker(config: LoadedWorkerConfig, connectorName: string | undefined, log: Logger): Promise<RunningWorker> {
  const c = pickConnector(config, connectorName);
  const wlog = log.child({ worker: config.worker.id, connector: c.name });
  const keyring = loadKeyring(config.worker.keys);
  const options = natsBrokerOptions(config, { log: wlog });
  const prefix = options.prefix ?? 'pwsync';
  const nc = await connectNats({ ...options, inboxPrefix: workerInboxPrefix(prefix, c.name) }, options.servers, options.requestTimeoutMs ?? 5000);
  let target: Target | undefined;
  try {
    await checkAlone(nc, prefix, c.name, options.servers);
    // The hub has the join rules and retries; a worker applies and answers.
    const asHub: ConnectorConfig = { ...c, join: [], joinRefresh: 0, retry: { count: 0, interval: 0, failedWhenReachable: false, probeEvery: 0 } };
    target = await openTarget(asHub, config.baseDir, undefined, wlog);
    const worker = new Worker(config.worker.id, c, target, nc, prefix, (op) => openForWorker(op, keyring, c.name), wlog);
    await worker.listen(options.servers);
    wlog.info({ servers: options.servers, subjects: workerSubject(prefix, c.name, 'set').replace(/\.set$/, '.*') }, 'connector worker started');
    const t = target;
    return {
      state: () => worker.state(),
      stop: async () => {
        await worker.stop(config.worker.shutdownGrace);
        await closeTarget(t).catch((e: unknown) => wlog.warn({ err: describeError(e) }, 'closing the connector failed'));
        await nc.close().catch(() => undefined);
        wlog.info('connector worker stopped');
      },
    };
  } catch (e) {
    if (target) await closeTarget(target).catch(() => undefined);
    await nc.close().catch(() => undefined);
    throw e;
  }
}

/** Two workers for one connector could set one object out of order: the second one refuses to start. */
async function checkAlone(nc: NatsConnection, prefix: string, connector: string, servers: readonly string[]): Promise<void> {
  const bus = natsWorkerBus(nc, prefix, servers);
  let answer: Buffer;
  try {
    answer = await bus.request(workerSubject(prefix, connector, 'ping'), encodeWire({ v: PROTOCOL }), 1500);
  } catch (e) {
    if (isPwsyncError(e) && e.eventId === 6972) return; // nobody answered: alone
    // Its reply inbox lies inside the connector's subjects: a user without them is refused here first.
    if (isPwsyncError(e) && e.eventId === 6971) throw refusedByNats(servers, connector, prefix, e.cause ?? e);
    throw e;
  }
  let who = 'another worker';
  try {
    const s = decodeWire<WorkerState>(answer, 'ping answer');
    who = `worker ${s.worker} on ${s.host} (pid ${s.pid})`;
  } catch { /* an answer is enough */ }
  throw new UsageError(`${who} already runs connector ${connector}: run one worker per connector (stop that one first, or give this one another connector)`);
}

class Worker {
  private readonly subs: Subscription[] = [];
  private readonly startedAt = Date.now();
  private lastRequestAt?: number;
  private inFlight = 0;
  private applied = 0;
  private failed = 0;
  private readonly running = new Set<Promise<unknown>>();
  /** The last set of each object still running: the next one for that object waits for it. */
  private readonly objectTail = new Map<string, Promise<unknown>>();
  private readonly slots: { free: number; waiting: Array<() => void> };
  private readonly listings = new Map<string, { objects: TargetObject[]; at: number }>();
  private heartbeat?: NodeJS.Timeout;

  constructor(
    private readonly id: string,
    private readonly c: WorkerConnectorConfig,
    private readonly target: Target,
    private readonly nc: NatsConnection,
    private readonly prefix: string,
    private readonly openOp: (op: OperationRecord) => Secret,
    private readonly log: Logger,
  ) {
    this.slots = { free: c.concurrency, waiting: [] };
  }

  state(): WorkerState {
    return {
      v: PROTOCOL, worker: this.id, connector: this.c.name, host: os.hostname(), pid: process.pid, startedAt: this.startedAt,
      ...(this.lastRequestAt ? { lastRequestAt: this.lastRequestAt } : {}),
      inFlight: this.inFlight, applied: this.applied, failed: this.failed, at: Date.now(),
    };
  }

  /**
   * Subscribes to the connector's subjects. NATS refuses a subscription the worker's user has no
   * right to with an error that closes it: checked here, so a worker started with another
   * connector's credentials stops at once and says why (6973).
   */
  async listen(servers: readonly string[]): Promise<void> {
    const handlers: Array<['set' | 'objects' | 'ping', (m: Msg) => Promise<void>]> = [
      ['set', (m) => this.onSet(m)], ['objects', (m) => this.onObjects(m)], ['ping', async (m) => { m.respond(encodeWire(this.state())); }],
    ];
    for (const [verb, handle] of handlers) {
      const subject = workerSubject(this.prefix, this.c.name, verb);
      this.subs.push(this.nc.subscribe(subject, {
        callback: (err, m) => {
          if (err) return;
          const p = handle(m).catch((e: unknown) => this.log.error({ verb, err: describeError(e) }, 'a request could not be answered'));
          this.running.add(p);
          void p.finally(() => this.running.delete(p));
        },
      }));
    }
    await this.nc.flush();
    // The server answers a refused SUB with an error before the flush's PONG; the client closes that subscription with it.
    const refused = await Promise.race([
      ...this.subs.map((s) => s.closed.then((r) => (r instanceof Error ? r : new Promise<never>(() => undefined)))),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 300)),
    ]);
    if (refused instanceof Error) throw refusedByNats(servers, this.c.name, this.prefix, refused);
    const beat = (): void => {
      this.nc.publish(workerSubject(this.prefix, this.c.name, 'heartbeat'), encodeWire(this.state()));
    };
    beat();
    this.heartbeat = setInterval(beat, HEARTBEAT_MS);
  }

  async stop(graceMs: number): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    for (const s of this.subs) s.unsubscribe();
    await Promise.race([Promise.allSettled([...this.running]), new Promise((r) => setTimeout(r, graceMs).unref())]);
  }

  private async onSet(m: Msg): Promise<void> {
    this.lastRequestAt = Date.now();
    let req: SetRequest;
    try {
      req = decodeWire<SetRequest>(m.data, 'set request');
      if (!Array.isArray(req.ops)) throw new Error('set request without operations');
    } catch (e) {
      this.answer(m, { v: PROTOCOL, worker: this.id, error: refusal(describeError(e)) });
      return;
    }
    if (req.connector !== this.c.name) {
      this.log.error({ eventId: 6973, hub: req.hub, connector: req.connector }, 'set-operations of another connector were sent to this worker: refused');
      this.answer(m, { v: PROTOCOL, worker: this.id, error: refusal(`operations of connector ${req.connector} were sent to the worker of connector ${this.c.name}`) });
      return;
    }
    const ops: OperationRecord[] = req.ops.map((o) => ({ ...o, connector: this.c.name }));
    this.inFlight += ops.length;
    try {
      const outcomes = await this.inOrder(ops, () => this.apply(ops));
      const wire: WireOutcome[] = ops.map((op) => {
        const o = outcomes.get(op.opId);
        if (o === undefined && outcomes.has(op.opId)) return { opId: op.opId, ok: true };
        const e = asPwsyncError(o ?? new Error('no outcome recorded'));
        return { opId: op.opId, ok: false, eventId: e.eventId, retryable: e.retryable, message: e.message };
      });
      const ok = wire.filter((w) => w.ok).length;
      this.applied += ok;
      this.failed += wire.length - ok;
      for (const w of wire) {
        if (!w.ok) this.log.warn({ eventId: w.eventId, opId: w.opId, retryable: w.retryable, reason: w.message }, 'set-operation not applied');
      }
      this.log.info({ hub: req.hub, ops: ops.length, applied: ok }, 'set-operations applied');
      this.answer(m, { v: PROTOCOL, worker: this.id, outcomes: wire });
    } finally {
      this.inFlight -= ops.length;
    }
  }

  private async apply(ops: OperationRecord[]): Promise<Map<string, unknown>> {
    const r = this.target.refusal;
    if (r) return new Map(ops.map((op) => [op.opId, new PwsyncError(r.eventId, r.reason)]));
    return applyOpened(this.target, ops, this.openOp);
  }

  /**
   * Runs `fn` once every earlier request touching the same objects has finished, and within the
   * connector's concurrency: an object is never set twice at once and its sets keep their order,
   * even when a hub gave up waiting for an earlier answer and sent the next change.
   */
  private async inOrder<T>(ops: readonly OperationRecord[], fn: () => Promise<T>): Promise<T> {
    const before = [...new Set(ops.map((o) => this.objectTail.get(o.objectId)).filter((p): p is Promise<unknown> => p !== undefined))];
    const run = (async () => {
      await Promise.allSettled(before);
      await this.acquire();
      try {
        return await fn();
      } finally {
        this.release();
      }
    })();
    for (const o of ops) this.objectTail.set(o.objectId, run);
    try {
      return await run;
    } finally {
      for (const o of ops) if (this.objectTail.get(o.objectId) === run) this.objectTail.delete(o.objectId);
    }
  }

  private acquire(): Promise<void> {
    if (this.slots.free > 0) {
      this.slots.free--;
      return Promise.resolve();
    }
    return new Promise((r) => this.slots.waiting.push(r));
  }

  private release(): void {
    const next = this.slots.waiting.shift();
    if (next) next();
    else this.slots.free++;
  }

  private async onObjects(m: Msg): Promise<void> {
    this.lastRequestAt = Date.now();
    let reply: ObjectsReply;
    try {
      const req = decodeWire<ObjectsRequest>(m.data, 'objects request');
      const source = this.source();
      switch (req.op) {
        case 'attributes':
          reply = { v: PROTOCOL, attributes: [...await source.attributes()] };
          break;
        case 'version':
          reply = { v: PROTOCOL, version: await source.version() };
          break;
        case 'find':
          reply = { v: PROTOCOL, objects: await source.find(String(req.attribute), String(req.value), req.ignoreCase === true) };
          break;
        case 'list':
          reply = await this.page(source, req.listing, Number(req.offset) || 0);
          break;
        default:
          throw new UsageError(`unknown objects request ${JSON.stringify((req as { op?: unknown }).op)}`);
      }
    } catch (e) {
      const err = isPwsyncError(e) ? e : e instanceof UsageError ? new PwsyncError(6973, e.message) : asPwsyncError(e);
      reply = { v: PROTOCOL, error: { eventId: err.eventId, retryable: err.retryable, message: err.message } };
    }
    this.answer(m, reply);
  }

  private source(): Connector & ObjectSource {
    const c = this.target.connector;
    if (!isObjectSource(c)) throw new PwsyncError(6973, `connector ${this.c.name} (kind ${this.c.kind}) cannot list its objects, so the hub cannot join accounts to it`);
    return c;
  }

  /** One page of a listing: the first page reads every object once; the rest are served from that read. */
  private async page(source: ObjectSource, listing: string | undefined, offset: number): Promise<ObjectsReply> {
    const now = Date.now();
    for (const [id, l] of this.listings) if (now - l.at > LISTING_TTL_MS) this.listings.delete(id);
    let id = listing;
    let entry = id ? this.listings.get(id) : undefined;
    if (!entry) {
      if (id !== undefined) throw new PwsyncError(6940, `listing ${id} has expired or this worker restarted: the hub reads the objects again`);
      const objects: TargetObject[] = [];
      for await (const o of source.list()) objects.push(o);
      id = randomUUID();
      entry = { objects, at: now };
      this.listings.set(id, entry);
      while (this.listings.size > LISTINGS_MAX) this.listings.delete(this.listings.keys().next().value!);
    }
    const budget = Math.floor((this.nc.info?.max_payload ?? 1024 * 1024) * 0.8);
    const objects: TargetObject[] = [];
    let size = 0;
    let i = offset;
    for (; i < entry.objects.length && objects.length < PAGE_OBJECTS; i++) {
      const n = Buffer.byteLength(JSON.stringify(entry.objects[i]));
      if (objects.length > 0 && size + n > budget) break;
      objects.push(entry.objects[i]!);
      size += n;
    }
    if (i >= entry.objects.length) this.listings.delete(id!);
    return { v: PROTOCOL, listing: id!, objects, ...(i < entry.objects.length ? { next: i } : {}) };
  }

  private answer(m: Msg, reply: SetReply | ObjectsReply): void {
    if (!m.reply) return;
    m.respond(encodeWire(reply));
  }
}

function refusedByNats(servers: readonly string[], connector: string, prefix: string, cause: unknown): PwsyncError {
  return new PwsyncError(6973, `NATS at ${servers.join(', ')} refused this worker the subjects of connector ${connector} (${describeError(cause)}): ` +
    'the NATS user in broker.user must be the one made for this connector (publish and subscribe on ' +
    `${workerSubject(prefix, connector, 'set').replace(/\.set$/, '.>')}, allow_responses)`, { cause, retryable: false });
}

function refusal(message: string): WireError {
  return { eventId: 6973, retryable: false, message };
}
