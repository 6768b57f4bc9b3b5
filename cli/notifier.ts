import type { Command } from 'commander';
import { loadNotifierConfig } from '../config/load.ts';
import { createLogger } from '../core/log.ts';
import { startNotifier } from '../notifier/service.ts';
import { registerWindows } from './notifier-windows.ts';
import { untilSignal } from './signals.ts';

export function register(program: Command): void {
  const notifier = program.command('notifier')
    .description('Run the notifier on a domain controller: the hook endpoint, sealed queues, delivery to hubs.')
    .requiredOption('-c, --config <file>', 'the notifier YAML')
    .action(async (opts: { config: string }) => {
      const config = await loadNotifierConfig(opts.config, { checkFiles: true });
      const log = createLogger({ level: config.notifier.log.level, file: config.notifier.log.file, name: 'pwsync-notifier' });
      // Listened for before the start: a SIGTERM while starting stops the notifier with a drain once it is up.
      const signalled = untilSignal(log);
      const notifier = await startNotifier(config, log);
      const signal = await signalled;
      log.info({ signal }, 'stopping: answering hook requests in flight, then draining deliveries');
      await notifier.stop();
      log.flush();
    });
  registerWindows(notifier);
}
