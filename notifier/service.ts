import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NotifierConfig, TargetConfig } from '../config/schema.ts';
import { openSqliteBroker } from '../core/broker-sqlite.ts';
import { subjectToken, type Broker } from '../core/broker.ts';
import { createPublicKey } from 'node:crypto';
import { recipientFromPem, testRecipientFromPem, testSuitesEnabled, TEST_SUITES_ENV, type RecipientKey } from '../core/envelope.ts';
import { watchCertificateExpiry } from '../core/cert-expiry.ts';
import { EVENTS } from '../core/events.ts';
import { describeError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Secret } from '../core/secret.ts';
import { createFailoverClient, createSubmitClient } from '../proto/channel.ts';
import { targetAuthenticator } from './authentication.ts';
import { createCapture, type Capture, type CaptureTarget } from './capture.ts';
import { startDelivery, type HubChannel, type TargetDelivery } from './delivery.ts';
import type { HookChange } from './hook-protocol.ts';
import type { PendingChange } from '../proto/generated/pwsync/v1/PendingChange.ts';
import { startHookServer, type HookServer } from './hook-server.ts';
import type { CaptureSource } from './capture-source.ts';
import { startSambaCapture } from './samba/supervisor.ts';
import { startWindowsCapture } from './windows/spool-drain.ts';
import { startReports, type RunningReports } from './report.ts';
import { HubKeyCheck, KeyHold, loadHoldKey } from './key-hold.ts';
import { PendingIndex, type PendingEntry } from './pending.ts';
import type { Scope } from './scope.ts';
import { scopeFromConfig } from './scope-ldap.ts';

/**
 * The notifier service on a domain controller: the hook endpoint, the durable per-target queues
 * (`<dataDir>/notifier.db`, ciphertext only) and one delivery loop per enabled target.
 *
 * Lifecycle: running → stopping (no new hook connections; requests in flight are answered) →
 * draining (each target's call in flight may finish within shutdownGrace) → stopped (broker
 * closed). Anything not acknowledged by then stays queued and is sent after a restart.
 */
export type NotifierState = 'running' | 'stopping' | 'draining' | 'stopped';

export interface RunningNotifier {
  readonly hookPath: string;
  readonly state: NotifierState;
  stop(): Promise<void>;
}

export interface NotifierSeams {
  /** Which accounts each target receives; by default the targets' scope groups over notifier.directory. */
  scope?: Scope;
  /** The channel to a target's hub; gRPC over TLS by default. */
  channelFor?: (target: TargetConfig) => HubChannel;
}

