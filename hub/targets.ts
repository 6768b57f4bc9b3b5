import type { Logger } from 'pino';
import path from 'node:path';
import {
  isExtensionHost, isNativePasswordSetter, isObjectSource, isRemoteApplier, type Connector, type ObjectSource, type WorkerBus,
} from '../connectors/contract.ts';
import { createConnector } from '../connectors/registry.ts';
import { wrapConnector } from '../connectors/wrap.ts';
import type { KvStore } from '../core/broker.ts';
import { subjectToken } from '../core/broker.ts';
import { EVENTS, type EventId } from '../core/events.ts';
import type { ExtensionEnv, PasswordExtension } from '../core/extension.ts';
import { PwsyncError, UsageError } from '../core/errors.ts';
import { loadExtension } from '../extensions/loader.ts';
import type { ConnectorConfig } from '../config/schema.ts';
import { resolveSecret } from '../core/secret-ref.ts';
import { ConnectorJoins } from './joins.ts';

export const opsSubject = (connector: string): string => `ops.${subjectToken(connector)}`;

/** Why a connector cannot take set-operations at all; every operation for it fails with this. */
export interface Refusal {
  eventId: EventId;
  reason: string;
}

/** One connector as the hub runs it: the wrapped connector, its joins, its extension. */
export interface Target {
  readonly config: ConnectorConfig;
  readonly connector: Connector;
  readonly joins?: ConnectorJoins;
  readonly extension?: PasswordExtension;
  /**
   * One instance of the extension per concurrent batch (connectors[].concurrency), idle ones here:
   * an extension keeps its batch's connection between beginConnection and endConnection, so two
   * batches at once must not share an instance.
   */
  readonly idleExtensions?: PasswordExtension[];
  readonly refusal?: Refusal;
  readonly log: Logger;
}

/**
 * Opens a connector as the hub runs it: wrapped, its join rules checked, its extension loaded, and
 * why it cannot set passwords (if so). Without a join store (a connector worker) there are no
 * joins: the hub that sends the worker its operations keeps them.
 */
export async function openTarget(config: ConnectorConfig, baseDir: string, joinStore: KvStore | undefined, parentLog: Logger, extra: { bus?: WorkerBus; hubId?: string } = {}): Promise<Target> {
  const log = parentLog.child({ connector: config.name });
  const resolvePath = (p: string): string => path.resolve(baseDir, p);
  const inner = createConnector(config.name, config.kind, config.connection, {
    log, resolvePath, requireSecureConnection: config.requireSecureConnection, timeoutMs: config.timeout, ...extra,
  });
  const connector = wrapConnector(inner, { timeoutMs: config.timeout, log });
  try {
    await connector.open();
  } catch (e) {
    // The hub does not start with a connector it cannot open safely (a plain URL: 6951; a
    // refused service account: 6942): the event goes to the hub's log as well as to stderr.
    if (e instanceof PwsyncError && !e.retryable) log.error({ eventId: e.eventId }, e.message);
    throw e;
  }
  let joins: ConnectorJoins | undefined;
  if (joinStore) {
    if (!isObjectSource(connector)) {
      throw new UsageError(`connector ${config.name}: kind ${config.kind} cannot list objects, so join rules cannot be evaluated`);
    }
    await checkJoinAttributes(config, connector, log);
    joins = new ConnectorJoins(connector as Connector & ObjectSource, config.join, joinStore, log);
  }
  let extension: PasswordExtension | undefined;
  const idleExtensions: PasswordExtension[] = [];
  let refusal: Refusal | undefined;
  if (config.extension) {
    const env = extensionEnv(config.name, baseDir, log);
    const loaded = await loadExtension({ module: config.extension.module, settings: config.extension.settings }, env);
    extension = loaded.extension;
    idleExtensions.push(extension);
    for (let i = 1; i < config.concurrency; i++) {
      idleExtensions.push((await loadExtension({ module: config.extension.module, settings: config.extension.settings }, env)).extension);
    }
    if (!loaded.canSet) refusal = { eventId: 6928, reason: `the password extension ${loaded.source} has no setPassword` };
  }
  if (!config.enabled) {
    refusal = { eventId: 6921, reason: `password management is disabled for connector ${config.name} (enabled: false)` };
  } else if (!refusal && !isNativePasswordSetter(connector) && !isRemoteApplier(connector) && !(isExtensionHost(connector) && extension)) {
    refusal = { eventId: 6922, reason: `connector ${config.name} (kind ${config.kind}) sets passwords only through a password extension, and none is configured` };
  } else if (!refusal && config.requireSecureConnection && connector.securityLevel() === 'plain') {
    refusal = { eventId: 6951, reason: `connector ${config.name} requires a secure connection and its channel is not encrypted` };
  }
  if (refusal) log.warn({ eventId: refusal.eventId }, `connector cannot set passwords: ${refusal.reason}`);
  else if (!config.requireSecureConnection) {
    log.warn({ eventId: 6961, securityLevel: connector.securityLevel() }, `connector ${config.name}: requireSecureConnection is false: ${EVENTS[6961].text}${connector.securityLevel() === 'plain' ? ', and its channel is plain now' : ''}`);
  }
  return { config, connector, joins, extension, idleExtensions, refusal, log };
}

/** What an extension gets besides its settings: paths and secrets resolved as the YAML means them. */
export function extensionEnv(connector: string, baseDir: string, log: Logger): ExtensionEnv {
  return {
    connector, log,
    resolvePath: (p) => path.resolve(baseDir, p),
    resolveSecret: (ref, setting) => resolveSecret(ref, `connector ${connector}: extension.settings.${setting}`, baseDir),
  };
}

/**
 * A join rule naming an attribute the connector's objects lack can never join: refuse to start.
 * A connected system that cannot be read now is down, not misconfigured: start anyway, and its
 * set-operations wait and retry like any others.
 */
async function checkJoinAttributes(config: ConnectorConfig, connector: Connector & ObjectSource, log: Logger): Promise<void> {
  let known: readonly string[];
  try {
    known = await connector.attributes();
  } catch (e) {
    if (e instanceof PwsyncError && e.retryable) {
      log.warn({ eventId: 6940, err: e.message }, 'cannot read the connector\'s objects now; its join rules are checked once it can be read');
      return;
    }
    // A connector that opens lazily (sql) meets its TLS or service-account refusal here: logged as at open.
    if (e instanceof PwsyncError) log.error({ eventId: e.eventId }, e.message);
    throw e;
  }
  const unknown = joinRulesWithoutAttribute(config.join, known);
  if (unknown.length > 0) {
    throw new UsageError(`connector ${config.name}: join rule names attribute${unknown.length > 1 ? 's' : ''} ${unknown.map((r) => r.target).join(', ')}, which its objects do not have (they have: ${known.join(', ')}); fix connectors[].join[].target`);
  }
}

/** The join rules whose target attribute is not among `known`, by the join lookup's rule (joins.ts attributeOf): exact name, else the name without case. */
export function joinRulesWithoutAttribute<R extends { readonly target: string }>(rules: readonly R[], known: readonly string[]): R[] {
  return rules.filter((r) => !known.some((k) => k.toLowerCase() === r.target.toLowerCase()));
}

export async function closeTarget(t: Target): Promise<void> {
  try {
    for (const e of new Set([...(t.idleExtensions ?? []), ...(t.extension ? [t.extension] : [])])) await e.close?.();
  } finally {
    await t.connector.close();
  }
}
