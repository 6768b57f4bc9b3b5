import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { generateTlsMaterial } from '../../core/tls-gen.ts';
import { Secret } from '../../core/secret.ts';
import { sendHookChange } from '../../notifier/hook-client.ts';
import { testPassword } from '../lib/passwords.ts';
import { tempDir, waitFor } from './helpers.ts';
import { TestHub } from './test-hub.ts';

const BIN = fileURLToPath(new URL('../../bin/pwsync.mjs', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const cleanup: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

function run(args: string[], stdin?: Buffer): { child: ChildProcessWithoutNullStreams; done: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }> } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT });
  cleanup.push(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  if (stdin) child.stdin.end(stdin);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pwsync ${args[0]} did not exit within 30 s`)), 30_000);
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, out, err }); });
  });
  return { child, done };
}

test('`pwsync notifier --config` delivers a hooked change and exits 0 on SIGTERM', async () => {
  const dir = tempDir();
  const tls = await generateTlsMaterial({ hosts: ['localhost', '127.0.0.1'] });
  writeFileSync(join(dir, 'ca.pem'), tls.caCertPem);
  const hub = await new TestHub('hub1', dir, tls).start();
  cleanup.push(() => hub.stop());
  const socket = join(dir, 'hook.sock');
  const yaml = join(dir, 'notifier.yaml');
  writeFileSync(yaml, [
    'notifier:',
    '  domain: corp.example',
    '  host: dc1.corp.example',
    '  dataDir: data',
    '  hook:',
    '    socket: hook.sock',
    "    mode: '0600'",
    '    timeout: 5s',
    '  log:',
    '    level: info',
    '    file: notifier.log',
    '  shutdownGrace: 2s',
    'targets:',
    '  - name: hub1',
    `    address: ${hub.address}`,
    '    tls:',
    '      ca: ca.pem',
    '      serverName: localhost',
    '    publicKey: hub1.pub',
    '    retryInterval: 200ms',
    '    maxRetryInterval: 1s',
    '',
  ].join('\n'));
  const notifier = run(['notifier', '--config', yaml]);
  await waitFor('the hook socket', () => existsSync(socket) || notifier.child.exitCode !== null, 20_000);
  assert.equal(notifier.child.exitCode, null, 'the notifier is running');
  const { changeId } = await sendHookChange(socket, { domain: 'corp.example', samAccountName: 'alice' }, Secret.adopt(testPassword('cli-1')), 5000);
  await waitFor('the hub received it', () => hub.received.length === 1);
  assert.equal(hub.received[0]!.changeId, changeId);
  assert.ok(hub.received[0]!.password.equals(testPassword('cli-1')));
  notifier.child.kill('SIGTERM');
  const end = await notifier.done;
  assert.equal(end.code, 0, end.err);
  assert.equal(existsSync(socket), false, 'the socket is removed on stop');
});

test('`pwsync hook` refuses an empty password and reports a notifier that is not running', async () => {
  const dir = tempDir();
  const empty = await run(['hook', '--socket', join(dir, 'none.sock'), '--domain', 'corp.example', '--sam', 'alice'], Buffer.from('\n')).done;
  assert.notEqual(empty.code, 0);
  assert.match(empty.err, /no password on standard input/);
  const absent = await run(['hook', '--socket', join(dir, 'none.sock'), '--domain', 'corp.example', '--sam', 'alice'], testPassword('cli-2')).done;
  assert.equal(absent.code, 1);
  assert.match(absent.err, /no notifier is listening on .*none\.sock/);
});
