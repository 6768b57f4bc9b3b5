import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PWSYNC_BIN, REPO } from '../../cli/lab.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { subjectToken, type Broker, type Consumer } from '../../core/broker.ts';
import { recipientFromPem, seal } from '../../core/envelope.ts';
import { generateRecipientKeys } from '../../core/keys.ts';
import { Secret } from '../../core/secret.ts';
import { createCapture, type Capture } from '../../notifier/capture.ts';
import type { SealedCapture } from '../../notifier/hook-protocol.ts';
import { sendHookChange, sendSealedChange } from '../../notifier/hook-client.ts';
import { startHookServer, type HookServer } from '../../notifier/hook-server.ts';
import { decodeQueuedChange, deliverConsumer, deliverSubject } from '../../notifier/queued-change.ts';
import { includeAll } from '../../notifier/scope.ts';
import { testPassword } from '../lib/passwords.ts';
import { capturingLog, tempDir } from './helpers.ts';

/**
 * A change time in the future where it enters the notifier: the hook socket (clear, as `pwsync
 * hook` sends it, and sealed, as the Samba capture script sends it). Beyond the notifier's clock
 * plus notifier.clockTolerance it is refused before anything is queued, the hook hears why
 * (event 6974) and `pwsync hook` exits non-zero; within the tolerance, or in the past, it is
 * queued. (The Windows spool's case: test/windows/notifier-drain.test.ts.)
 */
const MINUTE = 60_000;
const YEAR_9999 = Date.UTC(9999, 11, 31, 23, 59, 59);
const dir = tempDir();
const socketPath = join(dir, 'hook.sock');
const key = generateRecipientKeys();
const targets = [{ name: 'hub-a', token: subjectToken('hub-a'), recipient: recipientFromPem(key.publicPem) }];
const { log, events } = capturingLog();
let broker: Broker;
let queue: Consumer;
let server: HookServer;
let capture: Capture;

before(async () => {
  broker = openSqliteBroker({ file: join(dir, 'notifier.db') });
  queue = await broker.consumer(deliverConsumer(targets[0]!.token), deliverSubject(targets[0]!.token));
  capture = await createCapture({ broker, targets, clockToleranceMs: 5 * MINUTE, scope: includeAll, domain: 'corp.example', host: 'dc1.corp.example', log });
  server = await startHookServer({
    path: socketPath, mode: 0o600, timeoutMs: 5000, log, onChange: (c, pw) => capture.clear(c, pw), onSealed: (c) => capture.sealed(c),
  });
});

after(async () => {
  await server.close();
  await capture.stop();
  await broker.close();
});

/** The change times queued since the last call, oldest first. */
async function queued(): Promise<number[]> {
  const batch = await queue.fetch({ max: 100, expiresMs: 50 });
  for (const d of batch) await d.ack();
  return batch.map((d) => decodeQueuedChange(d.data).changeTimeMs);
}

const FUTURE: Array<[string, number, RegExp]> = [
  ['year 9999', YEAR_9999, /change time 9999-12-31T23:59:59\.000Z is \d+d ahead of this clock/],
  ['2^53-1 ms, past what a Date holds', Number.MAX_SAFE_INTEGER, /change time 9007199254740991 \(not a valid time\) is \d+d ahead/],
  ['now + 10 minutes', Date.now() + 10 * MINUTE, /is 1\dm ahead of this clock .* beyond the clock tolerance of 5m/],
];

test('a hooked change stamped beyond the clock tolerance is refused with 6974 and queues nothing', async () => {
  const before = events(6974).length;
  for (const [what, changeTime, reason] of FUTURE) {
    await assert.rejects(
      sendHookChange(socketPath, { domain: 'corp.example', samAccountName: 'alice', changeTime }, Secret.adopt(testPassword('future-hook')), 5000),
      (e: Error) => reason.test(e.message) && /event 6974\); nothing was queued/.test(e.message),
      what,
    );
  }
  assert.deepEqual(await queued(), []);
  const logged = events(6974).slice(before);
  assert.equal(logged.length, 3);
  assert.ok(logged.every((l) => l.account === 'alice' && l.sourceDc === 'dc1.corp.example' && (l.skewMs as number) > 5 * MINUTE && l.clockToleranceMs === 5 * MINUTE));
});

test('a sealed change (the Samba capture script) stamped beyond the clock tolerance is refused and queues nothing', async () => {
  for (const [what, changeTime, reason] of FUTURE) {
    const changeId = randomBytes(16);
    const binding = {
      changeId, changeTime, domain: 'corp.example', samAccountName: 'bob', objectGuid: 'guid-bob', objectSid: '', upn: '', dn: '', sourceHost: 'dc1.corp.example',
    };
    const change: SealedCapture = {
      account: { domain: 'corp.example', samAccountName: 'bob', objectGuid: 'guid-bob', objectSid: '', upn: '', dn: '' }, changeTime, changeId,
      envelopes: [seal(targets[0]!.recipient, binding, Secret.adopt(testPassword('future-sealed')))],
    };
    await assert.rejects(sendSealedChange(socketPath, change, 5000), (e: Error) => reason.test(e.message) && /6974/.test(e.message), what);
  }
  assert.deepEqual(await queued(), []);
});

test('a change within the tolerance, or stamped in the past, is queued with its own time', async () => {
  const times = [Date.now() + 2 * MINUTE, Date.UTC(2001, 0, 1), 1000];
  for (const changeTime of times) {
    await sendHookChange(socketPath, { domain: 'corp.example', samAccountName: 'carol', changeTime }, Secret.adopt(testPassword('present-hook')), 5000);
  }
  assert.deepEqual(await queued(), times);
});

test('`pwsync hook --time` with a change time in the future exits non-zero naming 6974', async () => {
  const child = spawn(process.execPath, [PWSYNC_BIN, 'hook', '--socket', socketPath, '--domain', 'corp.example', '--sam', 'dave', '--time', String(YEAR_9999)], { cwd: REPO });
  let err = '';
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  child.stdin.end(testPassword('future-cli'));
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('pwsync hook did not exit within 30 s')); }, 30_000);
    child.on('close', (c) => { clearTimeout(timer); resolve(c); });
  });
  assert.equal(code, 1, err);
  assert.match(err, /the notifier refused the change: change time 9999-12-31T23:59:59\.000Z is \d+d ahead of this clock .*event 6974/);
  assert.deepEqual(await queued(), []);
});
