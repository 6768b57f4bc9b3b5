import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { storedHash } from '../../cli/demo.ts';
import { DOMAIN, freePort, Lab, spawnPwsync, until } from '../../cli/lab.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { verifyPassword } from '../../extensions/examples/scrypt-hash/verify.ts';
import { queryStatus } from '../../hub/admin.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';
import { editYaml } from '../lib/yaml.ts';
import { TEST_PASSWORD_PREFIX, testPassword } from '../lib/passwords.ts';
import { scanTree } from '../lib/scan.ts';
import { DLL, ensureWindowsBuild, fields, harness, p256Target, PIPE_EXE, rsaPublicBlob, startWine, writeHarnessConfig, type HarnessTarget, type Wine } from '../lib/wine.ts';
import { rsaTestKey } from './helpers.ts';

/**
 * The filter DLL end to end, under Wine: harness.exe (standing in for LSASS) loads the test build
 * of the DLL, which seals each change with the test-only suite 241 (Wine's CNG cannot derive an
 * ECDH secret) and hands it over. Spool path: the DLL writes `<spool>\new` through Z:, the notifier
 * on Linux drains it. Pipe path: pwsync-pipe.exe (the native pipe server, SYSTEM-only DACL) makes
 * the frame durable in the same spool folder and acknowledges it. Both go notifier → hub (started with
 * PWSYNC_TEST_ONLY_SUITES=1 and an RSA key) → a file target, where each password is verified.
 */
const TEST_ENV = { PWSYNC_TEST_ONLY_SUITES: '1' };
const PIPE = '\\\\.\\pipe\\pwsync-e2e';
const people = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace'];
const csv = `id,login,pwdHash\n${people.map((p, i) => `${i + 1},${p},`).join('\n')}\n`;

let root: string;
let lab: Lab;
let wine: Wine;
let spool: string;
let target: HarnessTarget;
let broker: ReturnType<typeof openSqliteBroker>;
let state: HubState;
let pipeEndpoint: ChildProcess | undefined;

/** A password of exactly `n` code points, starting with the test prefix. */
const ofLength = (n: number): Buffer => testPassword('x'.repeat(n - [...TEST_PASSWORD_PREFIX].length));

