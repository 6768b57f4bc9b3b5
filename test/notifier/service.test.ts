import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import type { NotifierConfig } from '../../config/schema.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { generateTlsMaterial, type TlsMaterial } from '../../core/tls-gen.ts';
import { Secret } from '../../core/secret.ts';
import { sendHookChange } from '../../notifier/hook-client.ts';
import { decodeQueuedChange } from '../../notifier/queued-change.ts';
import { startNotifier, type RunningNotifier } from '../../notifier/service.ts';
import { TEST_PASSWORD_PREFIX, testPassword } from '../lib/passwords.ts';
import { capturingLog, tempDir, waitFor } from './helpers.ts';
import { TestHub } from './test-hub.ts';

const BIN = fileURLToPath(new URL('../../bin/pwsync.mjs', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

let tls: TlsMaterial;
const running: Array<{ stop(): Promise<void> }> = [];

before(async () => {
  tls = await generateTlsMaterial({ hosts: ['localhost', '127.0.0.1'] });
});

after(async () => {
  for (const r of running.reverse()) await r.stop().catch(() => undefined);
});

interface World {
  dir: string;
  config: NotifierConfig;
  hubs: TestHub[];
  log: ReturnType<typeof capturingLog>;
}

/** A notifier config for hubs `enabled` plus one disabled target that points at the first hub. */
async function world(names: string[], over: { shutdownGrace?: number } = {}): Promise<World> {
  const dir = tempDir();
  const ca = join(dir, 'ca.pem');
  writeFileSync(ca, tls.caCertPem);
  const hubs = names.map((n) => new TestHub(n, dir, tls));
  for (const h of hubs) {
    await h.start();
    running.push(h);
  }
  const target = (h: TestHub, enabled: boolean, name = h.name) => ({
    name, enabled, address: h.address, tls: { ca, serverName: 'localhost' }, publicKey: h.publicKeyFile,
    retryInterval: 200, maxRetryInterval: 400, batchSize: 10, timeout: 3000,
  });
  const config: NotifierConfig = {
    notifier: {
      domain: 'corp.example', host: 'dc1.corp.example', dataDir: join(dir, 'data'),
      hook: { socket: join(dir, 'hook.sock'), mode: '0600', timeout: 5000 },
      // The schema types log.level as never (a Type.Union over a mapped array); reported to the lead.
      log: { level: 'debug' } as NotifierConfig['notifier']['log'], queue: { warnAge: 3_600_000, maxAge: 72 * 3_600_000 }, shutdownGrace: over.shutdownGrace ?? 5000,
      scopeCacheTtl: 60_000, report: 60_000, clockTolerance: 300_000,
    },
    targets: [...hubs.map((h) => target(h, true)), target(hubs[0]!, false, 'hub-off')],
  };
  return { dir, config, hubs, log: capturingLog() };
}

async function start(w: World): Promise<RunningNotifier> {
  const n = await startNotifier(w.config, w.log.log);
  running.push(n);
  return n;
}

/** Runs `pwsync hook` as its own process, the password on standard input only. */
function hookProcess(socket: string, sam: string, password: Buffer): Promise<{ code: number | null; stdout: string; stderr: string; cmdline: Buffer; environ: Buffer }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'hook', '--socket', socket, '--domain', 'corp.example', '--sam', sam, '--upn', `${sam}@corp.example`], {
      cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'],
    });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('pwsync hook did not exit within 30 s')); }, 30_000);
    // What any local user could read about the process while it runs.
    const cmdline = readFileSync(`/proc/${child.pid}/cmdline`);
    const environ = readFileSync(`/proc/${child.pid}/environ`);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr, cmdline, environ }); });
    child.stdin.end(Buffer.concat([password, Buffer.from('\n')]));
  });
}

/** Every change still stored for a subject prefix, read through a second broker handle. */
async function stored(w: World, filter: string) {
  const b = openSqliteBroker({ file: join(w.config.notifier.dataDir, 'notifier.db') });
  try {
    const c = await b.consumer(`inspect-${Date.now()}`, filter);
    return await c.fetch({ max: 1000, expiresMs: 0 });
  } finally {
    await b.close();
  }
}

