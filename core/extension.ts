import type { Logger } from 'pino';
import { PwsyncError } from './errors.ts';
import type { Secret } from './secret.ts';

/**
 * The password extension contract (MIIS: IMAExtensibleExtensionPassword). It lives in core/ so
 * that connectors, extensions and the hub share it without importing each other; extension
 * authors import it from the public entry `extensions/sdk/mod.ts` (`pwsync/extension`).
 */

/** One object in a connected system, as joins and set-operations see it. */
export interface TargetObject {
  /** The connector's anchor: stable, unique within the connector (a DN, a key column). */
  readonly id: string;
  readonly attributes: Readonly<Record<string, string>>;
}

/** Who the password belongs to on the domain side. */
export interface AccountRef {
  readonly domain: string;
  readonly samAccountName: string;
  readonly objectGuid: string;
  readonly objectSid: string;
  readonly upn: string;
  readonly dn: string;
}

export interface OperationContext {
  readonly operationId: string;
  readonly changeId: string;
  readonly changeTime: number;
  readonly connector: string;
  readonly account: AccountRef;
  readonly log: Logger;
}

/**
 * The records of a file or DSML connector, as an extension sees them between beginConnection and
 * endConnection. `set` stages a value; `commit` writes the whole file atomically (temp file,
 * fsync, rename), so a crash leaves the old file or the new one, never a torn one.
 */
export interface RecordSet {
  /** Where the records live, for messages (a path). */
  readonly location: string;
  get(id: string): TargetObject | undefined;
  /** Throws ObjectNotFoundError when no record has that id. */
  set(id: string, attribute: string, value: string): void;
  commit(): Promise<void>;
}

/**
 * A database session as an extension sees it between beginConnection and endConnection
 * (connectors/sql/contract.ts SqlSession): statements with named `:params`, bound by the driver.
 */
export interface SqlStatements {
  readonly dialect: string;
  query(sql: string, params?: Readonly<Record<string, string | number | bigint | boolean | Buffer | null>>): Promise<{ readonly rows: ReadonlyArray<Readonly<Record<string, unknown>>>; readonly rowCount: number }>;
  setLoginPassword(login: string, password: Secret, options?: Readonly<Record<string, string>>): Promise<void>;
}

/** What a connector hands its extension in beginConnection; later kinds add members (HTTP). */
export type ExtensionConnection =
  | { readonly kind: 'records'; readonly records: RecordSet }
  | { readonly kind: 'sql'; readonly session: SqlStatements };

/** The records of a file connection; anything else is a programming error in the caller. */
export function recordsOf(connection: ExtensionConnection): RecordSet {
  if (connection.kind !== 'records') throw new TypeError(`a ${connection.kind} connection has no records`);
  return connection.records;
}

export interface ExtensionEnv {
  readonly connector: string;
  readonly log: Logger;
  /** Resolves a path from the YAML relative to the YAML file's folder. */
  resolvePath(p: string): string;
  /**
   * Reads a secret setting written `{fromFile: PATH}` or `{fromEnv: NAME}`; an inline value is
   * refused with an error naming the setting. The caller owns the Secret (dispose it).
   */
  resolveSecret(ref: unknown, setting: string): Secret;
}

export interface PasswordExtension {
  /**
   * How many setPassword calls of one batch may run at once (default 1: one after another). An
   * extension whose work waits on something else (a hash on the thread pool, a remote call) and
   * whose connection tolerates it declares more.
   */
  readonly concurrentSets?: number;
  init?(settings: Readonly<Record<string, unknown>>, env: ExtensionEnv): void | Promise<void>;
  beginConnection?(connection: ExtensionConnection): void | Promise<void>;
  setPassword?(object: TargetObject, password: Secret, ctx: OperationContext): void | Promise<void>;
  changePassword?(object: TargetObject, oldPassword: Secret, newPassword: Secret, ctx: OperationContext): void | Promise<void>;
  /** Ends the batch: commit here. A throw fails every set-operation of the batch. */
  endConnection?(): void | Promise<void>;
  close?(): void | Promise<void>;
}

/** The module an extension file exports as default: a factory, one instance per connector. */
export type ExtensionFactory = () => PasswordExtension;

/** The password does not satisfy the target's policy (6927, never retried). */
export class PolicyViolationError extends PwsyncError {
  constructor(readonly reason: string, options?: { cause?: unknown }) {
    super(6927, `password refused by policy: ${reason}`, options);
    this.name = 'PolicyViolationError';
  }
}

/** The joined object does not exist in the connected system (6923, never retried). */
export class ObjectNotFoundError extends PwsyncError {
  constructor(readonly objectId: string, where: string, options?: { cause?: unknown }) {
    super(6923, `no object ${JSON.stringify(objectId)} in ${where}`, options);
    this.name = 'ObjectNotFoundError';
  }
}

/** The extension cannot do what was asked (6928, never retried). */
export class UnsupportedOperationError extends PwsyncError {
  constructor(operation: string, options?: { cause?: unknown }) {
    super(6928, `the password extension does not support ${operation}`, options);
    this.name = 'UnsupportedOperationError';
  }
}

/** The connected system is down, busy or slow: retried at the connector's retry interval. */
export class TargetUnavailableError extends PwsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(6940, message, { ...options, retryable: true });
    this.name = 'TargetUnavailableError';
  }
}
