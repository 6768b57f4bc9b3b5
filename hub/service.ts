import { createPrivateKey } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Broker } from '../core/broker.ts';
import { openSqliteBroker } from '../core/broker-sqlite.ts';
import { keyringOf, privateRecipientFromPem, testPrivateRecipientFromPem, testSuitesEnabled, TEST_SUITES_ENV, type Keyring } from '../core/envelope.ts';
import { watchCertificateExpiry } from '../core/cert-expiry.ts';
import { describeError, PwsyncError, UsageError } from '../core/errors.ts';
import { EVENTS } from '../core/events.ts';
import { natsBrokerOptions } from '../config/broker.ts';
import type { HubConfig } from '../config/schema.ts';
import { createHubServer } from '../proto/channel.ts';
import { purgeOperations } from './admin.ts';
import { AuditTrail } from './audit.ts';
import { startAutoRetry } from './auto-retry.ts';
import { lockDataDir } from './data-lock.ts';
import { recoverStuckOperations } from './recovery.ts';
import { authenticatesCallers, hubAuthenticator, warnUnauthenticated } from './authentication.ts';
import { startDomainSide, type DomainSide } from './dc-side.ts';
import { ackWaitOf, ConnectorWorker } from './dispatcher.ts';
import { Ingest } from './ingest.ts';
import { Resolver } from './resolver.ts';
import { hubBrokerLayout } from './layout.ts';
import { HubState } from './state.ts';
import { recordWorkerHeartbeats } from './workers.ts';
import type { WorkerBus } from '../core/worker-bus.ts';
import { closeTarget, openTarget, type Target } from './targets.ts';

export type HubConfigFile = Readonly<HubConfig> & { readonly baseDir: string };

export interface RunningHub {
  readonly port: number;
  readonly state: HubState;
  /** Settles if one of the hub's loops (resolver, a connector's dispatcher) stopped on its own: the hub can no longer do its work and should exit. */
  readonly failed: Promise<Error>;
  stop(): Promise<void>;
}

export function hubDatabase(config: Pick<HubConfig, 'hub'>): string {
  return path.join(config.hub.dataDir, 'hub.db');
}

export function loadKeyring(files: readonly string[]): Keyring {
  return keyringOf(files.map((f) => {
    try {
      const pem = readFileSync(f);
      // An RSA key opens only the test-only suite 241 and is refused unless PWSYNC_TEST_ONLY_SUITES=1.
      return createPrivateKey(pem).asymmetricKeyType === 'rsa' ? testPrivateRecipientFromPem(pem) : privateRecipientFromPem(pem);
    } catch (e) {
      throw new UsageError(`hub.keys: cannot read a P-256 private key from ${f} (${describeError(e)}); create one with \`pwsync keys generate\``);
    }
  }));
}

/**
 * The embedded broker (one hub), or NATS JetStream shared by several hubs. A NATS without the
 * streams, buckets and consumers this configuration needs is refused before anything starts.
 */
export async function openBroker(config: HubConfigFile, log: Logger): Promise<{ broker: Broker; shared: boolean; bus?: WorkerBus }> {
  const blog = log.child({ component: 'broker' });
  if (config.broker.kind !== 'nats') {
    return { broker: openSqliteBroker({ file: hubDatabase(config), groupCommitMs: 3, log: blog }), shared: false };
  }
  const { openNatsBroker } = await import('../core/broker-nats.ts');
  const broker = await openNatsBroker(natsBrokerOptions(config, { log: blog, name: `pwsync hub ${config.hub.id}` }));
  const missing = await broker.missingFromLayout(hubBrokerLayout(config)).catch(async (e: unknown) => {
    await broker.close();
    throw e;
  });
  if (missing.length > 0) {
    await broker.close();
    throw new PwsyncError(6971, `the broker (NATS) lacks ${missing.join(', ')}: run \`pwsync broker init --config FILE\` with this hub's YAML once, then start the hub again`, { retryable: false });
  }
  log.info({ servers: config.broker.servers, prefix: config.broker.prefix }, 'broker: NATS JetStream, shared with the other hubs');
  return { broker, shared: true, bus: broker.bus() };
}

