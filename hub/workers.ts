import type { Logger } from 'pino';
import type { KvStore } from '../core/broker.ts';
import { describeError } from '../core/errors.ts';
import type { WorkerBus } from '../core/worker-bus.ts';
import {
  decodeWire, encodeWire, heartbeatWildcard, PROTOCOL, workerSubject, type WorkerState,
} from '../connectors/remote/protocol.ts';
import { decode, encode, keyPart } from './records.ts';

/** How often a worker says it is alive. */
export const HEARTBEAT_MS = 5_000;

/** What `pwsync status --workers` shows for one remote connector. */
export interface WorkerView {
  connector: string;
  connected: boolean;
  /** From a ping answered now, else the last heartbeat a hub recorded. */
  state?: WorkerState;
  /** When a hub last heard the worker. */
  lastSeen?: number;
}

/**
 * Records every worker's heartbeat in the `workers` bucket (each hub does; the writes are the same),
 * so status can say when a worker that is gone was last heard. Returns the unsubscribe.
 */
export function recordWorkerHeartbeats(bus: WorkerBus, kv: KvStore, log: Logger): () => void {
  return bus.subscribe(heartbeatWildcard(bus.prefix), (_subject, data) => {
    let state: WorkerState;
    try {
      state = decodeWire<WorkerState>(data, 'heartbeat');
    } catch (e) {
      log.warn({ err: describeError(e) }, 'ignoring a heartbeat that is not a worker\'s');
      return;
    }
    kv.put(keyPart(state.connector), encode({ ...state, receivedAt: Date.now() })).catch((e: unknown) => {
      log.debug({ err: describeError(e) }, 'cannot record a worker heartbeat');
    });
  });
}

/** Each remote connector's worker: asked now (ping), else what the last heartbeat said. */
export async function workerViews(connectors: readonly string[], bus: WorkerBus, kv: KvStore, now = Date.now()): Promise<WorkerView[]> {
  return Promise.all(connectors.map(async (connector) => {
    const stored = await kv.get(keyPart(connector));
    const last = stored ? decode<WorkerState & { receivedAt: number }>(stored.value) : undefined;
    try {
      const reply = await bus.request(workerSubject(bus.prefix, connector, 'ping'), encodeWire({ v: PROTOCOL }), 3000);
      const state = decodeWire<WorkerState>(reply, 'ping answer');
      return { connector, connected: true, state, lastSeen: now };
    } catch {
      return {
        connector, connected: false,
        ...(last ? { state: last, lastSeen: last.receivedAt } : {}),
      };
    }
  }));
}