test('a change from `pwsync hook` is queued sealed for each enabled target and opened by each hub', async () => {
  const w = await world(['hub-a', 'hub-b']);
  const [hubA, hubB] = w.hubs as [TestHub, TestHub];
  await hubB.stop();
  const n = await start(w);
  assert.equal(statSync(n.hookPath).mode & 0o777, 0o600);
  const pw = testPassword('svc-hook-1');
  const run = await hookProcess(n.hookPath, 'alice', pw);
  assert.equal(run.code, 0, run.stderr);
  const changeId = /^queued ([0-9a-f]{32})\n$/.exec(run.stdout)?.[1];
  assert.ok(changeId, run.stdout);
  for (const proc of [run.cmdline, run.environ]) {
    assert.equal(proc.includes(pw), false, 'the password is not in the process\'s argv or environment');
    assert.equal(proc.includes(Buffer.from(TEST_PASSWORD_PREFIX)), false);
  }

  await waitFor('hub-a received it', () => hubA.received.length === 1);
  assert.deepEqual({ ...hubA.received[0], password: undefined }, { changeId, account: 'alice', sourceDc: 'dc1.corp.example', password: undefined });
  assert.ok(hubA.received[0]!.password.equals(pw));

  // hub-b is down: the change waits in its queue, sealed.
  const waiting = await stored(w, 'deliver.hub-b');
  assert.equal(waiting.length, 1);
  assert.equal(waiting[0]!.data.includes(pw), false);
  assert.equal(decodeQueuedChange(waiting[0]!.data).changeId.toString('hex'), changeId);
  assert.equal((await stored(w, 'deliver.hub-off')).length, 0, 'the disabled target queues nothing');
  await waitFor('retries to hub-b', () => w.log.events(6943).length >= 2);

  await hubB.start();
  await waitFor('hub-b received it', () => hubB.received.length === 1);
  assert.ok(hubB.received[0]!.password.equals(pw));
  assert.equal(hubB.received[0]!.changeId, changeId);
  assert.equal(hubA.received.length, 1, 'each hub got the change once; the disabled target sent nothing to hub-a');
  await n.stop();
  assert.equal(n.state, 'stopped');
  assert.equal(JSON.stringify(w.log.lines).includes(TEST_PASSWORD_PREFIX), false);
});

test('changes queued while a hub is down arrive in order once it is up', async () => {
  const w = await world(['hub-a']);
  const [hub] = w.hubs as [TestHub];
  await hub.stop();
  const n = await start(w);
  const sent: string[] = [];
  for (let i = 0; i < 7; i++) {
    const account = ['alice', 'bob'][i % 2]!;
    sent.push((await sendHookChange(n.hookPath, { domain: 'corp.example', samAccountName: account }, Secret.adopt(testPassword(`order-${i}`)), 5000)).changeId);
  }
  await waitFor('a few failed deliveries', () => w.log.events(6943).length >= 3);
  await hub.start();
  await waitFor('all seven received', () => hub.received.length >= 7);
  assert.deepEqual(hub.received.map((r) => r.changeId), sent);
  hub.received.forEach((r, i) => assert.ok(r.password.equals(testPassword(`order-${i}`))));
  const backoff = w.log.events(6943).map((l) => l.retryInMs);
  assert.deepEqual(backoff.slice(0, 3), [200, 400, 400]);
  await n.stop();
});

test('stop answers hook requests in flight, lets the delivery call finish, and leaves nothing behind', async () => {
  const w = await world(['hub-a']);
  const [hub] = w.hubs as [TestHub];
  hub.delayMs = 600;
  const n = await start(w);
  const { changeId } = await sendHookChange(n.hookPath, { domain: 'corp.example', samAccountName: 'alice' }, Secret.adopt(testPassword('drain')), 5000);
  await waitFor('the call began', () => hub.begun === 1);
  const states: string[] = [];
  const stopping = n.stop();
  states.push(n.state);
  await stopping;
  states.push(n.state);
  assert.deepEqual(states, ['stopping', 'stopped']);
  assert.equal(hub.finished, 1);
  assert.equal(hub.received[0]!.changeId, changeId);
  // The change was acknowledged before the queue closed: a restart has nothing to resend.
  const b = openSqliteBroker({ file: join(w.config.notifier.dataDir, 'notifier.db') });
  const c = await b.consumer('deliver-hub-a', 'deliver.hub-a');
  assert.equal((await c.info()).pending, 0);
  await b.close();
  await assert.rejects(sendHookChange(n.hookPath, { domain: 'corp.example', samAccountName: 'alice' }, Secret.adopt(testPassword('late')), 2000), /no notifier is listening/);
});

test('a delivery call longer than shutdownGrace is abandoned and its change stays queued for the restart', async () => {
  const w = await world(['hub-a'], { shutdownGrace: 200 });
  const [hub] = w.hubs as [TestHub];
  hub.delayMs = 1500;
  const n = await start(w);
  const { changeId } = await sendHookChange(n.hookPath, { domain: 'corp.example', samAccountName: 'alice' }, Secret.adopt(testPassword('grace')), 5000);
  await waitFor('the call began', () => hub.begun === 1);
  await n.stop();
  assert.equal(n.state, 'stopped');
  assert.ok(w.log.lines.some((l) => /did not finish within shutdownGrace/.test(l.msg)));
  hub.delayMs = 0;
  const again = await start(w);
  await waitFor('the change was sent again after the restart', () => hub.received.filter((r) => r.changeId === changeId).length >= 2);
  await again.stop();
});
