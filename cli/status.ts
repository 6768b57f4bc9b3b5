import type { Command } from 'commander';
import type { Broker } from '../core/broker.ts';
import { UsageError } from '../core/errors.ts';
import type { WorkerBus } from '../core/worker-bus.ts';
import { EVENTS, isEventId } from '../core/events.ts';
import { silentLogger } from '../core/log.ts';
import { loadHubConfig, type LoadedHubConfig } from '../config/load.ts';
import { describePending, pendingAtDcs, queryStatus, retryOperation, withPending } from '../hub/admin.ts';
import { DcRegistry, type DcRecord, type NoticeRecord } from '../hub/dc-registry.ts';
import type { OperationStatus, SyncStatus } from '../hub/records.ts';
import { openBroker } from '../hub/service.ts';
import { workerViews, type WorkerView } from '../hub/workers.ts';
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

/** Changes a DC did not send to this hub (out of scope), the latest per account and target. */
export function renderNotices(notices: readonly NoticeRecord[]): string {
  return table([
    ['ACCOUNT', 'TARGET', 'DC', 'CHANGE TIME', 'EVENT', 'WHY'],
    ...notices.map((n) => [
      `${n.domain}\\${n.samAccountName}`, n.target, n.sourceDc, when(n.changeTime), '6958', `not sent by ${n.sourceDc} to ${n.target}: ${n.reason}`,
    ]),
  ]);
}

const ago = (ms: number, now: number): string => {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
};

/** Per domain, each DC that reported: when, its capture and queue; then the DCs whose capture is not running. */
export function renderDcs(dcs: readonly DcRecord[], domains: LoadedHubConfig['domains'], now = Date.now()): string {
  const silentAfter = new Map(domains.map((d) => [d.name.toLowerCase(), d.dcSilentAfter]));
  const lines: string[] = [];
  if (dcs.length > 0) {
    lines.push(table([
      ['DOMAIN', 'DC', 'PRINCIPAL', 'LAST REPORT', 'LAST SEEN', 'CAPTURE', 'QUEUED', 'STATE'],
      ...dcs.map((d) => {
        const silent = d.silent || d.lastSeen < now - (silentAfter.get(d.domain.toLowerCase()) ?? Infinity);
        return [
          d.domain, d.sourceDc, d.principal, d.lastReport ? `${when(d.lastReport)} (${ago(d.lastReport, now)})` : '-',
          `${when(d.lastSeen)} (${ago(d.lastSeen, now)})`,
          d.capture.length > 0 ? d.capture.map((c) => `${c.source}: ${c.state}`).join(', ') : 'not reported',
          d.queued === undefined ? '-' : String(d.queued), silent ? 'silent (6955)' : 'reporting',
        ];
      }),
    ]));
  }
  for (const dom of domains) {
    if (!dcs.some((d) => d.domain.toLowerCase() === dom.name.toLowerCase())) lines.push(`${dom.name}: no domain controller has reported to this hub yet`);
  }
  const isSilent = (d: DcRecord): boolean => d.silent || d.lastSeen < now - (silentAfter.get(d.domain.toLowerCase()) ?? Infinity);
  const notCapturing = dcs.flatMap((d) => (isSilent(d) ? [`  ${d.sourceDc} (${d.domain}): stale: silent since ${when(d.lastSeen)}, its capture state is unknown`]
    : d.capture.length === 0 ? [`  ${d.sourceDc} (${d.domain}): no capture source reported`]
      : d.capture.filter((c) => c.state !== 'running').map((c) => `  ${d.sourceDc} (${d.domain}): ${c.source} ${c.state}${c.detail ? `: ${c.detail}` : ''}`)));
  if (notCapturing.length > 0) lines.push('', 'capture not running (password changes made there are not captured):', ...notCapturing);
  const keys = dcs.flatMap((d) => (!d.sealingKeyId || !d.hubKeyIds?.length || d.hubKeyIds[0] === d.sealingKeyId ? []
    : [`  ${d.sourceDc} (${d.domain}): seals for key ${d.sealingKeyId}, the hub has key ${d.hubKeyIds.join(', ')}: ${d.hubKeyIds.includes(d.sealingKeyId)
      ? 'a retired key, still opened (6989): give it the current public key' : 'its changes for this hub are held there (6987): give it the hub\'s current public key'}`]));
  if (keys.length > 0) lines.push('', 'notifiers sealing for another key than the hub\'s current one:', ...keys);
  return lines.join('\n');
}