async function notify(user: string, passwords: Buffer[], repeat = 1): Promise<Array<Record<string, string>>> {
  const r = await harness(wine, ['notify', wine.winPath(DLL.test), user, String(repeat)], { passwords, timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return r.lines.filter((l) => l.startsWith('call ') || l.startsWith('timing ')).map(fields);
}

async function arrived(sam: string, pw: Buffer): Promise<void> {
  await until(`the change for ${sam} applied at the file target`, 60_000, async () => {
    const ops = (await queryStatus(state, { account: { samAccountName: sam }, connector: 'hr' })).operations;
    const failed = ops.find((o) => o.state === 'failed');
    if (failed) throw new Error(`${sam}: ${failed.reason}`);
    return ops.some((o) => o.state === 'successful') ? true : undefined;
  });
  const hash = await storedHash(lab.hubConfig, 'hr', sam);
  assert.ok(hash, `the file target holds a hash for ${sam}`);
  assert.equal(await verifyPassword(hash!, pw), true, `${sam}: the stored hash verifies the password sent through the DLL`);
  assert.equal(await verifyPassword(hash!, testPassword(`${sam}-wrong`)), false);
}

before(async () => {
  ensureWindowsBuild();
  root = testDir('win-e2e');
  wine = await startWine(root);
  spool = path.join(root, 'spool');
  mkdirSync(spool);
  lab = await Lab.create({
    root: path.join(root, 'lab'), reportInterval: '1s',
    connectors: [{ name: 'hr', kind: 'delimited', file: 'hr.csv', content: csv, join: [{ target: 'login', source: 'sAMAccountName' }] }],
  });
  // The test-only key pair: the hub opens with its private half, the notifier's target names its public half.
  const rsa = rsaTestKey();
  writeFileSync(path.join(lab.root, 'keys', 'rsa-test.key'), rsa.privatePem, { mode: 0o600 });
  writeFileSync(path.join(lab.root, 'keys', 'rsa-test.pub'), rsa.publicPem);
  lab.hubPort = await freePort();
  await lab.rewriteConfig();
  editYaml(lab.hubConfig, (d) => { d.hub.keys.push('keys/rsa-test.key'); });
  editYaml(lab.notifierConfig, (d) => {
    d.targets[0].publicKey = 'keys/rsa-test.pub';
    // The DLL names the DC by GetComputerNameEx (under Wine: this machine's name); so does notifier.host on a DC.
    d.notifier.host = os.hostname();
    d.notifier.capture = { windows: { spoolDir: spool, pipe: PIPE, poll: '500ms' } };
  });
  await lab.startHub(30_000, TEST_ENV);
  await lab.startNotifier(30_000, TEST_ENV);
  broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
  state = await HubState.open(broker);
  target = { name: 'lab-hub', suite: 0xf1, enabled: true, keyId: rsa.keyId, publicKey: rsaPublicBlob(rsa.publicKey) };
});

after(async () => {
  pipeEndpoint?.kill('SIGKILL');
  await broker?.close();
  await lab?.stopAll();
  await wine?.stop();
});

test('spool path: a non-ASCII, an empty, a surrogate-pair and a 256-character password reach the file target intact', async () => {
  await writeHarnessConfig(wine, { spoolDir: spool, domain: DOMAIN, targets: [target] });
  const cases: Array<[string, Buffer]> = [
    ['alice', testPassword('alice çà£ ñ Ωμ 日本')],
    ['bob', Buffer.alloc(0)],
    ['carol', testPassword('carol x🔑y 𝄞')],
    ['dave', ofLength(256)],
  ];
  assert.equal([...cases[3]![1].toString('utf8')].length, 256);
  for (const [sam, pw] of cases) {
    const [call] = await notify(sam, [pw]);
    assert.equal(call!.status, '0x00000000');
    assert.equal(call!.stage, 'done', JSON.stringify(call));
    assert.equal(call!.spooled, '1', 'no pipe configured: spooled');
  }
  for (const [sam, pw] of cases) await arrived(sam, pw);
  assert.deepEqual(readdirSync(path.join(spool, 'new')), [], 'the drain emptied the spool folder');
  assert.equal(existsSync(path.join(spool, 'aside')), false, 'nothing set aside');
});

test('pipe path: pwsync-pipe.exe serves the pipe; acknowledged changes reach the file target', async () => {
  const ready = path.join(root, 'pipe.ready');
  pipeEndpoint = wine.spawn(PIPE_EXE, ['--console', '--pipe', PIPE, '--spool', wine.winPath(spool), '--log', wine.winPath(path.join(root, 'pipe.log')), '--ready', wine.winPath(ready)], path.join(root, 'pipe.out'));
  await until('pwsync-pipe.exe listens', 60_000, () => (existsSync(ready) ? true : undefined));
  await writeHarnessConfig(wine, { spoolDir: spool, pipeName: PIPE, domain: DOMAIN, targets: [target] });
  const pw = testPassword('erin über € 🔑');
  const [call] = await notify('erin', [pw]);
  assert.equal(call!.stage, 'done', JSON.stringify(call));
  assert.equal(call!.pipe, 'acknowledged', JSON.stringify(call));
  assert.equal(call!.spooled, '0', 'acknowledged over the pipe: not spooled by the DLL');
  await arrived('erin', pw);
  assert.match(readFileSync(path.join(root, 'pipe.log'), 'utf8'), /change received over the pipe and made durable/);
});

test('measure: PasswordChangeNotify over 200 calls, pipe up and pipe down (spool)', async (t) => {
  const pw = testPassword('frank-bench');
  const up = (await notify('frank', [pw], 200)).find((f) => f.median_us);
  assert.ok(up?.median_us, 'a timing line');
  pipeEndpoint?.kill('SIGKILL');
  await until('pwsync-pipe.exe exited', 30_000, () => (pipeEndpoint!.exitCode !== null || pipeEndpoint!.signalCode !== null ? true : undefined));
  const calls = await notify('grace', [testPassword('grace-bench')], 200);
  const down = calls.find((f) => f.median_us);
  assert.ok(calls.filter((c) => c.call !== undefined || c.n).every((c) => !c.status || c.status === '0x00000000'));
  t.diagnostic(`pipe up: median ${up!.median_us} µs, max ${up!.max_us} µs; pipe down (spool): median ${down!.median_us} µs, max ${down!.max_us} µs`);
  process.stderr.write(`# PasswordChangeNotify x200 pipe up: median_us=${up!.median_us} max_us=${up!.max_us}; pipe down: median_us=${down!.median_us} max_us=${down!.max_us}\n`);
  // 200 changes of one account: the hub applies the newest and fails the older ones still waiting (6919).
  await until('grace\'s password applied at the file target', 60_000, async () => {
    const hash = await storedHash(lab.hubConfig, 'hr', 'grace');
    return hash && await verifyPassword(hash, testPassword('grace-bench')) ? true : undefined;
  });
});

test('suite 1 under Wine fails closed: nothing written, the change reported as not captured', async () => {
  const p256 = p256Target('lab-hub');
  await writeHarnessConfig(wine, { spoolDir: spool, domain: DOMAIN, targets: [p256] });
  await until('the spool folder drained', 60_000, () => (readdirSync(path.join(spool, 'new')).length === 0 ? true : undefined));
  const opsBefore = (await queryStatus(state, { account: { samAccountName: 'alice' }, connector: 'hr' })).operations.length;
  const [call] = await notify('alice', [testPassword('alice-suite1')]);
  assert.equal(call!.status, '0x00000000', 'the change itself goes through');
  assert.notEqual(call!.stage, 'done', JSON.stringify(call));
  assert.equal(call!.spooled, '0');
  assert.match(call!.sealed ?? '', /^0\//, 'nothing sealed');
  assert.deepEqual(readdirSync(path.join(spool, 'new')), [], 'nothing written');
  assert.match(readFileSync(path.join(spool, 'status.txt'), 'latin1'), /failed=[1-9]/);
  const detail = await until('the failure in the DC\'s capture detail at the hub', 30_000, async () => {
    const s = spawnPwsync(['status', '--dcs', '--json', '--config', lab.hubConfig]);
    assert.equal(await s.exited, 0, s.stderr());
    const { dcs } = JSON.parse(s.stdout()) as { dcs: Array<{ capture: Array<{ source: string; state: string; detail: string }> }> };
    return dcs.flatMap((d) => d.capture).find((c) => c.source === 'windows' && /not captured/.test(c.detail));
  });
  assert.equal(detail.state, 'running');
  const opsAfter = (await queryStatus(state, { account: { samAccountName: 'alice' }, connector: 'hr' })).operations.length;
  assert.equal(opsAfter, opsBefore, 'no change reached the hub');
});

test('fleet check: `pwsync status --dcs` shows Windows capture running, then not running once the DLL disabled itself', async () => {
  const dcs = async (): Promise<string> => {
    const s = spawnPwsync(['status', '--dcs', '--config', lab.hubConfig]);
    assert.equal(await s.exited, 0, s.stderr());
    return s.stdout();
  };
  await writeHarnessConfig(wine, { spoolDir: spool, domain: DOMAIN, targets: [target] });
  await notify('alice', [testPassword('alice-fleet')]); // LSASS "loads" the DLL: status.txt says ok
  await until('windows: running in the DC list', 30_000, async () => (/windows: running/.test(await dcs()) ? true : undefined));
  // A wild pointer from "LSA": the SEH build survives, disables itself and says so in status.txt.
  const r = await wine.run(path.join(path.dirname(DLL.test), 'harness.exe'), ['wild', wine.winPath(DLL.test)]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(readFileSync(path.join(spool, 'status.txt'), 'latin1'), /state=disabled/);
  const out = await until('capture listed as not running', 30_000, async () => {
    const o = await dcs();
    return /windows not-registered/.test(o) ? o : undefined;
  });
  assert.match(out, new RegExp(`capture not running[^]*${os.hostname()} \\(${DOMAIN}\\): windows not-registered: the filter DLL disabled itself`));
});

test('nothing on disk holds a clear password: the Wine prefix, the spool folder, the logs, the queues', () => {
  const { files, hits } = scanTree(root);
  assert.ok(files.some((f) => f.includes(`${path.sep}prefix${path.sep}drive_c${path.sep}`)), 'the scan covered the Wine prefix');
  assert.ok(files.some((f) => f.includes(`${path.sep}spool${path.sep}`)), 'the scan covered the spool folder');
  assert.deepEqual(hits, []);
});