export async function startNotifier(config: NotifierConfig & { baseDir?: string }, log: Logger, seams: NotifierSeams = {}): Promise<RunningNotifier> {
  const n = config.notifier;
  if (testSuitesEnabled()) log.warn({ eventId: 6962, env: TEST_SUITES_ENV }, EVENTS[6962].text);
  const enabled = config.targets.filter((t) => t.enabled);
  for (const t of config.targets.filter((x) => !x.enabled)) log.info({ target: t.name }, 'target disabled: it receives nothing');
  const captureTargets: CaptureTarget[] = enabled.map((t) => ({
    name: t.name, token: subjectToken(t.name), recipient: targetRecipient(t),
  }));
  const keyChecks = captureTargets.map((t) => new HubKeyCheck(t.name, t.recipient.keyId.toString('hex'), log.child({ component: 'keys' })));
  const channelFor = seams.channelFor ?? ((t: TargetConfig) => grpcChannel(t, n.kerberos));
  const channels: HubChannel[] = [];
  const deliveries: TargetDelivery[] = [];
  let hook: HookServer | undefined;
  let capture: Capture | undefined;
  const sources: CaptureSource[] = [];
  let reports: RunningReports | undefined;
  const scope = seams.scope ?? scopeFromConfig(config, config.baseDir ?? process.cwd(), log.child({ component: 'scope' }));

  let stopExpiryWatch = (): void => {};
  mkdirSync(n.dataDir, { recursive: true, mode: 0o700 });
  const broker: Broker = openSqliteBroker({ file: join(n.dataDir, 'notifier.db'), groupCommitMs: 3, log: log.child({ component: 'broker' }) });
  const inFlight = new Set<Promise<unknown>>();
  const keyHolds: KeyHold[] = [];
  try {
    const pending = await PendingIndex.open(broker);
    const holdKey = loadHoldKey(n.dataDir);
    // The keys each hub named in its last report answer: a mismatch is known before this run's first report.
    const hubKeys = await broker.kv('hub-keys');
    for (const [i, t] of captureTargets.entries()) {
      const last = await hubKeys.get(t.token);
      if (last) keyChecks[i]!.update(JSON.parse(last.value.toString('utf8')) as string[], true);
      const hold = await KeyHold.open({ broker, target: t, check: keyChecks[i]!, holdKey, pending, log: log.child({ component: 'keys' }) });
      keyHolds.push(hold);
      t.keyHold = hold;
    }
    for (const [i, t] of enabled.entries()) {
      const channel = channelFor(t);
      channels.push(channel);
      deliveries.push(await startDelivery({
        broker, channel, notifierId: n.host, warnAgeMs: n.queue.warnAge, maxAgeMs: n.queue.maxAge,
        keys: { check: keyChecks[i]!, hold: keyHolds[i]! }, pending,
        log: log.child({ component: 'delivery' }),
        target: {
          name: t.name, token: subjectToken(t.name), batchSize: t.batchSize,
          retryIntervalMs: t.retryInterval, maxRetryIntervalMs: t.maxRetryInterval, timeoutMs: t.timeout,
        },
      }));
    }
    // After the channels, which refuse a certificate that cannot be read, saying which setting.
    stopExpiryWatch = watchCertificateExpiry(log, enabled.filter((t) => t.tls.cert).map((t) => ({
      setting: `targets[${t.name}].tls.cert`, file: t.tls.cert!, pem: readTargetFile(t, 'tls.cert', t.tls.cert!),
    })));
    capture = await createCapture({
      broker, targets: captureTargets, scope, domain: n.domain, host: n.host, clockToleranceMs: n.clockTolerance, pending,
      log: log.child({ component: 'capture' }),
    });
    const captured = capture;
    for (const t of captureTargets) t.keyHold!.start((change) => captured.resealed(t, change));
    hook = await startHookServer({
      path: n.hook.socket, mode: parseInt(n.hook.mode, 8), timeoutMs: n.hook.timeout, log: log.child({ component: 'hook' }),
      // Tracked so that stop() closes the broker only after every change in flight is durable.
      onChange: (change: HookChange, password: Secret) => {
        const p = captured.clear(change, password);
        inFlight.add(p);
        void p.then(() => inFlight.delete(p), () => inFlight.delete(p));
        return p;
      },
      onSealed: (change) => {
        const p = captured.sealed(change);
        inFlight.add(p);
        void p.then(() => inFlight.delete(p), () => inFlight.delete(p));
        return p;
      },
    });
    // After the hook socket listens: the capture script talks to it.
    if (n.capture?.samba) sources.push(await startSambaCapture(config, { log: log.child({ component: 'samba' }) }));
    const win = n.capture?.windows;
    if (win) {
      sources.push(await startWindowsCapture({
        spoolDir: win.spoolDir, ...(win.pipe ? { pipe: win.pipe } : {}), dllName: win.dllName, pollMs: win.poll,
        targets: captureTargets, disabledTargets: config.targets.filter((t) => !t.enabled).map((t) => t.name),
        capture: captured, taken: await broker.kv('windows-taken'), host: n.host, log: log.child({ component: 'windows' }),
      }));
    }
    const queued = async (i: number): Promise<number> => (await deliveries[i]!.queued()) + (await captured.held(captureTargets[i]!.token)) + (await keyHolds[i]!.count());
    reports = await startReports({
      broker, notifierId: n.host, domain: n.domain, host: n.host, intervalMs: n.report, log: log.child({ component: 'report' }),
      capture: () => [...sources.map((c) => c.state()), { source: 'hook', state: 'running', detail: '', lastCaptureMs: 0 }],
      targets: enabled.map((t, i) => ({
        name: t.name, token: captureTargets[i]!.token, channel: channels[i]!, timeoutMs: t.timeout,
        retryIntervalMs: t.retryInterval, maxRetryIntervalMs: t.maxRetryInterval,
        queued: () => queued(i),
        sealingKeyId: keyChecks[i]!.keyId,
        pending: async () => {
          const token = captureTargets[i]!.token;
          // The index is written beside the queues, not with them: a crash between the two can leave an entry behind.
          if (await queued(i) === 0) await pending.clear(token);
          const { entries, omitted } = await pending.list(token, MAX_PENDING_REPORTED);
          return { changes: entries.map((e) => pendingChange(e, keyChecks[i]!)), omitted };
        },
        hubKeys: async (ids) => {
          keyChecks[i]!.update(ids);
          await hubKeys.put(captureTargets[i]!.token, Buffer.from(JSON.stringify(ids), 'utf8'));
          if (ids.length > 0) await keyHolds[i]!.releaseParked(ids);
        },
      })),
    });
  } catch (e) {
    stopExpiryWatch();
    await reports?.stop();
    await Promise.all(sources.map((c) => c.stop()));
    await hook?.close();
    await capture?.stop();
    await Promise.all(keyHolds.map((k) => k.stop()));
    await Promise.all(deliveries.map((d) => d.stop()));
    for (const c of channels) c.close();
    await scope.close?.();
    await broker.close();
    throw e;
  }

  let state: NotifierState = 'running';
  let stopping: Promise<void> | undefined;
  const hookServer = hook;
  const captureStop = capture!;
  const stop = async (): Promise<void> => {
    state = 'stopping';
    stopExpiryWatch();
    // Before the hook socket closes, so that a capture script in flight still gets its answer.
    await Promise.all(sources.map((c) => c.stop()));
    await hookServer.close();
    await Promise.allSettled([...inFlight]);
    await captureStop.stop();
    await Promise.all(keyHolds.map((k) => k.stop()));
    await reports?.stop();
    state = 'draining';
    const drained = Promise.all(deliveries.map((d) => d.stop())).then(() => true);
    const abandon = new AbortController();
    const inTime = await Promise.race([drained, sleep(n.shutdownGrace, false, { signal: abandon.signal }).catch(() => false)]);
    abandon.abort();
    if (!inTime) log.warn({ shutdownGraceMs: n.shutdownGrace }, 'a delivery call did not finish within shutdownGrace; its changes stay queued and are sent after a restart');
    for (const c of channels) c.close();
    await scope.close?.();
    try {
      await broker.close();
    } catch (e) {
      log.error({ error: describeError(e) }, 'closing the notifier queue failed');
    }
    state = 'stopped';
    log.info('notifier stopped');
  };
  log.info({ socket: hookServer.path, targets: enabled.map((t) => t.name) }, 'notifier running');
  return {
    hookPath: hookServer.path,
    get state() {
      return state;
    },
    stop: () => (stopping ??= stop()),
  };
}

