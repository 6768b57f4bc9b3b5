import type { Command } from 'commander';
import { createLogger } from '../core/log.ts';
import { loadHubConfig } from '../config/load.ts';
import { startHub } from '../hub/service.ts';
import { untilSignal } from './signals.ts';

export function register(program: Command): void {
  program.command('hub')
    .description('Run the hub: gRPC ingest, joins, and the connectors\' set-operations.')
    .requiredOption('-c, --config <file>', 'the hub YAML')
    .action(async (opts: { config: string }) => {
      const config = await loadHubConfig(opts.config);
      const log = createLogger({ level: config.hub.log.level, file: config.hub.log.file, name: 'pwsync-hub' });
      // Listened for before the start: a SIGTERM while starting stops the hub with a drain once it is up.
      const signalled = untilSignal(log);
      const hub = await startHub(config, log);
      const why = await Promise.race([signalled, hub.failed]);
      if (why instanceof Error) {
        // A loop that stopped would leave the hub accepting changes it never applies: exit non-zero instead.
        process.exitCode = 1;
        log.error({ err: why.message }, 'stopping: a hub loop failed');
      } else {
        log.info({ signal: why }, 'stopping: draining in-flight set-operations');
      }
      await hub.stop();
      log.info('hub stopped');
      log.flush();
    });
}
