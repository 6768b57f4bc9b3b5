import assert from 'node:assert/strict';
import { readFileSync, readdirSync, renameSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { alive } from '../../notifier/samba/supervisor.ts';
import { testPassword } from '../lib/passwords.ts';
import {
  expectedChangeId, kpasswd, logLines, notifierLogged, operations, queuedFor, settled, startSambaLab, targetHas,
  type SambaLab,
} from './helpers.ts';

/**
 * Faults on the way from a Samba DC to the hub: every committed change arrives once, the latest
 * wins. Runs inside its own network namespace (test/env/in-netns.sh).
 */
let s: SambaLab;

before(async () => {
  s = await startSambaLab('samba-faults');
});

after(async () => {
  await s?.close();
});

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('the notifier killed -9 between capture and delivery: the change arrives once after a restart', async (t) => {
  await s.lab.stop(s.lab.hub);
  const bob1 = testPassword('bo-kill-2');
  const r = await kpasswd(s.dc, 'bob', s.dc.users.bob.password, bob1);
  assert.equal(r.code, 0, r.output);
  await until(() => queuedFor(s.lab, 'bob').length === 1);
  // Killed once syncpasswords has logged the script's DONE-EXIT: killed before, syncpasswords
  // would die on that write into the dead notifier's pipe, and there would be nothing left over.
  const id = await expectedChangeId(s.dc, 'bob');
  await notifierLogged(s.lab, `"changeId":"${id}","msg":"syncpasswords confirmed a captured change"`);
  const leftover = loopPid();
  await s.lab.kill(s.lab.notifier);
  // syncpasswords writes nothing while it waits, so it usually outlives the notifier (recipe: it
  // keeps the cache's lock); it may also exit on its own before the restart looks for it.
  await s.lab.startHub();
  await s.lab.startNotifier();
  const [op] = await settled(s, 'bob', 1);
  assert.equal(op!.state, 'successful', op!.reason);
  assert.equal(op!.changeId, id);
  assert.equal(await targetHas(s, 'bob', bob1), true);
  // The killed notifier's syncpasswords was stopped by PID (or had exited by itself); the new one
  // runs and replays nothing. The new notifier looks for a leftover before it starts its own.
  await notifierLogged(s.lab, '"phase":"loop"', 30_000, 2);
  const stopped = logLines(s.lab.notifierLog).some((l) => l.includes('a syncpasswords of an earlier notifier is still running'));
  t.diagnostic(stopped ? `the restart stopped syncpasswords ${leftover}` : `syncpasswords ${leftover} had exited before the restart looked`);
  await until(() => !alive(leftover));
  assert.deepEqual(syncpasswordsPids(), [loopPid()], 'exactly one syncpasswords, the new notifier\'s');
  await pause(6_000);
  assert.equal((await operations(s, 'bob')).length, 1, 'delivered once');
  assert.equal(queuedFor(s.lab, 'bob').length, 1, 'queued once');
});

/** The PID of the latest syncpasswords the notifier started in its wait loop. */
function loopPid(): number {
  const line = logLines(s.lab.notifierLog).filter((l) => l.includes('"phase":"loop"') && l.includes('syncpasswords started')).at(-1);
  assert.ok(line, 'the notifier started syncpasswords');
  return (JSON.parse(line) as { childPid: number }).childPid;
}

/** Running syncpasswords processes with this lab's notifier's cache (the netns is the test's own). */
function syncpasswordsPids(): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).flatMap((d) => {
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      return cmd.includes('syncpasswords') && cmd.includes(s.lab.root) && alive(Number(d)) ? [Number(d)] : [];
    } catch {
      return [];
    }
  });
}


test('the capture script failing (hook socket gone): syncpasswords is restarted with event 6959 and the change arrives once', async () => {
  const away = `${s.lab.hookSocket}.away`;
  renameSync(s.lab.hookSocket, away);
  const events = (): string[] => logLines(s.lab.notifierLog).filter((l) => l.includes('"eventId":6959'));
  const before6959 = events().length;
  const dave1 = testPassword('da-crash-2');
  try {
    const r = await kpasswd(s.dc, 'dave', s.dc.users.dave.password, dave1);
    assert.equal(r.code, 0, r.output);
    await notifierLogged(s.lab, '"eventId":6959', 30_000, before6959 + 2);
  } finally {
    renameSync(away, s.lab.hookSocket);
  }
  const event = JSON.parse(events().at(-1)!) as { exitCode: number; stderr: string; restartInMs: number; source: string };
  assert.equal(event.source, 'samba');
  assert.notEqual(event.exitCode, 0);
  assert.match(event.stderr, /no notifier is listening on/, 'the event carries the script\'s reason');
  const [op] = await settled(s, 'dave', 1);
  assert.equal(op!.state, 'successful', op!.reason);
  assert.equal(await targetHas(s, 'dave', dave1), true);
  await pause(6_000);
  assert.equal((await operations(s, 'dave')).length, 1, 'delivered once');
  assert.equal(queuedFor(s.lab, 'dave').length, 1, 'queued once');
});

test('Samba restarted under syncpasswords: the next change still arrives', async () => {
  await s.dc.stop();
  await s.dc.start();
  const erin1 = testPassword('er-restart-2 ñ 日本');
  const r = await kpasswd(s.dc, 'erin', s.dc.users.erin.password, erin1);
  assert.equal(r.code, 0, r.output);
  const [op] = await settled(s, 'erin', 1, 90_000);
  assert.equal(op!.state, 'successful', op!.reason);
  assert.equal(await targetHas(s, 'erin', erin1), true);
});

test('the hub down for a while: both of alice\'s changes wait at the notifier, then arrive; the latest wins', async () => {
  await s.lab.stop(s.lab.hub);
  const alice1 = testPassword('al-down-2');
  const alice2 = testPassword('al-down-3');
  assert.equal((await kpasswd(s.dc, 'alice', s.dc.users.alice.password, alice1)).code, 0);
  await until(() => queuedFor(s.lab, 'alice').length === 1);
  assert.equal((await kpasswd(s.dc, 'alice', alice1, alice2)).code, 0);
  await until(() => queuedFor(s.lab, 'alice').length === 2);
  await notifierLogged(s.lab, '"eventId":6943', 30_000);
  await pause(3_000);
  await s.lab.startHub();
  const ops = await settled(s, 'alice', 2);
  assert.equal(ops.length, 2);
  assert.equal(await targetHas(s, 'alice', alice2), true, 'the latest password is the one in the target');
  assert.equal(await targetHas(s, 'alice', alice1), false);
});

async function until(probe: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await pause(100);
  }
}
