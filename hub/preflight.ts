import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import path from 'node:path';
import { isObjectSource, type Connector, type ObjectSource } from '../connectors/contract.ts';
import { createConnector } from '../connectors/registry.ts';
import type { ConfigIssue, ConfigPath } from '../config/issues.ts';
import { issueAt, type LoadedHubConfig, type LoadedWorkerConfig } from '../config/load.ts';
import { checkFile } from '../config/paths.ts';
import type { WorkerConnectorConfig } from '../config/schema.ts';
import { describeError, PwsyncError } from '../core/errors.ts';
import { EVENTS } from '../core/events.ts';
import { silentLogger } from '../core/log.ts';
import { builtinSettingsProblem, extensionModuleProblem, loadExtension } from '../extensions/loader.ts';
import { loadKeyring } from './service.ts';
import { extensionEnv, joinRulesWithoutAttribute } from './targets.ts';

export interface PreflightOptions {
  /** Look at files the configuration names: keys, the TLS pair, extension modules, connector files (join attributes). */
  readonly checkFiles: boolean;
  /** Load each extension and run its init() with its settings, as the hub does at start: runs the extension's code. */
  readonly loadExtensions: boolean;
}

/**
 * What a hub (or connector worker) would refuse at start that can be known without the network:
 * keys that open no sealed password, a TLS certificate and key that do not belong together,
 * connection settings its connector rejects, a plain channel where a secure one is required,
 * extension modules that cannot be loaded, built-in extensions' settings, and join rules naming
 * a column a connector's file does not have. Directories and databases are not contacted
 * (`pwsync connector test NAME` does that); an extension's own code runs only with `loadExtensions`.
 */
export async function preflightIssues(config: LoadedHubConfig | LoadedWorkerConfig, opts: PreflightOptions): Promise<ConfigIssue[]> {
  const issues: ConfigIssue[] = [];
  const log = silentLogger();
  const hasJoins = 'hub' in config;
  if (opts.checkFiles) issues.push(...keyIssues(config), ...('hub' in config ? tlsIssues(config) : []));
  const connectors: readonly WorkerConnectorConfig[] = config.connectors;
  for (const [i, c] of connectors.entries()) {
    const at = (...p: Array<string | number>): ConfigPath => ['connectors', i, ...p];
    let connector: Connector;
    try {
      connector = createConnector(c.name, c.kind, c.connection, {
        log, resolvePath: (p) => path.resolve(config.baseDir, p), requireSecureConnection: c.requireSecureConnection, timeoutMs: c.timeout,
      });
    } catch (e) {
      issues.push(issueAt(config, at('connection'), describeError(e), 'correct the connection setting named: the service refuses to start with it'));
      continue;
    }
    // The hub's refusal with event 6951 (hub/targets.ts), known from the settings alone.
    if (c.requireSecureConnection && connector.securityLevel() === 'plain') {
      const url = (c.connection as { url?: unknown }).url;
      issues.push(issueAt(config, at('connection', 'url'), `${typeof url === 'string' ? url : `connector ${c.name}`} is a plain connection: the bind password and every password set would travel in clear, and requireSecureConnection is true (the default), so the connector is refused at start with event 6951`,
        EVENTS[6951].fix));
    }
    if (c.extension) issues.push(...await extensionIssues(config, c, at, opts));
    if (hasJoins && opts.checkFiles && isObjectSource(connector)) {
      const join = (config as LoadedHubConfig).connectors[i]!.join;
      issues.push(...await fileJoinIssues(config, c, connector, join, at));
    }
  }
  return issues;
}

