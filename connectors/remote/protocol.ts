import { subjectToken } from '../../core/broker.ts';
import type { Binding } from '../../core/envelope.ts';
import type { AccountRef, TargetObject } from '../../core/extension.ts';
import type { RemoteOperation } from '../contract.ts';

/**
 * What a hub and a connector worker say to each other over NATS (core request-reply, never
 * stored). A worker only subscribes to its own connector's subjects, `<prefix>.worker.<connector>.*`,
 * and answers on the reply subject NATS gives it: its NATS user needs nothing else.
 *
 *   .set        hub → worker: set-operations, each password sealed for the worker's key; reply: outcomes
 *   .objects    hub → worker: reads for joins (attributes, version, find, list by pages)
 *   .ping       anyone → worker: its state (status, and a second worker checking it is alone)
 *   .heartbeat  worker → hubs: its state every few seconds
 */
export const PROTOCOL = 1;

export type WorkerVerb = 'set' | 'objects' | 'ping' | 'heartbeat';

export function workerSubject(prefix: string, connector: string, verb: WorkerVerb): string {
  return `${prefix}.worker.${subjectToken(connector)}.${verb}`;
}

/** Every heartbeat of every worker under this prefix. */
export function heartbeatWildcard(prefix: string): string {
  return `${prefix}.worker.*.heartbeat`;
}

/** The inbox a worker's own requests (its start-up ping) answer on: inside its connector's subjects. */
export function workerInboxPrefix(prefix: string, connector: string): string {
  return `${prefix}.worker.${subjectToken(connector)}.inbox`;
}

/**
 * The header of a password re-sealed for a worker (ARCHITECTURE.md's operation envelope):
 * changeId = operation id, domain = connector, samAccountName = the target object's id,
 * sourceHost = the hub that sealed it; the account's own ids in the remaining fields. The
 * operation id itself hashes change, connector and object, so the worker can recompute it.
 */
export function operationBinding(op: RemoteOperation, connector: string, hubId: string): Binding {
  return {
    changeId: Buffer.from(op.opId, 'hex'),
    changeTime: op.changeTime,
    domain: connector,
    samAccountName: op.objectId,
    objectGuid: op.account.objectGuid,
    objectSid: op.account.objectSid,
    upn: op.account.upn,
    dn: op.account.dn,
    sourceHost: hubId,
  };
}

export interface WireOperation {
  opId: string;
  changeId: string;
  changeTime: number;
  objectId: string;
  account: AccountRef;
  /** base64 of the envelope sealed for the worker. */
  envelope: string;
}

export interface SetRequest {
  v: number;
  hub: string;
  connector: string;
  ops: WireOperation[];
}

export interface WireError {
  eventId: number;
  retryable: boolean;
  message: string;
}

export type WireOutcome = { opId: string; ok: true } | ({ opId: string; ok: false } & WireError);

export interface SetReply {
  v: number;
  worker: string;
  outcomes?: WireOutcome[];
  /** The whole request was refused (wrong connector, unreadable). */
  error?: WireError;
}

export type ObjectsRequest =
  | { v: number; op: 'attributes' }
  | { v: number; op: 'version' }
  | { v: number; op: 'find'; attribute: string; value: string; ignoreCase: boolean }
  | { v: number; op: 'list'; listing?: string; offset: number };

export interface ObjectsReply {
  v: number;
  error?: WireError;
  attributes?: string[];
  version?: string;
  objects?: TargetObject[];
  /** list: the listing the pages belong to (ask for the next page with it), and where the next page starts. */
  listing?: string;
  next?: number;
}

/** What a worker says about itself (ping, heartbeat, `pwsync status --workers`). */
export interface WorkerState {
  v: number;
  worker: string;
  connector: string;
  host: string;
  pid: number;
  startedAt: number;
  /** When it last received set-operations or a read for joins. */
  lastRequestAt?: number;
  /** Set-operations it is applying now. */
  inFlight: number;
  applied: number;
  failed: number;
  /** When this state was sent. */
  at: number;
}

export const encodeWire = (v: unknown): Buffer => Buffer.from(JSON.stringify(v), 'utf8');

/** Parses a message; anything that is not a JSON object of this protocol version is refused. */
export function decodeWire<T extends { v: number }>(data: Uint8Array, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch {
    throw new Error(`${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || (value as { v?: unknown }).v !== PROTOCOL) {
    throw new Error(`${what} is not pwsync worker protocol ${PROTOCOL} (the hub and the worker must run the same pwsync release)`);
  }
  return value as T;
}
