import { readFileSync } from 'node:fs';
import { formatTime } from '../../core/change-time.ts';
import { recipientFromPem, seal, type RecipientKey } from '../../core/envelope.ts';
import { describeError, PwsyncError, UsageError } from '../../core/errors.ts';
import { isEventId } from '../../core/events.ts';
import type { TargetObject } from '../../core/extension.ts';
import type { Secret } from '../../core/secret.ts';
import type {
  Connector, ConnectorEnv, ConnectorKind, ObjectSource, RemoteApplier, RemoteOperation, WorkerBus,
} from '../contract.ts';
import type { RemoteSettings } from '../kinds-schema.ts';
import {
  decodeWire, encodeWire, operationBinding, PROTOCOL, workerSubject,
  type ObjectsReply, type ObjectsRequest, type SetReply, type SetRequest, type WireError, type WireOperation, type WorkerState,
} from './protocol.ts';

/** Longest one listing may run, page after page, before the join index gives up and retries. */
const LIST_PAGES_MAX = 100_000;

/**
 * A connector whose target is reached by a connector worker (`pwsync worker`) in another network:
 * the hub keeps the queue, the joins and latest-wins; the worker holds the target's credentials,
 * the password extension and a private key. Each password is re-sealed here for the worker's
 * public key, bound to the operation (its id names change, connector and object), so a worker can
 * open only its own connector's operations. Reads for joins are answered by the worker too.
 */
export class RemoteConnector implements Connector, ObjectSource, RemoteApplier {
  readonly kind = 'remote';
  private recipient?: RecipientKey;

  constructor(readonly name: string, private readonly settings: RemoteSettings, private readonly env: ConnectorEnv) {}

  private get bus(): WorkerBus {
    if (!this.env.bus) throw this.noBus();
    return this.env.bus;
  }

  private noBus(): UsageError {
    return new UsageError(`connector ${this.name}: kind remote reaches its worker through NATS, but the hub's broker is the embedded one; set broker.kind: nats (and run \`pwsync broker init\`)`);
  }

  /** Requests end a little before the connector's own timeout, so a late answer is not mistaken for the next call's. */
  private get timeoutMs(): number {
    return Math.max(1000, (this.env.timeoutMs ?? 30_000) - 500);
  }

  private subject(verb: 'set' | 'objects' | 'ping'): string {
    return workerSubject(this.bus.prefix, this.name, verb);
  }

  async open(): Promise<void> {
    if (!this.env.bus) throw this.noBus();
    const file = this.env.resolvePath(this.settings.publicKey);
    let pem: Buffer;
    try {
      pem = readFileSync(file);
    } catch (e) {
      throw new UsageError(`connector ${this.name}: cannot read the worker's public key ${file} (${describeError(e)}); copy the NAME.pub that \`pwsync keys generate\` wrote next to the worker`);
    }
    try {
      this.recipient = recipientFromPem(pem);
    } catch (e) {
      throw new UsageError(`connector ${this.name}: ${file} is not a P-256 public key (${describeError(e)}); use the worker's NAME.pub from \`pwsync keys generate\``);
    }
  }

  async close(): Promise<void> {
    // Nothing held: requests are made per call (heartbeats are recorded by the hub, hub/workers.ts).
  }

  /** The worker's own channel to the target is checked by the worker (requireSecureConnection there); here the password is sealed end to end and NATS runs over TLS. */
  securityLevel(): 'encrypted' {
    return 'encrypted';
  }

  async test(): Promise<string> {
    const s = await this.ping();
    return `worker ${s.worker} on ${s.host} (pid ${s.pid}) is connected, up since ${formatTime(s.startedAt)}; ${s.applied} set-operations applied, ${s.failed} failed, ${s.inFlight} in flight`;
  }

  /** The worker's state, asked now. */
  async ping(): Promise<WorkerState> {
    return decodeWire<WorkerState>(await this.bus.request(this.subject('ping'), encodeWire({ v: PROTOCOL }), Math.min(this.timeoutMs, 5000)), 'the worker\'s ping answer');
  }

  private async objects(req: ObjectsRequest): Promise<ObjectsReply> {
    const reply = decodeWire<ObjectsReply>(await this.bus.request(this.subject('objects'), encodeWire(req), this.timeoutMs), 'the worker\'s answer');
    if (reply.error) throw wireError(reply.error, this.name);
    return reply;
  }