/** Keys the service could not open sealed passwords with (hub/service.ts loadKeyring refuses them at start). */
function keyIssues(config: LoadedHubConfig | LoadedWorkerConfig): ConfigIssue[] {
  const [section, keys] = 'hub' in config ? ['hub', config.hub.keys] as const : ['worker', config.worker.keys] as const;
  const issues: ConfigIssue[] = [];
  keys.forEach((file, i) => {
    // A missing or public file is reported by the loader already.
    if (checkFile(file, true)) return;
    try {
      loadKeyring([file]);
    } catch {
      issues.push(issueAt(config, [section, 'keys', i], `${file} is not a private key that opens sealed passwords (a P-256 key in PEM)`, 'create one with `pwsync keys generate`, and give notifiers its public half'));
    }
  });
  return issues;
}

/** The hub's certificate and key must be PEM and belong together, or its gRPC server cannot start. */
function tlsIssues(config: LoadedHubConfig): ConfigIssue[] {
  const { cert, key } = config.hub.tls;
  if (checkFile(cert, false) || checkFile(key, true)) return [];
  try {
    createSecureContext({ cert: readFileSync(cert), key: readFileSync(key) });
    return [];
  } catch (e) {
    return [issueAt(config, ['hub', 'tls', 'cert'], `the certificate ${cert} and the key ${key} cannot be used together: ${describeError(e)}`,
      'give the PEM certificate and its own private key (`pwsync tls generate` writes a pair)')];
  }
}

async function extensionIssues(config: LoadedHubConfig | LoadedWorkerConfig, c: WorkerConnectorConfig, at: (...p: Array<string | number>) => ConfigPath, opts: PreflightOptions): Promise<ConfigIssue[]> {
  const { module, settings } = c.extension!;
  const builtin = module.startsWith('builtin:');
  if (builtin || opts.checkFiles) {
    const problem = await extensionModuleProblem(module);
    if (problem) return [issueAt(config, at('extension', 'module'), problem.message, problem.fix)];
  }
  const env = extensionEnv(c.name, config.baseDir, silentLogger());
  const settingsProblem = await builtinSettingsProblem(module, settings, env.resolvePath);
  if (settingsProblem) {
    return [issueAt(config, at('extension', 'settings'), `${module}: ${settingsProblem}`, 'correct extension.settings: the service refuses to start with them')];
  }
  if (!opts.loadExtensions) return [];
  try {
    const loaded = await loadExtension({ module, settings }, env);
    await loaded.extension.close?.();
    return [];
  } catch (e) {
    return [issueAt(config, at('extension'), describeError(e), 'the service refuses to start with this extension: fix the module or its settings')];
  }
}

/**
 * A file connector's attributes are its file's (a CSV's header row): readable here, so a join rule
 * naming one it lacks is found now. A file that is missing or cannot be read now is no start
 * refusal (the hub starts, and the connector's set-operations wait for it), so nothing is said.
 */
async function fileJoinIssues(config: LoadedHubConfig | LoadedWorkerConfig, c: WorkerConnectorConfig, connector: Connector & ObjectSource, join: LoadedHubConfig['connectors'][number]['join'], at: (...p: Array<string | number>) => ConfigPath): Promise<ConfigIssue[]> {
  // A fixed-width file's attributes are its declared fields, checked with the configuration.
  const file = (c.connection as { path?: unknown }).path;
  if (connector.securityLevel() !== 'local' || c.kind === 'fixed-width' || typeof file !== 'string') return [];
  const st = await stat(file).catch(() => undefined);
  if (!st) return [];
  if (!st.isFile()) {
    return [issueAt(config, at('connection', 'path'), `${file} is not a regular file: the connector would wait on it for ever`, 'point connection.path at the connector\'s file')];
  }
  let known: readonly string[];
  try {
    known = await connector.attributes();
  } catch (e) {
    if (e instanceof PwsyncError && e.retryable) return [];
    return [issueAt(config, at('connection', 'path'), describeError(e), 'the hub refuses to start with this file: correct it')];
  }
  return joinRulesWithoutAttribute(join, known).map((r) => issueAt(config, at('join', join.indexOf(r), 'target'),
    `join target \`${r.target}\` is not an attribute of ${file} (it has: ${known.join(', ') || 'none'})`,
    `use one of its attributes, or add a \`${r.target}\` column to the file`));
}
