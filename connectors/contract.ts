import type { Logger } from 'pino';
import type {
  ExtensionConnection, OperationContext, TargetObject,
} from '../core/extension.ts';
import type { Secret } from '../core/secret.ts';
import type { WorkerBus } from '../core/worker-bus.ts';

export type { WorkerBus } from '../core/worker-bus.ts';

/**
 * The Connector contract (a management agent). Each capability is its own small interface and
 * the hub asks "can this connector do X?" with a type guard, never a flag from config.
 */

/** How the channel to the connected system is protected; `plain` is refused for passwords when
 *  the connector requires a secure connection. `local` is a file on this host. */
export type SecurityLevel = 'encrypted' | 'local' | 'plain';

export interface Connector {
  readonly name: string;
  readonly kind: string;
  open(): Promise<void>;
  close(): Promise<void>;
  securityLevel(): SecurityLevel;
  /** Reachability and settings checked against the real system (`pwsync connector test`). */
  test(): Promise<string>;
}

/** Objects for joins. */
export interface ObjectSource {
  list(): AsyncIterable<TargetObject>;
  /** Objects whose `attribute` equals `value` (compared case-insensitively when asked). */
  find(attribute: string, value: string, ignoreCase: boolean): Promise<TargetObject[]>;
  /** A token that changes whenever the objects may have changed (file: mtime and size). */
  version(): Promise<string>;
  /** The attribute names objects can have, to check join rules at start-up. */
  attributes(): Promise<readonly string[]>;
}

/**
 * Objects read incrementally (LDAP: modifyTimestamp or uSNChanged): the join index asks what
 * changed since its last read instead of reading every object again for each change.
 */
export interface IncrementalObjectSource {
  /**
   * Every object (`since` undefined; `complete` true), or the objects added, changed or renamed
   * since the token of an earlier answer. `removed` holds ids the system reports as deleted; an
   * object deleted without a trace stays until the next complete read (the join index does one
   * periodically, and whenever a rule matches more than one object).
   */
  changedSince(since: string | undefined): Promise<ObjectDelta>;
}

export interface ObjectDelta {
  /** Hand back to the next changedSince. */
  readonly token: string;
  readonly complete: boolean;
  readonly objects: readonly TargetObject[];
  readonly removed: readonly string[];
}

export function isIncrementalObjectSource(c: ObjectSource): c is ObjectSource & IncrementalObjectSource {
  return typeof (c as Partial<IncrementalObjectSource>).changedSince === 'function';
}

/** Sets passwords natively (LDAP, AD). */
export interface NativePasswordSetter {
  setPassword(object: TargetObject, password: Secret, ctx: OperationContext): Promise<void>;
  changePassword?(object: TargetObject, oldPassword: Secret, newPassword: Secret, ctx: OperationContext): Promise<void>;
}

/** Hands a connection to a password extension for a batch (files, DSML, databases). */
export interface ExtensionHost {
  /** Opens a connection for one batch; `release` ends it (after the extension's endConnection). */
  connect(): Promise<{ connection: ExtensionConnection; release(): Promise<void> }>;
}

export function isObjectSource(c: Connector): c is Connector & ObjectSource {
  return typeof (c as Partial<ObjectSource>).list === 'function'
    && typeof (c as Partial<ObjectSource>).find === 'function';
}

export function isNativePasswordSetter(c: Connector): c is Connector & NativePasswordSetter {
  return typeof (c as Partial<NativePasswordSetter>).setPassword === 'function';
}

export function isExtensionHost(c: Connector): c is Connector & ExtensionHost {
  return typeof (c as Partial<ExtensionHost>).connect === 'function';
}

/**
 * Set-operations applied somewhere else (a connector worker): the connector gets each operation's
 * password only through `open`, which hands a Secret for the moment it is re-sealed.
 */
export interface RemoteApplier {
  applyRemote(ops: readonly RemoteOperation[], open: (op: RemoteOperation) => Secret): Promise<Map<string, unknown>>;
}

/** One set-operation as a remote applier sees it (hub/records.ts OperationRecord without the envelope). */
export interface RemoteOperation {
  readonly opId: string;
  readonly changeId: string;
  readonly changeTime: number;
  readonly objectId: string;
  readonly account: OperationContext['account'];
}

export function isRemoteApplier(c: Connector): c is Connector & RemoteApplier {
  return typeof (c as Partial<RemoteApplier>).applyRemote === 'function';
}

export interface ConnectorEnv {
  readonly log: Logger;
  resolvePath(p: string): string;
  /** The target's requireSecureConnection (default true): false lets a connector open a plain channel. */
  readonly requireSecureConnection?: boolean;
  /** The connector's timeout (connectors[].timeout), for a connector that sets its own deadlines. */
  readonly timeoutMs?: number;
  /** Set when the hub's broker is NATS: the `remote` kind talks to its worker through it. */
  readonly bus?: WorkerBus;
  /** This hub's id (hub.id), for messages that say who asked. */
  readonly hubId?: string;
}

/** One connector kind, registered by name: its connection settings are validated by the config
 *  schema (config/schema.ts composes each kind's `connection` schema). */
export interface ConnectorKind<Settings = unknown> {
  readonly kind: string;
  readonly description: string;
  create(name: string, settings: Settings, env: ConnectorEnv): Connector;
}