/** Accounts named per report and target; beyond it the report says how many more (pending_omitted). */
const MAX_PENDING_REPORTED = 1_000;

function pendingChange(e: PendingEntry, check: HubKeyCheck): PendingChange {
  const held = e.where === 'key' ? `held: the notifier's key for this hub is ${check.keyId}, the hub has key ${check.hubKeyIds.join(', ') || 'unknown'} (6987); kept sealed for the notifier's hold key until that is fixed`
    : e.where === 'parked' ? `parked: the hub refused it as sealed for key ${e.keyId ?? 'unknown'} (6988)`
      : e.where === 'scope' ? 'held until its scope can be decided (6957)'
        : check.reason() ?? '';
  return {
    account: {
      samAccountName: e.samAccountName, objectGuid: e.objectGuid, objectSid: e.objectSid,
      userPrincipalName: e.userPrincipalName, distinguishedName: e.distinguishedName,
    },
    changeTimeMs: e.changeTimeMs, queuedSinceMs: e.sinceMs, held,
  };
}

function readTargetFile(t: TargetConfig, setting: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new Error(`target ${t.name}: cannot read ${setting} ${file}: ${describeError(e)}`);
  }
}

/** The key a target's changes are sealed for; an unreadable or wrong one stops the notifier at start. */
export function targetRecipient(t: TargetConfig): RecipientKey {
  const pem = readTargetFile(t, 'publicKey', t.publicKey);
  // An RSA key serves only the filter DLL's test-only suite, and only with PWSYNC_TEST_ONLY_SUITES=1.
  if (isRsa(pem)) {
    try {
      return testRecipientFromPem(pem);
    } catch (e) {
      throw new Error(`target ${t.name}: publicKey ${t.publicKey}: ${describeError(e)}`);
    }
  }
  try {
    return recipientFromPem(pem);
  } catch (e) {
    throw new Error(`target ${t.name}: publicKey ${t.publicKey} is not a P-256 public key in PEM: ${describeError(e)} (write it with \`pwsync keys generate\` on the hub)`);
  }
}

function isRsa(pem: Buffer): boolean {
  try {
    return createPublicKey(pem).asymmetricKeyType === 'rsa';
  } catch {
    return false;
  }
}

function grpcChannel(t: TargetConfig, kerberos: NotifierConfig['notifier']['kerberos']): HubChannel {
  const ca = readTargetFile(t, 'tls.ca', t.tls.ca);
  const own = t.tls.cert && t.tls.key ? { cert: readTargetFile(t, 'tls.cert', t.tls.cert), key: readTargetFile(t, 'tls.key', t.tls.key) } : undefined;
  const client = (address: string) => createSubmitClient({
    address, ca,
    ...(t.tls.serverName ? { serverName: t.tls.serverName } : {}),
    ...(own ? { clientCertificate: own } : {}),
    auth: targetAuthenticator(t, kerberos, address),
    timeoutMs: t.timeout,
  });
  if (!t.failover) return client(t.address);
  return createFailoverClient([t.address, ...t.failover].map((address) => ({ address, client: client(address) })));
}
