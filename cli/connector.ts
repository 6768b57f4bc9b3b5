import type { Command } from 'commander';
import { STD_IO, type CommandIO } from './io.ts';
import path from 'node:path';
import { createConnector } from '../connectors/registry.ts';
import { wrapConnector } from '../connectors/wrap.ts';
import { ConfigError, formatIssue } from '../config/issues.ts';
import { loadHubConfig, type LoadedHubConfig } from '../config/load.ts';
import { isPwsyncError, UsageError, describeError } from '../core/errors.ts';
import { EVENTS } from '../core/events.ts';
import { silentLogger } from '../core/log.ts';
import { openBroker } from '../hub/service.ts';
import { joinRulesWithoutAttribute } from '../hub/targets.ts';
import { printableLines } from '../core/text.ts';
import { isObjectSource } from '../connectors/contract.ts';

/** Where the command writes; the tests hand in their own. */
export type ConnectorCommandIO = CommandIO;

/** Exit codes: 0 the connector answered; 1 the connector failed; 2 the configuration is wrong. */
export function register(program: Command, io: ConnectorCommandIO = STD_IO): void {
  const connector = program.command('connector').description('Work with the connectors of a hub configuration.');
  connector.command('test')
    .description('Open one connector as the hub would (reachability, TLS, the rights it can check without writing), report, close. Starts no hub and changes nothing.')
    .argument('<name>', 'the connector\'s name (connectors[].name)')
    .requiredOption('-c, --config <file>', 'the hub YAML')
    .action(async (name: string, opts: { config: string }) => {
      process.exitCode = await testConnector(opts.config, name, io);
    });
}

/** Tests one connector of a hub YAML; returns the exit code. */
export async function testConnector(configFile: string, name: string, rawIO: ConnectorCommandIO = STD_IO): Promise<number> {
  // Reports quote the YAML and the connected system (attribute names, server messages): nothing of them reaches the terminal raw.
  const io: ConnectorCommandIO = { out: (l) => rawIO.out(printableLines(l)), err: (l) => rawIO.err(printableLines(l)) };
  let config: LoadedHubConfig;
  try {
    // The hub's own files (keys, certificates) are not this command's business; the connector's are read when it opens.
    config = await loadHubConfig(configFile, { checkFiles: false });
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const issue of e.issues) io.err(formatIssue(issue));
      io.err(`${configFile}: ${e.issues.length} problem${e.issues.length === 1 ? '' : 's'}; run \`pwsync config check ${configFile}\``);
      return 2;
    }
    if (e instanceof UsageError) {
      io.err(e.message);
      return 2;
    }
    throw e;
  }
  const c = config.connectors.find((x) => x.name === name);
  if (!c) {
    const names = config.connectors.map((x) => x.name);
    io.err(`${configFile}: no connector named ${JSON.stringify(name)}; its connectors: ${names.join(', ') || '(none)'}`);
    return 2;
  }

  const log = silentLogger();
  // A remote connector's test pings its worker through the hub's NATS.
  let remote: Awaited<ReturnType<typeof openBroker>> | undefined;
  let connector;
  try {
    if (c.kind === 'remote') remote = await openBroker(config, log);
    const inner = createConnector(c.name, c.kind, c.connection, {
      log, resolvePath: (p) => path.resolve(config.baseDir, p), requireSecureConnection: c.requireSecureConnection,
      timeoutMs: c.timeout, ...(remote?.bus ? { bus: remote.bus } : {}),
    });
    connector = wrapConnector(inner, { timeoutMs: c.timeout, log });
  } catch (e) {
    await remote?.broker.close();
    io.err(describeError(e));
    return isPwsyncError(e) ? 1 : 2;
  }
  try {
    await connector.open();
    // The hub refuses set-operations over a plain channel when a secure one is required (hub/targets.ts).
    if (c.requireSecureConnection && connector.securityLevel() === 'plain') {
      io.err(`event 6951: connector ${c.name}: ${EVENTS[6951].text}`);
      io.err(`fix: ${EVENTS[6951].fix}`);
      return 1;
    }
    const report = await connector.test();
    // What the hub refuses at start, and only the connected system can tell: a join attribute its objects lack.
    if (isObjectSource(connector)) {
      const known = await connector.attributes();
      const unknown = joinRulesWithoutAttribute(c.join, known);
      if (unknown.length > 0) {
        for (const r of unknown) io.err(`connector ${c.name}: join target ${r.target} is not an attribute of its objects (they have: ${known.join(', ') || 'none'}); fix connectors[].join[].target, or read the attribute (connection.attributes, objects.query)`);
        return 2;
      }
    }
    io.out(`connector ${c.name} (${c.kind}): ok: ${report}`);
    if (!c.requireSecureConnection) io.out(`warning 6961: connector ${c.name}: requireSecureConnection is false: ${EVENTS[6961].text}`);
    return 0;
  } catch (e) {
    if (isPwsyncError(e)) {
      io.err(`event ${e.eventId}: ${e.message}`);
      io.err(`fix: ${EVENTS[e.eventId].fix}`);
      return 1;
    }
    // A UsageError at open: a driver not installed, a secret file missing — configuration to fix.
    io.err(describeError(e));
    return e instanceof UsageError ? 2 : 1;
  } finally {
    await connector.close().catch(() => undefined);
    await remote?.broker.close();
  }
}
