import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { storedHash } from '../../cli/demo.ts';
import { DOMAIN, Lab, spawnPwsync, until, type Service } from '../../cli/lab.ts';
import { sampleConnectors } from '../../cli/samples.ts';
import { verifyPassword } from '../../extensions/examples/scrypt-hash/verify.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * Signals as a service manager sends them (issue 15, part 5): SIGHUP reopens the log file
 * (logrotate without copytruncate) and the service keeps working; SIGUSR1/SIGUSR2 do not end it;
 * only SIGTERM/SIGINT/SIGQUIT stop it, with a drain and exit 0.
 */
let lab: Lab;

const messages = (file: string): string[] => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => String((JSON.parse(l) as { msg?: unknown }).msg));

async function hook(sam: string, password: Buffer): Promise<void> {
  const p = spawnPwsync(['hook', '--socket', lab.hookSocket, '--domain', DOMAIN, '--sam', sam], { stdin: Buffer.concat([password, Buffer.from('\n')]) });
  assert.equal(await p.exited, 0, `pwsync hook failed: ${p.stderr()}`);
}

async function arrived(sam: string, password: Buffer): Promise<void> {
  await until(`${sam}'s password in hr-csv`, 30_000, async () => {
    const hash = await storedHash(lab.hubConfig, 'hr-csv', sam);
    return hash && await verifyPassword(hash, password) ? true : undefined;
  }, lab.hub);
}

/** Moves the log away as logrotate does, sends SIGHUP, and waits for the new file at the configured path. */
async function rotate(service: Service, log: string): Promise<string> {
  const rotated = `${log}.1`;
  renameSync(log, rotated);
  service.proc.kill('SIGHUP');
  await until('a new log file after SIGHUP', 30_000, () => (existsSync(log) && messages(log).includes('log file reopened (SIGHUP)') ? true : undefined), service);
  return rotated;
}

before(async () => {
  lab = await Lab.create({ root: testDir('signals'), connectors: sampleConnectors().filter((c) => c.name === 'hr-csv') });
  await lab.startHub();
  await lab.startNotifier();
});

after(async () => {
  await lab?.stopAll();
});

test('SIGHUP reopens the hub\'s and the notifier\'s log files; both keep running and applying changes', async () => {
  const first = testPassword('alice-before-hup');
  await hook('alice', first);
  await arrived('alice', first);

  const hubOld = await rotate(lab.hub!, lab.hubLog);
  const notifierOld = await rotate(lab.notifier!, lab.notifierLog);
  const oldHubLines = messages(hubOld).length;

  const second = testPassword('alice-after-hup');
  await hook('alice', second);
  await arrived('alice', second);
  assert.equal(lab.hub!.proc.exitCode, null);
  assert.equal(lab.notifier!.proc.exitCode, null);
  // The new lines went to the new files, not to the renamed ones.
  await until('the notifier logs the change in its new file', 30_000, () => (messages(lab.notifierLog).includes('password change queued') ? true : undefined));
  assert.ok(!messages(notifierOld).includes('log file reopened (SIGHUP)'));
  assert.equal(messages(hubOld).length, oldHubLines);
});

test('SIGUSR1 and SIGUSR2 do not end the hub; SIGQUIT stops it with a drain and exit 0', async () => {
  lab.hub!.proc.kill('SIGUSR1');
  lab.hub!.proc.kill('SIGUSR2');
  await until('both signals logged as ignored', 30_000, () => (messages(lab.hubLog).filter((m) => m.startsWith('signal ignored')).length >= 2 ? true : undefined), lab.hub);
  const third = testPassword('alice-after-usr');
  await hook('alice', third);
  await arrived('alice', third);

  lab.hub!.proc.kill('SIGQUIT');
  assert.equal(await lab.hub!.exited, 0, lab.hub!.stderr());
  assert.ok(messages(lab.hubLog).includes('hub stopped'));
});
