import type { Command } from 'commander';
import { openSqliteBroker } from '../core/broker-sqlite.ts';
import { EVENTS, isEventId } from '../core/events.ts';
import { loadHubConfig } from '../config/load.ts';
import { queryStatus, retryOperation } from '../hub/admin.ts';
import type { OperationStatus, SyncStatus } from '../hub/records.ts';
import { hubDatabase } from '../hub/service.ts';
import { HubState } from '../hub/state.ts';

function parseAccount(s: string): { domain?: string; samAccountName: string } {
  const i = s.indexOf('\\');
  return i < 0 ? { samAccountName: s } : { domain: s.slice(0, i), samAccountName: s.slice(i + 1) };
}

const when = (ms: number | undefined): string => (ms ? new Date(ms).toISOString().replace('.000Z', 'Z') : '-');

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

export function renderSync(sync: readonly SyncStatus[]): string {
  if (sync.length === 0) return 'no accounts recorded yet';
  return table([
    ['ACCOUNT', 'CONNECTOR', 'STATE', 'CHANGE TIME', 'EVENT', 'WHY'],
    ...sync.map((s) => [
      `${s.domain}\\${s.samAccountName}`, s.connector, s.state, when(s.changeTime), s.eventId ? String(s.eventId) : '-',
      s.reason ?? (s.state === 'in-sync' ? 'the latest password arrived' : s.state === 'pending' ? 'queued' : '-'),
    ]),
  ]);
}

export function renderOperations(ops: readonly OperationStatus[]): string {
  if (ops.length === 0) return 'no set-operations';
  return table([
    ['OPERATION', 'ACCOUNT', 'CONNECTOR', 'OBJECT', 'STATE', 'TRIES', 'NEXT TRY', 'EVENT', 'WHY'],
    ...ops.map((o) => [
      o.opId, `${o.account.domain}\\${o.account.samAccountName}`, o.connector, o.objectId, o.state, String(o.attempts),
      when(o.nextAttemptAt), o.eventId ? String(o.eventId) : '-',
      o.reason ?? (o.eventId && isEventId(o.eventId) ? EVENTS[o.eventId].text : '-'),
    ]),
  ]);
}

async function withState<T>(configFile: string, fn: (s: HubState, b: ReturnType<typeof openSqliteBroker>) => Promise<T>): Promise<T> {
  const config = await loadHubConfig(configFile, { checkFiles: false });
  const broker = openSqliteBroker({ file: hubDatabase(config) });
  try {
    return await fn(await HubState.open(broker), broker);
  } finally {
    await broker.close();
  }
}

export function register(program: Command): void {
  program.command('status')
    .description('Did each password arrive, and if not, why: per account and connector, with the set-operations behind it.')
    .requiredOption('-c, --config <file>', 'the hub YAML')
    .option('-a, --account <name>', 'one account: NAME or DOMAIN\\NAME')
    .option('--connector <name>', 'one connector')
    .option('--failed', 'failures only')
    .option('--operations', 'list every set-operation, not only the sync state')
    .option('--json', 'machine-readable output')
    .action(async (opts: { config: string; account?: string; connector?: string; failed?: boolean; operations?: boolean; json?: boolean }) => {
      const result = await withState(opts.config, (s) => queryStatus(s, {
        account: opts.account ? parseAccount(opts.account) : undefined, connector: opts.connector, failedOnly: opts.failed,
      }));
      const operations = result.operations.map(({ envelope: _sealed, ...o }) => o);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ sync: result.sync, operations }, null, 2)}\n`);
        return;
      }
      process.stdout.write(`${renderSync(result.sync)}\n`);
      const shown = opts.operations ? operations : operations.filter((o) => o.state !== 'successful');
      if (shown.length > 0) process.stdout.write(`\n${renderOperations(shown)}\n`);
    });

  program.command('retry')
    .description('Re-queue a failed set-operation (see `pwsync status --failed`).')
    .requiredOption('-c, --config <file>', 'the hub YAML')
    .argument('<operation...>', 'operation ids')
    .action(async (ids: string[], opts: { config: string }) => {
      await withState(opts.config, async (s, broker) => {
        for (const id of ids) {
          const r = await retryOperation(broker, s, id);
          process.stdout.write(`re-queued ${r.opId} (${r.account.domain}\\${r.account.samAccountName} → ${r.connector})\n`);
        }
      });
    });
}