  async attributes(): Promise<readonly string[]> {
    return (await this.objects({ v: PROTOCOL, op: 'attributes' })).attributes ?? [];
  }

  async version(): Promise<string> {
    return (await this.objects({ v: PROTOCOL, op: 'version' })).version ?? '';
  }

  async find(attribute: string, value: string, ignoreCase: boolean): Promise<TargetObject[]> {
    return (await this.objects({ v: PROTOCOL, op: 'find', attribute, value, ignoreCase })).objects ?? [];
  }

  /** Page by page: the worker reads its objects once per listing and hands them out in pages. */
  async *list(): AsyncIterable<TargetObject> {
    let listing: string | undefined;
    let offset = 0;
    for (let page = 0; page < LIST_PAGES_MAX; page++) {
      const reply = await this.objects({ v: PROTOCOL, op: 'list', offset, ...(listing ? { listing } : {}) });
      listing = reply.listing;
      for (const o of reply.objects ?? []) yield o;
      if (reply.next === undefined) return;
      offset = reply.next;
    }
    throw new PwsyncError(6940, `connector ${this.name}: the worker's listing did not end after ${LIST_PAGES_MAX} pages`);
  }

  async applyRemote(ops: readonly RemoteOperation[], open: (op: RemoteOperation) => Secret): Promise<Map<string, unknown>> {
    const outcomes = new Map<string, unknown>();
    const recipient = this.recipient;
    if (!recipient) throw new Error(`connector ${this.name} is not open`);
    const hubId = this.env.hubId ?? 'hub';
    const wire: WireOperation[] = [];
    for (const op of ops) {
      let password: Secret | undefined;
      try {
        password = open(op);
        const envelope = seal(recipient, operationBinding(op, this.name, hubId), password).toString('base64');
        wire.push({ opId: op.opId, changeId: op.changeId, changeTime: op.changeTime, objectId: op.objectId, account: op.account, envelope });
      } catch (e) {
        outcomes.set(op.opId, e);
      } finally {
        password?.dispose();
      }
    }
    for (const chunk of this.chunks(wire)) {
      const req: SetRequest = { v: PROTOCOL, hub: hubId, connector: this.name, ops: chunk };
      let reply: SetReply;
      try {
        reply = decodeWire<SetReply>(await this.bus.request(this.subject('set'), encodeWire(req), this.timeoutMs), 'the worker\'s answer');
      } catch (e) {
        for (const op of chunk) outcomes.set(op.opId, e);
        continue;
      }
      if (reply.error) {
        const err = wireError(reply.error, this.name, reply.worker);
        for (const op of chunk) outcomes.set(op.opId, err);
        continue;
      }
      const byId = new Map((reply.outcomes ?? []).map((o) => [o.opId, o]));
      for (const op of chunk) {
        const o = byId.get(op.opId);
        if (!o) outcomes.set(op.opId, new PwsyncError(6972, `connector ${this.name}: worker ${reply.worker} answered without operation ${op.opId}`, { retryable: true }));
        else outcomes.set(op.opId, o.ok ? undefined : wireError(o, this.name, reply.worker));
      }
    }
    return outcomes;
  }

  /** Operations in requests that fit NATS's largest message (a batch stays whole when it fits). */
  private *chunks(ops: WireOperation[]): Generator<WireOperation[]> {
    const budget = Math.floor(this.bus.maxPayload * 0.9) - 512;
    let chunk: WireOperation[] = [];
    let size = 0;
    for (const op of ops) {
      const n = Buffer.byteLength(JSON.stringify(op)) + 1;
      if (chunk.length > 0 && size + n > budget) {
        yield chunk;
        chunk = [];
        size = 0;
      }
      chunk.push(op);
      size += n;
    }
    if (chunk.length > 0) yield chunk;
  }
}

/** An outcome the worker reported, as the hub's typed error (a retryable one is retried by the hub's rules). */
function wireError(e: WireError, connector: string, worker?: string): PwsyncError {
  const eventId = isEventId(e.eventId) ? e.eventId : 6940;
  return new PwsyncError(eventId, `${worker ? `worker ${worker}` : `connector ${connector}'s worker`}: ${e.message}`, { retryable: e.retryable });
}

export const remoteKind: ConnectorKind<RemoteSettings> = {
  kind: 'remote',
  description: 'A target reached by a connector worker (`pwsync worker`) through NATS.',
  create: (name, settings, env) => new RemoteConnector(name, settings, env),
};
