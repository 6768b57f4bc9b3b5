import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import type { Broker } from '../core/broker.ts';
import { formatTime } from '../core/change-time.ts';
import { describeError, UsageError } from '../core/errors.ts';
import type { WorkerBus } from '../core/worker-bus.ts';
import { EVENTS, isEventId } from '../core/events.ts';
import { createLogger, silentLogger } from '../core/log.ts';
import { parseDuration } from '../core/duration.ts';
import { loadHubConfig, type LoadedHubConfig } from '../config/load.ts';
import { describePending, failedMatching, latestOf, pendingAtDcs, queryStatus, requeueOperation, retryOperation, showsFailure, withPending, type LatestApplied, type RetryFilter } from '../hub/admin.ts';
import { AuditTrail, localActor } from '../hub/audit.ts';
import { DcRegistry, type DcRecord, type NoticeRecord } from '../hub/dc-registry.ts';
import type { OperationStatus, SyncStatus } from '../hub/records.ts';
import { hubDatabase, openBroker } from '../hub/service.ts';
import { workerViews, type WorkerView } from '../hub/workers.ts';
import { HubState } from '../hub/state.ts';

export function parseAccount(s: string): { domain?: string; samAccountName: string } {
  const i = s.indexOf('\\');
  return i < 0 ? { samAccountName: s } : { domain: s.slice(0, i), samAccountName: s.slice(i + 1) };
}

// A stored time past what a Date holds prints as its number, never throws (one bad record must not hide the rest).
const when = (ms: number | undefined): string => (ms ? formatTime(ms).replace('.000Z', 'Z') : '-');

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

export function renderSync(sync: readonly SyncStatus[]): string {
  return table([
    ['ACCOUNT', 'CONNECTOR', 'STATE', 'CHANGE TIME', 'EVENT', 'WHY'],
    ...sync.map((s) => [
      `${s.domain}\\${s.samAccountName}`, s.connector, s.state, when(s.changeTime), s.eventId ? String(s.eventId) : '-',
      s.reason ?? (s.state === 'in-sync' ? 'the latest password arrived' : s.state === 'pending' ? 'queued' : '-'),
    ]),
  ]);
}