/** The hub's state where the hub keeps it: its embedded file, or the NATS JetStream it shares with other hubs. */
async function withState<T>(configFile: string, fn: (s: HubState, b: Broker, config: LoadedHubConfig, bus?: WorkerBus) => Promise<T>): Promise<T> {
  const config = await loadHubConfig(configFile, { checkFiles: false });
  const { broker, bus } = await openBroker(config, silentLogger());
  try {
    return await fn(await HubState.open(broker), broker, config, bus);
  } finally {
    await broker.close();
  }
}

/** Each remote connector's worker: connected or not, last request, in flight, applied, failed. */
export function renderWorkers(views: readonly WorkerView[], now = Date.now()): string {
  if (views.length === 0) return 'no connector of kind remote: every connector runs in the hub';
  return table([
    ['CONNECTOR', 'WORKER', 'STATE', 'HOST', 'LAST REQUEST', 'IN FLIGHT', 'APPLIED', 'FAILED', 'LAST SEEN'],
    ...views.map((v) => [
      v.connector, v.state?.worker ?? '-', v.connected ? 'connected' : 'not connected (6972)', v.state ? `${v.state.host} pid ${v.state.pid}` : '-',
      v.state?.lastRequestAt ? `${when(v.state.lastRequestAt)} (${ago(v.state.lastRequestAt, now)})` : '-',
      v.connected && v.state ? String(v.state.inFlight) : '-', v.state ? String(v.state.applied) : '-', v.state ? String(v.state.failed) : '-',
      v.lastSeen ? `${when(v.lastSeen)} (${ago(v.lastSeen, now)})` : 'never',
    ]),
  ]);
}

export function register(program: Command): void {
  program.command('status')
    .description('Did each password arrive, and if not, why: per account and connector, with the set-operations behind it.')
    .requiredOption('-c, --config <file>', 'the hub YAML')
    .option('-a, --account <name>', 'one account: NAME or DOMAIN\\NAME')
    .option('--connector <name>', 'one connector')
    .option('--failed', 'failures only')
    .option('--operations', 'list every set-operation, not only the sync state')
    .option('--dcs', 'the domain controllers that report to this hub: last report, capture state, queued changes')
    .option('--workers', 'the connector workers of remote connectors: connected, last request, in flight')
    .option('--json', 'machine-readable output')
    .action(async (opts: { config: string; account?: string; connector?: string; failed?: boolean; operations?: boolean; dcs?: boolean; workers?: boolean; json?: boolean }) => {
      if (opts.workers) {
        const workers = await withState(opts.config, async (_s, b, config, bus) => {
          const remote = config.connectors.filter((c) => c.kind === 'remote').map((c) => c.name);
          if (remote.length > 0 && !bus) throw new UsageError('remote connectors need broker.kind: nats');
          return bus && remote.length > 0 ? workerViews(remote, bus, await b.kv('workers')) : [];
        });
        process.stdout.write(opts.json ? `${JSON.stringify({ workers }, null, 2)}\n` : `${renderWorkers(workers)}\n`);
        return;
      }
      if (opts.dcs) {
        const { dcs, domains } = await withState(opts.config, async (_s, b, config) => ({
          dcs: await (await DcRegistry.open(b, silentLogger())).listDcs(), domains: config.domains,
        }));
        process.stdout.write(opts.json ? `${JSON.stringify({ dcs }, null, 2)}\n` : `${renderDcs(dcs, domains)}\n`);
        return;
      }
      const account = opts.account ? parseAccount(opts.account) : undefined;
      const result = await withState(opts.config, async (s, b) => {
        const registry = await DcRegistry.open(b, silentLogger());
        const status = await queryStatus(s, { account, connector: opts.connector, failedOnly: opts.failed });
        // Changes that wait at a DC's notifier: the account is not in sync while a newer one waits there.
        const pending = pendingAtDcs(await registry.listDcs(), account);
        return {
          ...status, sync: withPending(status.sync, pending), pending,
          // Why a password did not even leave the DC; asked per account (a whole domain's would be long).
          notices: account && !opts.connector ? await registry.listNotices(account) : [],
        };
      });
      const operations = result.operations.map(({ envelope: _sealed, ...o }) => o);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ sync: result.sync, operations, notices: result.notices, pending: account ? result.pending : undefined }, null, 2)}\n`);
        return;
      }
      const waiting = account ? result.pending : [];
      if (result.sync.length > 0 || (result.notices.length === 0 && waiting.length === 0)) process.stdout.write(`${renderSync(result.sync)}\n`);
      if (waiting.length > 0) process.stdout.write(`${result.sync.length > 0 ? '\n' : ''}${waiting.map((p) => `${p.domain}\\${p.samAccountName}: ${describePending(p)}`).join('\n')}\n`);
      if (result.notices.length > 0) process.stdout.write(`${result.sync.length + waiting.length > 0 ? '\n' : ''}${renderNotices(result.notices)}\n`);
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
