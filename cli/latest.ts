import type { Command } from 'commander';
import { formatTime } from '../core/change-time.ts';
import { UsageError } from '../core/errors.ts';
import { createLogger } from '../core/log.ts';
import { clearLatestApplied, latestOf } from '../hub/admin.ts';
import { AuditTrail } from '../hub/audit.ts';
import { parseAccount, withState } from './status.ts';

const same = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

export function register(program: Command): void {
  const latest = program.command('latest')
    .description('The change time last applied to each target object (latest wins): `pwsync status --account NAME` lists them.');
  latest.command('clear')
    .description('Forget a target object\'s latest-applied change time (one stamped in the future refuses every real change as older, 6919); audited as latest-clear, event 6976.')
    .requiredOption('-c, --config <file>', 'the hub YAML')
    .requiredOption('--connector <name>', 'the connector whose object it is')
    .option('--object <id>', 'the object\'s id in the connector (as `pwsync status --account` shows it)')
    .option('-a, --account <name>', 'every object of this account in the connector: NAME or DOMAIN\\NAME')
    .action(async (opts: { config: string; connector: string; object?: string; account?: string }) => {
      if (!opts.object === !opts.account) throw new UsageError('name what to clear with either --object ID or --account NAME (not both)');
      await withState(opts.config, async (state, broker, config) => {
        if (!config.connectors.some((c) => c.name === opts.connector)) {
          throw new UsageError(`no connector ${opts.connector} in ${opts.config}: it has ${config.connectors.map((c) => c.name).join(', ') || 'none'}`);
        }
        let objects: string[];
        if (opts.object) {
          objects = [opts.object];
        } else {
          const account = parseAccount(opts.account!);
          const mine = (a: { domain: string; samAccountName: string }): boolean =>
            same(a.samAccountName, account.samAccountName) && (!account.domain || same(a.domain, account.domain));
          const seen = [
            ...(await state.listSync()).filter((s) => s.connector === opts.connector && mine(s)),
            ...(await state.listOperations()).filter((o) => o.connector === opts.connector && mine(o.account)),
          ];
          objects = (await latestOf(state, seen)).map((l) => l.objectId);
          if (objects.length === 0) throw new UsageError(`account ${opts.account} has no object with a latest-applied change time in connector ${opts.connector}`);
        }
        // The event goes where the hub logs, so that an admin filtering on 6976 finds it there.
        const log = createLogger({ level: 'info', file: config.hub.log.file, name: 'pwsync-cli', sync: true });
        const audit = await AuditTrail.open(broker);
        for (const objectId of objects) {
          const cleared = await clearLatestApplied(state, audit, log, opts.connector, objectId);
          process.stdout.write(`cleared the latest-applied change time of ${opts.connector}/${objectId} (change ${cleared.changeId} of ${formatTime(cleared.changeTime)}); the next change for it is applied\n`);
        }
      });
    });
}
