import type { Command } from 'commander';
import { STD_IO, type CommandIO } from './io.ts';
import { natsBrokerOptions } from '../config/broker.ts';
import { ConfigError, formatIssue } from '../config/issues.ts';
import { loadHubConfig, type LoadedHubConfig } from '../config/load.ts';
import { UsageError, describeError, isPwsyncError } from '../core/errors.ts';
import { hubBrokerLayout } from '../hub/layout.ts';

/** Where the command writes; the tests hand in their own. */
export type BrokerCommandIO = CommandIO;

/** Exit codes: 0 done; 1 NATS failed or refused; 2 the configuration is wrong. */
export function register(program: Command, io: BrokerCommandIO = STD_IO): void {
  const broker = program.command('broker').description('Set up the broker that hubs share (broker.kind: nats).');
  broker.command('init')
    .description('Create the JetStream streams, KV buckets and consumers the hub YAML needs, with its broker.replicas; what exists is left as it is. Safe to run again.')
    .requiredOption('-c, --config <file>', 'the hub YAML')
    .action(async (opts: { config: string }) => {
      process.exitCode = await initBroker(opts.config, io);
    });
}

/** Creates what is missing on the configured NATS and says what it created and what was there; returns the exit code. */
export async function initBroker(configFile: string, io: BrokerCommandIO = STD_IO): Promise<number> {
  let config: LoadedHubConfig;
  try {
    // The hub's own keys and certificates are not this command's business; the broker's files are read below.
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
  if (config.broker.kind !== 'nats') {
    io.err(`${configFile}: broker.kind is ${config.broker.kind}: the embedded broker needs no init (it is created in hub.dataDir on the first start); set broker.kind: nats to share the hub's queues over NATS JetStream`);
    return 2;
  }
  let options;
  try {
    options = natsBrokerOptions(config, { name: `pwsync broker init (${config.hub.id})` });
  } catch (e) {
    io.err(describeError(e));
    return 2;
  }
  const { openNatsBroker } = await import('../core/broker-nats.ts');
  let broker;
  try {
    broker = await openNatsBroker(options);
  } catch (e) {
    io.err(failure(e));
    return 1;
  }
  try {
    const report = await broker.initLayout(hubBrokerLayout(config));
    for (const what of report.created) io.out(`created ${what}`);
    for (const what of report.existing) io.out(`exists  ${what}`);
    io.out(`broker on ${config.broker.servers!.join(', ')}: ${report.created.length} created, ${report.existing.length} already there`);
    return 0;
  } catch (e) {
    io.err(failure(e));
    return 1;
  } finally {
    await broker.close();
  }
}

function failure(e: unknown): string {
  return isPwsyncError(e) ? `event ${e.eventId}: ${e.message}` : describeError(e);
}
