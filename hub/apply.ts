import { isExtensionHost, isNativePasswordSetter, isRemoteApplier } from '../connectors/contract.ts';
import { bindingMismatch, open, type Keyring } from '../core/envelope.ts';
import {
  ObjectNotFoundError, TargetUnavailableError, type OperationContext, type PasswordExtension, type TargetObject,
} from '../core/extension.ts';
import { PwsyncError } from '../core/errors.ts';
import { checkPasswordPolicy } from '../core/policy.ts';
import type { Secret } from '../core/secret.ts';
import type { OperationRecord } from './records.ts';
import type { Target } from './targets.ts';

/** The outcome of one set-operation in a batch: undefined for success, else what was thrown. */
export type Outcomes = Map<string, unknown>;

/**
 * Opens an operation's envelope (only here, in the worker) and checks that its header is the
 * change the operation claims to carry, so a payload cannot be replayed onto another account.
 */
function openFor(op: OperationRecord, keyring: Keyring): ReturnType<typeof open> {
  const opened = open(Buffer.from(op.envelope, 'base64'), keyring);
  const a = op.account;
  const field = bindingMismatch(opened.header, {
    changeId: Buffer.from(op.changeId, 'hex'), changeTime: op.changeTime, domain: opened.header.domain,
    samAccountName: a.samAccountName, objectGuid: a.objectGuid, objectSid: a.objectSid, upn: a.upn, dn: a.dn,
    sourceHost: opened.header.sourceHost,
  });
  if (field || opened.header.domain.toLowerCase() !== a.domain.toLowerCase()) {
    opened.password.dispose();
    throw new PwsyncError(6946, `the sealed password belongs to another ${field ?? 'domain'} than operation ${op.opId}`);
  }
  return opened;
}

function contextOf(op: OperationRecord, t: Target): OperationContext {
  return {
    operationId: op.opId, changeId: op.changeId, changeTime: op.changeTime, connector: t.config.name,
    account: op.account, log: t.log.child({ opId: op.opId, changeId: op.changeId }),
  };
}

/**
 * Applies a batch of set-operations to one connector: between one beginConnection and one
 * endConnection for an extension, one call each for a native connector. Each password is a
 * Secret only for the length of its set call, then wiped.
 */
export async function applyBatch(t: Target, ops: readonly OperationRecord[], keyring: Keyring): Promise<Outcomes> {
  return applyOpened(t, ops, (op) => openFor(op, keyring).password);
}

/**
 * applyBatch with the opening of each envelope given: the hub opens what a notifier sealed, a
 * connector worker what a hub re-sealed for it (worker/open.ts). `open` is called only at the
 * moment a password is set (or re-sealed), and its Secret is disposed right after.
 */
export async function applyOpened(t: Target, ops: readonly OperationRecord[], open: (op: OperationRecord) => Secret): Promise<Outcomes> {
  const outcomes: Outcomes = new Map();
  const connector = t.connector;
  if (isRemoteApplier(connector)) {
    // Re-sealed for the worker, which checks the policy again with its own settings.
    const byId = new Map(ops.map((op) => [op.opId, op]));
    const checked = (op: { opId: string }): Secret => {
      const full = byId.get(op.opId)!;
      const password = open(full);
      try {
        checkPasswordPolicy(t.config.policy, password, full.account.samAccountName, t.config.name);
      } catch (e) {
        password.dispose();
        throw e;
      }
      return password;
    };
    try {
      return await connector.applyRemote(ops, checked);
    } catch (e) {
      for (const op of ops) outcomes.set(op.opId, e);
      return outcomes;
    }
  }
  if (t.extension && isExtensionHost(connector)) {
    // Each batch borrows its own instance (targets.ts): its connection stays its own.
    const ext = t.idleExtensions ? t.idleExtensions.pop() : t.extension;
    if (!ext) {
      const e = new TargetUnavailableError(`connector ${t.config.name}: more batches at once than extension instances (connectors[].concurrency)`);
      for (const op of ops) outcomes.set(op.opId, e);
      return outcomes;
    }
    try {
      return await applyWithExtension(t, ext, ops, open, outcomes);
    } finally {
      t.idleExtensions?.push(ext);
    }
  }
  if (isNativePasswordSetter(connector)) {
    for (const op of ops) {
      let password;
      try {
        password = open(op);
        checkPasswordPolicy(t.config.policy, password, op.account.samAccountName, t.config.name);
        await connector.setPassword({ id: op.objectId, attributes: {} }, password, contextOf(op, t));
        outcomes.set(op.opId, undefined);
      } catch (e) {
        outcomes.set(op.opId, e);
      } finally {
        password?.dispose();
      }
    }
    return outcomes;
  }
  for (const op of ops) outcomes.set(op.opId, new PwsyncError(6922, `connector ${t.config.name} cannot set passwords`));
  return outcomes;
}

/** One batch through one extension instance: beginConnection, the sets, endConnection. */
async function applyWithExtension(t: Target, ext: PasswordExtension, ops: readonly OperationRecord[], open: (op: OperationRecord) => Secret, outcomes: Outcomes): Promise<Outcomes> {
  const connector = t.connector;
  if (!isExtensionHost(connector)) throw new Error('applyWithExtension needs an extension host');
  let handle: Awaited<ReturnType<typeof connector.connect>>;
  try {
    handle = await connector.connect();
  } catch (e) {
    for (const op of ops) outcomes.set(op.opId, e);
    return outcomes;
  }
  try {
    await ext.beginConnection?.(handle.connection);
    const connection = handle.connection;
    await eachLimited(ops, ext.concurrentSets ?? 1, async (op) => {
      let password;
      try {
        const object: TargetObject = connection.kind === 'records'
          ? connection.records.get(op.objectId) ?? throwNotFound(op.objectId, connection.records.location)
          : { id: op.objectId, attributes: {} };
        password = open(op);
        checkPasswordPolicy(t.config.policy, password, op.account.samAccountName, t.config.name);
        await ext.setPassword!(object, password, contextOf(op, t));
        outcomes.set(op.opId, undefined);
      } catch (e) {
        outcomes.set(op.opId, e);
      } finally {
        password?.dispose();
      }
    });
    try {
      await ext.endConnection?.();
    } catch (e) {
      for (const [id, o] of outcomes) if (o === undefined) outcomes.set(id, e);
    }
  } catch (e) {
    for (const op of ops) if (outcomes.get(op.opId) === undefined) outcomes.set(op.opId, e);
  } finally {
    await handle.release().catch((e: unknown) => t.log.warn({ err: String(e) }, 'releasing the connection failed'));
  }
  return outcomes;
}

/** Runs `fn` over `items` with at most `limit` at once (a batch never holds one object twice). */
export async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
}

function throwNotFound(id: string, where: string): never {
  throw new ObjectNotFoundError(id, where);
}

/** Anything that is not a PwsyncError is an I/O or programming failure: retried, not lost. */
export function asPwsyncError(e: unknown): PwsyncError {
  if (e instanceof PwsyncError) return e;
  return new TargetUnavailableError(e instanceof Error ? e.message : 'unknown failure', { cause: e });
}
