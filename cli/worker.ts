import type { Command } from 'commander';
import { createLogger } from '../core/log.ts';
import { loadWorkerConfig } from '../config/load.ts';
import { startWorker } from '../worker/service.ts';
import { untilSignal } from './signals.ts';

export function register(program: Command): void {
  program.command('worker')
    .description('Run a connector worker next to its target: it connects out to NATS only and applies the set-operations hubs re-seal for it.')
    .requiredOption('-c, --config <file>', 'the worker YAML (worker:, broker:, connectors:)')
    .option('--connector <name>', 'the connector to run (needed when the file has several)')
    .action(async (opts: { config: string; connector?: string }) => {
      const config = await loadWorkerConfig(opts.config);
      const log = createLogger({ level: config.worker.log.level, file: config.worker.log.file, name: 'pwsync-worker' });
      // Listened for before the start: a SIGTERM while starting stops the worker with a drain once it is up.
      const signalled = untilSignal(log);
      const worker = await startWorker(config, opts.connector, log);
      const signal = await signalled;
      log.info({ signal }, 'stopping: finishing the set-operations in flight');
      await worker.stop();
      log.flush();
    });
}