/** How often the hub looks for set-operations that nothing would move (besides once at start). */
const RECOVERY_SWEEP_MS = 300_000;
/** How long past its due time a set-operation counts as stuck where the broker cannot list what is queued (JetStream). */
const STUCK_AFTER_MS = 600_000;
/** While the hub runs, an operation's status is written a moment before its publish: younger ones are left alone. */
const SWEEP_GRACE_MS = 60_000;

/**
 * hub.dataDir for the embedded broker, held by this hub alone (event 6982 names the holder). A
 * folder this start created is removed again if the start fails, so a failed start leaves nothing.
 */
function holdDataDir(dir: string, log: Logger): { release(failedStart: boolean): void } {
  // The first folder this call made (dir or a parent), if any: what a failed start takes away again.
  const made = mkdirSync(dir, { recursive: true, mode: 0o700 });
  const remove = (): void => { if (made) rmSync(made, { recursive: true, force: true }); };
  let lock: ReturnType<typeof lockDataDir>;
  try {
    lock = lockDataDir(dir);
  } catch (e) {
    remove();
    if (e instanceof PwsyncError) log.error({ eventId: e.eventId, dataDir: dir }, e.message);
    throw e;
  }
  return {
    release: (failedStart) => {
      lock.release();
      if (failedStart) remove();
    },
  };
}

/**
 * Starts the hub: broker, connectors with their joins and extensions, the resolver and one worker
 * per connector, then the gRPC ingest last (nothing is acknowledged before everything is ready).
 * `stop()` refuses new calls, lets in-flight batches finish within `shutdownGrace`, then closes.
 */