/** What an empty answer means, in words: nothing recorded at all, nothing failed, nothing on that connector yet. */
export function nothingToShow(q: { account?: string; connector?: string; failed?: boolean }, recorded: boolean): string {
  if (!recorded) return 'no accounts recorded yet: no change has reached this hub';
  const scope = [q.account, q.connector && `on connector ${q.connector}`].filter(Boolean).join(' ');
  if (q.failed) return `nothing failed${scope ? ` for ${scope}` : ''}`;
  if (q.account && q.connector) return `no record of ${q.account} on connector ${q.connector} yet: none of its changes has been resolved for that connector`;
  return q.connector ? `no account recorded on connector ${q.connector} yet` : 'nothing to show';
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

/** The change time last applied to each of the account's objects; one in the future refuses every real change (6919). */
export function renderLatest(latest: readonly LatestApplied[], clockToleranceMs: number, now = Date.now()): string {
  return table([
    ['CONNECTOR', 'OBJECT', 'LATEST APPLIED', 'CHANGE', 'NOTE'],
    ...latest.map((l) => [
      l.connector, l.objectId, when(l.changeTime), l.changeId,
      l.changeTime > now + clockToleranceMs ? `IN THE FUTURE: every real change is refused as older (6919); clear it: pwsync latest clear --connector ${l.connector} --object ${l.objectId}` : '-',
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
export async function withState<T>(configFile: string, fn: (s: HubState, b: Broker, config: LoadedHubConfig, bus?: WorkerBus) => Promise<T>): Promise<T> {
  const config = await loadHubConfig(configFile, { checkFiles: false });
  if (config.broker.kind !== 'nats') checkHubDatabase(config, configFile);
  const { broker, bus } = await openBroker(config, silentLogger());
  try {
    return await fn(await HubState.open(broker), broker, config, bus);
  } finally {
    await broker.close();
  }
}

/** The embedded broker's file must be the hub's: opening a missing one would make an empty store and answer from it. */
function checkHubDatabase(config: LoadedHubConfig, configFile: string): void {
  const dir = config.hub.dataDir;
  const fix = `is the hub started (\`pwsync hub --config ${configFile}\` creates it on its first start), and is ${configFile} the YAML of the hub that runs?`;
  if (!existsSync(dir)) throw new UsageError(`hub.dataDir ${dir} (in ${configFile}) does not exist, so there is no hub state to read: ${fix}`);
  const file = hubDatabase(config);
  if (!existsSync(file)) throw new UsageError(`no hub state in ${file}: hub.dataDir ${dir} (in ${configFile}) holds no hub.db: ${fix}`);
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
    .description('Did each password arrive, and if not, why: per account and connector, with the set-operations behind it. It exits 3 when a row shown failed (out of sync, or a failed set-operation), else 0; 1 or 2 on an error.')
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
      const result = await withState(opts.config, async (s, b, config) => {
        const registry = await DcRegistry.open(b, silentLogger());
        const status = await queryStatus(s, { account, connector: opts.connector, failedOnly: opts.failed }, config.connectors.map((c) => c.name));
        // Changes that wait at a DC's notifier: the account is not in sync while a newer one waits there.
        const pending = pendingAtDcs(await registry.listDcs(), account);
        return {
          ...status, sync: withPending(status.sync, pending), pending,
          // Why a password did not even leave the DC; asked per account (a whole domain's would be long).
          notices: account ? await registry.listNotices(account) : [],
          latest: account ? await latestOf(s, [...status.sync, ...status.operations]) : [],
          clockToleranceMs: config.hub.clockTolerance,
        };
      });
      if (account && !result.accountKnown && result.notices.length === 0 && result.pending.length === 0) {
        throw new UsageError(`no such account: ${opts.account!} (no change for it has reached this hub; check the name, or \`pwsync status --dcs\` for the domain controllers that report here)`);
      }
      // Notices are per hub, not per connector.
      const notices = opts.connector ? [] : result.notices;
      const operations = result.operations.map(({ envelope: _sealed, ...o }) => o);
      // 3: a shown row failed (a person out of sync, a failed set-operation); 1 and 2 are errors.
      if (showsFailure(result)) process.exitCode = 3;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ sync: result.sync, operations, notices, latest: result.latest, pending: account ? result.pending : undefined }, null, 2)}\n`);
        return;
      }
      const waiting = account ? result.pending : [];
      if (result.sync.length > 0 || (notices.length === 0 && waiting.length === 0)) {
        process.stdout.write(`${result.sync.length > 0 ? renderSync(result.sync) : nothingToShow(opts, result.recorded)}\n`);
      }
      if (waiting.length > 0) process.stdout.write(`${result.sync.length > 0 ? '\n' : ''}${waiting.map((p) => `${p.domain}\\${p.samAccountName}: ${describePending(p)}`).join('\n')}\n`);
      if (notices.length > 0) process.stdout.write(`${result.sync.length + waiting.length > 0 ? '\n' : ''}${renderNotices(notices)}\n`);
      // Applied and superseded operations are history: listed with --operations.
      const shown = opts.operations ? operations : operations.filter((o) => o.state !== 'successful' && o.state !== 'superseded');
      if (shown.length > 0) process.stdout.write(`\n${renderOperations(shown)}\n`);
      if (result.latest.length > 0) process.stdout.write(`\n${renderLatest(result.latest, result.clockToleranceMs)}\n`);
    });

  program.command('retry')
    .description('Re-queue set-operations: by id, any that is not successful; or with --connector every failed one of a connector, narrowed by --event and a time span. Each is recorded in the audit trail and logged (event 6983).')
    .requiredOption('-c, --config <file>', 'the hub YAML')
    .argument('[operation...]', 'operation ids (see `pwsync status --operations`)')
    .option('--connector <name>', 'bulk: every failed operation of this connector')
    .option('--event <id>', 'bulk: only failures with this event id, such as 6941 (retries exhausted)')
    .option('--since <duration>', 'bulk: only failures of the last DURATION (30m, 2h, 3d)')
    .option('--from <time>', 'bulk: only failures at or after this ISO 8601 time')
    .option('--to <time>', 'bulk: only failures at or before this ISO 8601 time')
    .option('--dry-run', 'bulk: list what would be re-queued and change nothing')
    .action(async (ids: string[], opts: RetryOptions) => {
      const filter = retryFilter(ids, opts);
      await withState(opts.config, async (s, broker, config) => {
        const audit = await AuditTrail.open(broker);
        const who = localActor();
        // The hub's log gets the event too when it goes to a file; the audit trail has every retry either way.
        const log = config.hub.log.file ? createLogger({ level: config.hub.log.level, file: config.hub.log.file, name: 'pwsync-retry' }) : silentLogger();
        try {
          const requeued = async (o: OperationStatus, detail: string): Promise<void> => {
            await audit.record({ ...who, action: 'retry', subject: o.opId, result: 'ok', detail });
            log.info({ eventId: 6983, opId: o.opId, connector: o.connector, objectId: o.objectId, by: who.actor, from: who.from }, EVENTS[6983].text);
          };
          if (!filter) {
            for (const id of ids) {
              let r: OperationStatus;
              try {
                r = await retryOperation(broker, s, id);
              } catch (e) {
                await audit.record({ ...who, action: 'retry', subject: id, result: 'refused', detail: describeError(e) });
                throw e;
              }
              await requeued(r, 'by operation id');
              process.stdout.write(`re-queued ${r.opId} (${r.account.domain}\\${r.account.samAccountName} → ${r.connector})\n`);
            }
            return;
          }
          if (!config.connectors.some((c) => c.name === filter.connector)) {
            throw new UsageError(`--connector ${filter.connector}: no such connector in ${opts.config}; its connectors: ${config.connectors.map((c) => c.name).join(', ') || '(none)'}`);
          }
          const { retryable, withoutPassword } = await failedMatching(s, filter);
          const what = describeFilter(filter);
          for (const o of retryable) {
            const line = `${o.opId} (${o.account.domain}\\${o.account.samAccountName} → ${o.connector}, event ${o.eventId ?? '-'}, failed ${when(o.updatedAt)})`;
            if (opts.dryRun) {
              process.stdout.write(`would re-queue ${line}\n`);
              continue;
            }
            await requeueOperation(broker, s, o, 'retried by an admin');
            await requeued(o, `bulk: ${what}; was event ${o.eventId ?? '-'}`);
            process.stdout.write(`re-queued ${line}\n`);
          }
          process.stdout.write(`${opts.dryRun ? 'would re-queue' : 're-queued'} ${retryable.length} failed set-operation${retryable.length === 1 ? '' : 's'} (${what})${opts.dryRun ? '; dry run: nothing changed' : ''}\n`);
          if (withoutPassword.length > 0) {
            process.stdout.write(`${withoutPassword.length} more match but hold no sealed password and cannot be retried (superseded by a newer change, 6919, or failed longer ago than hub.keepFailedFor)\n`);
          }
        } finally {
          log.flush();
        }
      });
    });
}

interface RetryOptions { config: string; connector?: string; event?: string; since?: string; from?: string; to?: string; dryRun?: boolean }

/** The bulk filter of `pwsync retry`, or undefined when operations are named by id; refuses a mix. */
export function retryFilter(ids: readonly string[], o: Omit<RetryOptions, 'config'>, now = Date.now()): RetryFilter | undefined {
  const narrowing = ['event', 'since', 'from', 'to', 'dryRun'].filter((k) => o[k as keyof typeof o] !== undefined);
  if (o.connector === undefined) {
    if (narrowing.length > 0) throw new UsageError(`--${narrowing.map((k) => (k === 'dryRun' ? 'dry-run' : k)).join(', --')} select${narrowing.length === 1 ? 's' : ''} among a connector's failures: add --connector NAME`);
    if (ids.length === 0) throw new UsageError('name the operations to retry (`pwsync status --operations` lists them), or retry every failed one of a connector with --connector NAME');
    return undefined;
  }
  if (ids.length > 0) throw new UsageError('give operation ids or --connector, not both');
  const f: RetryFilter = { connector: o.connector };
  if (o.event !== undefined) {
    const n = Number(o.event);
    if (!Number.isInteger(n) || !isEventId(n)) throw new UsageError(`--event ${o.event}: not an event id of pwsync (such as 6941, retries exhausted; see the README's event table)`);
    f.eventId = n;
  }
  if (o.since !== undefined) {
    if (o.from !== undefined || o.to !== undefined) throw new UsageError('--since and --from/--to both give the time span: use one');
    let ms: number;
    try {
      ms = parseDuration(o.since);
    } catch {
      throw new UsageError(`--since ${o.since}: not a duration; write it as 30m, 2h or 3d`);
    }
    f.from = now - ms;
  }
  const time = (flag: string, v: string): number => {
    const t = Date.parse(v);
    if (Number.isNaN(t)) throw new UsageError(`--${flag} ${v}: not a time; write it in ISO 8601, such as 2026-12-07T08:00:00Z`);
    return t;
  };
  if (o.from !== undefined) f.from = time('from', o.from);
  if (o.to !== undefined) f.to = time('to', o.to);
  if (f.from !== undefined && f.to !== undefined && f.from > f.to) throw new UsageError(`--from ${o.from} is after --to ${o.to}`);
  return f;
}

function describeFilter(f: RetryFilter): string {
  return [`connector ${f.connector}`, f.eventId !== undefined ? `event ${f.eventId}` : '', f.from !== undefined ? `failed from ${when(f.from)}` : '', f.to !== undefined ? `to ${when(f.to)}` : '']
    .filter(Boolean).join(', ');
}