export async function startHub(config: HubConfigFile, log: Logger): Promise<RunningHub> {
  if (testSuitesEnabled()) log.warn({ eventId: 6962, env: TEST_SUITES_ENV }, EVENTS[6962].text);
  const keyring = loadKeyring(config.hub.keys);
  // Hubs sharing NATS keep nothing in hub.dataDir; the embedded broker lives there, for one hub.
  const dataDir = config.broker.kind === 'nats' ? undefined : holdDataDir(config.hub.dataDir, log);
  let opened: Awaited<ReturnType<typeof openBroker>>;
  try {
    opened = await openBroker(config, log);
  } catch (e) {
    dataDir?.release(true);
    throw e;
  }
  const { broker, shared, bus } = opened;
  const targets: Target[] = [];
  const abort = new AbortController();
  const loops: Promise<void>[] = [];
  let server: Awaited<ReturnType<typeof createHubServer>> | undefined;
  let purge: NodeJS.Timeout | undefined;
  const timers: NodeJS.Timeout[] = [];
  let domainSide: DomainSide | undefined; // DC check, DC registry, reports (issue 4, part 3)
  let stopHeartbeats: (() => void) | undefined;
  let stopAutoRetry: (() => void) | undefined;
  let stopExpiryWatch: (() => void) | undefined;
  const close = async (): Promise<void> => {
    abort.abort();
    stopHeartbeats?.();
    stopAutoRetry?.();
    stopExpiryWatch?.();
    if (purge) clearInterval(purge);
    for (const t of timers) clearInterval(t);
    await server?.close(config.hub.shutdownGrace);
    await domainSide?.stop();
    await Promise.race([Promise.allSettled(loops), new Promise((r) => setTimeout(r, config.hub.shutdownGrace).unref())]);
    await Promise.allSettled(targets.map(closeTarget));
    await broker.close();
  };
  try {
    const state = await HubState.open(broker);
    const joinStore = await broker.kv('joins');
    for (const c of config.connectors) targets.push(await openTarget(c, config.baseDir, joinStore, log, { bus, hubId: config.hub.id }));
    if (bus && config.connectors.some((c) => c.kind === 'remote')) {
      const stop = recordWorkerHeartbeats(bus, await broker.kv('workers'), log.child({ component: 'workers' }));
      stopHeartbeats = stop;
    }
    const audit = await AuditTrail.open(broker);
    const recovery = { hubId: config.hub.id, audit, staleMs: STUCK_AFTER_MS };
    const rlog = log.child({ component: 'recovery' });
    const recover = (graceMs: number): Promise<void> => recoverStuckOperations(broker, state, targets, { ...recovery, graceMs }, rlog)
      .then(() => undefined, (e: unknown) => rlog.warn({ err: describeError(e) }, 'looking for stuck set-operations failed; the next sweep tries again'));
    // Before any loop runs, every unsettled operation must have a delivery: none of this hub's is in flight yet.
    await recover(0);
    timers.push(setInterval(() => void recover(SWEEP_GRACE_MS), RECOVERY_SWEEP_MS).unref());
    const resolver = new Resolver(broker, state, targets, { retryDelayMs: 5000, clockToleranceMs: config.hub.clockTolerance }, log.child({ component: 'resolver' }));
    loops.push(resolver.run(abort.signal));
    for (const t of targets) {
      // With hubs sharing the broker, an object is claimed while it is set, for as long as its delivery's lease.
      const claims = shared ? { hubId: config.hub.id, leaseMs: ackWaitOf(t.config) } : undefined;
      loops.push(new ConnectorWorker(t, broker, state, keyring, { clockToleranceMs: config.hub.clockTolerance, ...(claims ? { shared: claims } : {}) }).run(abort.signal));
    }
    let failed!: (e: Error) => void;
    const failure = new Promise<Error>((resolve) => { failed = resolve; });
    for (const l of loops) {
      l.catch((e: unknown) => {
        log.fatal({ err: describeError(e) }, 'a hub loop stopped: the hub stops so that its supervisor restarts it');
        failed(e instanceof Error ? e : new Error(describeError(e)));
      });
    }
    const dcs = domainSide = await startDomainSide(config, broker, log, keyring.ids());
    const ingest = new Ingest(broker, keyring, config.domains, dcs.authorizer, log.child({ component: 'ingest' }), config.hub.clockTolerance);
    const clientCa = config.hub.tls.clientCa ? readFileSync(config.hub.tls.clientCa) : undefined;
    server = await createHubServer({
      listen: config.hub.listen,
      tlsCert: readFileSync(config.hub.tls.cert),
      tlsKey: readFileSync(config.hub.tls.key),
      ...(clientCa ? { clientCa } : {}),
      maxMessageBytes: config.hub.maxMessageBytes,
      auth: await hubAuthenticator(config, log, dcs.lookupSpn),
      hubId: config.hub.id,
      log: log.child({ component: 'grpc' }),
      submit: async (req, caller, signal) => {
        const acks = await ingest.submit(req.changes, caller, signal);
        await dcs.submitted(req, caller);
        return acks;
      },
      report: dcs.report,
    });
    const runPurge = (): void => {
      purgeOperations(state, config.hub.keepFailedFor, config.hub.keepHistoryFor)
        .then((n) => { if (n.sealed + n.forgotten > 0) log.info(n, 'dropped sealed passwords of old failures and forgot old settled operations'); })
        .catch((e: unknown) => log.warn({ err: describeError(e) }, 'purging old operations failed'));
    };
    purge = setInterval(runPurge, 3_600_000).unref();
    if (!authenticatesCallers(config)) timers.push(setInterval(() => warnUnauthenticated(config, log), 3_600_000).unref());
    if (clientCa) stopExpiryWatch = watchCertificateExpiry(log, [{ setting: 'hub.tls.clientCa', file: config.hub.tls.clientCa!, pem: clientCa }]);
    // Rebuild join indexes in the background too, so the first change after an edit finds them ready.
    for (const t of targets) {
      timers.push(setInterval(() => {
        t.joins?.refresh().catch((e: unknown) => t.log.warn({ err: describeError(e) }, 'cannot read the connector\'s objects for joins'));
      }, t.config.joinRefresh).unref());
    }
    runPurge();
    stopAutoRetry = startAutoRetry(broker, state, targets, audit, config.hub.id);
    log.info({ listen: config.hub.listen, port: server.port, connectors: targets.map((t) => t.config.name) }, 'hub started');
    return {
      port: server.port, state, failed: failure,
      stop: async () => {
        try {
          await close();
        } finally {
          dataDir?.release(false);
        }
      },
    };
  } catch (e) {
    await close().catch(() => undefined);
    dataDir?.release(true);
    throw e;
  }
}
