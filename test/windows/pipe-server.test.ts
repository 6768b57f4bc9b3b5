import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { decodeFrame, spoolFileName } from '../../notifier/windows/frame.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';
import { openTestEnvelope } from '../lib/pwc.ts';
import { scanTree } from '../lib/scan.ts';
import { DLL, ensureWindowsBuild, fields, harness, PIPE_EXE, rsaTestTarget, startWine, writeHarnessConfig, type Wine } from '../lib/wine.ts';
import { dllBinding, frameOf, sealTestSuite } from './helpers.ts';

/**
 * pwsync-pipe.exe (notifier/windows/dll/pwsync-pipe.c), the native server of the filter DLL's
 * pipe, under Wine: harness.exe (LSASS stand-in) loads the test DLL, which hands each change to
 * the server; the server makes the frame durable in `<spool>\new` and only then acknowledges it;
 * the frames there are read with frame.ts (the drain's own parser) and opened. Raw frames, good
 * and bad, go through `harness send`. The full path on to the hub is in e2e.test.ts.
 *
 * What Wine 8 does with the SYSTEM-only DACL (checked by hand with a probe program, Wine
 * 8.0~repack-4): CreateNamedPipe keeps the descriptor, and GetSecurityInfo on the pipe reads back
 * exactly `D:P(A;;GA;;;SY)`; but opening the pipe is not checked against it. harness.exe's token
 * user is S-1-5-21-0-0-0-1000, not SYSTEM, and it opens the pipe for read/write all the same;
 * so does a client of a pipe with an empty DACL (`D:P`) or with a deny-Everyone ACE, while an event
 * created with the same descriptors is refused (error 5). Nothing hangs. So these tests run the
 * production DACL with no test switch, and check the DACL by reading it back; that a non-SYSTEM
 * client is refused can only be seen on real Windows (README: how to verify).
 */
const PIPE = '\\\\.\\pipe\\pwsync-native';
const DOMAIN = 'corp.example.com';

let wine: Wine;
let root: string;
let spool: string;
let server: ChildProcess | undefined;
let serverLog: string;
const target = rsaTestTarget('hub1');
const targetPublic = createPublicKey(target.privateKey);

async function waitFor<T>(what: string, ms: number, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function startServer(label: string, pipe = PIPE): { proc: ChildProcess; out: string; log: string } {
  const ready = path.join(root, `${label}.ready`);
  const log = path.join(root, `${label}.log`);
  const out = path.join(root, `${label}.out`);
  rmSync(ready, { force: true });
  const proc = wine.spawn(PIPE_EXE, ['--console', '--pipe', pipe, '--spool', wine.winPath(spool), '--log', wine.winPath(log), '--ready', wine.winPath(ready)], out);
  (proc as ChildProcess & { ready: string }).ready = ready;
  return { proc, out, log };
}

async function stopByPid(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  p.kill('SIGKILL');
  await waitFor('the server exited', 30_000, () => (p.exitCode !== null || p.signalCode !== null ? true : undefined));
}

function framed(frame: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(frame.length);
  return Buffer.concat([len, frame]);
}

/** One raw exchange through harness.exe: the answer line's fields. */
async function send(bytes: Buffer, waitMs = 3000): Promise<Record<string, string>> {
  const r = await harness(wine, ['send', PIPE, String(waitMs)], { input: `${bytes.toString('hex')}\n`, timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const line = r.lines.find((l) => l.startsWith('send '));
  assert.ok(line, r.stdout);
  return fields(line);
}

const newFiles = (): string[] => (existsSync(path.join(spool, 'new')) ? readdirSync(path.join(spool, 'new')).sort() : []);

before(async () => {
  ensureWindowsBuild();
  root = testDir('win-pipe-server');
  wine = await startWine(root);
  spool = path.join(root, 'spool');
  mkdirSync(spool);
  await writeHarnessConfig(wine, { spoolDir: spool, pipeName: PIPE, timeBudgetMs: 2000, domain: DOMAIN, targets: [target] });
  const s = startServer('server');
  server = s.proc;
  serverLog = s.log;
  await waitFor('pwsync-pipe.exe listens', 60_000, () => (existsSync((server as ChildProcess & { ready: string }).ready) ? true : undefined));
});

after(async () => {
  await stopByPid(server);
  await wine?.stop();
});

test('the exe imports only kernel32, advapi32 and the C runtime', () => {
  const dump = execFileSync('x86_64-w64-mingw32-objdump', ['-p', PIPE_EXE], { encoding: 'utf8' });
  const imports = [...dump.matchAll(/DLL Name: (\S+)/g)].map((m) => m[1]!.toLowerCase()).sort();
  assert.deepEqual(imports, ['advapi32.dll', 'kernel32.dll', 'msvcrt.dll']);
});

test('the pipe\'s DACL, read back by a client and by the server, is exactly SYSTEM-only', async (t) => {
  const r = await wine.run(PIPE_EXE, ['--print-sddl', PIPE]);
  const out = Object.assign({}, ...r.lines.map(fields)) as Record<string, string>;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(out.sddl, 'D:P(A;;GA;;;SY)', r.stdout);
  assert.match(readFileSync(serverLog, 'latin1'), /pipe \\\\\.\\pipe\\pwsync-native created; its DACL read back: D:P\(A;;GA;;;SY\)\r?\n/);
  // Under Wine the client is not SYSTEM and still opened the pipe (see the comment at the top).
  t.diagnostic(`client token user under Wine: ${out.client}; it opened the SYSTEM-only pipe for READ_CONTROL (Wine does not enforce pipe DACLs)`);
  const none = await wine.run(PIPE_EXE, ['--print-sddl', '\\\\.\\pipe\\pwsync-nobody']);
  assert.notEqual(none.code, 0);
  assert.match(none.stdout, /error=2 no such pipe/);
});

test('harness → pwsync-pipe.exe → spool: acknowledged only once durable, in change order, intact', async (t) => {
  const passwords = [testPassword('pipe çà£ 日本'), Buffer.alloc(0), testPassword('x🔑y 𝄞'), testPassword('z'.repeat(240))];
  const before = new Set(newFiles());
  const r = await harness(wine, ['notify', wine.winPath(DLL.test), 'alice', '1'], { passwords, timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const calls = r.lines.filter((l) => l.startsWith('call ')).map(fields);
  assert.equal(calls.length, passwords.length, r.stdout);
  for (const c of calls) {
    assert.equal(c.stage, 'done', JSON.stringify(c));
    assert.equal(c.pipe, 'acknowledged', JSON.stringify(c));
    assert.equal(c.spooled, '0', 'acknowledged over the pipe: the DLL did not spool it itself');
  }
  const added = newFiles().filter((f) => !before.has(f));
  assert.equal(added.length, passwords.length);
  const times: number[] = [];
  const opened = added.map((f) => {
    const frame = decodeFrame(readFileSync(path.join(spool, 'new', f)));
    assert.equal(f, spoolFileName(frame.changeTime, frame.changeId), 'the DLL\'s file-name scheme');
    assert.deepEqual(frame.entries.map((e) => e.target), ['hub1']);
    times.push(Number(frame.changeTime));
    return openTestEnvelope(frame.entries[0]!.envelope, target.privateKey);
  });
  // File-name order is change order (the drain takes them as the DC made them); changes within one
  // millisecond share a change time and follow their random change ids.
  assert.deepEqual([...times].sort((a, b) => a - b), times, 'file-name order is change-time order');
  const hex = (b: Buffer): string => b.toString('hex');
  assert.deepEqual(opened.map((o) => hex(o.password)).sort(), passwords.map(hex).sort(), 'every password byte-exact');
  if (new Set(times).size === times.length) assert.deepEqual(opened.map((o) => o.password), passwords, 'in the order they were made');
  for (const o of opened) assert.equal(o.header.samAccountName, 'alice');
  assert.deepEqual(readdirSync(path.join(spool, 'tmp')), [], 'no temporary file left behind');
  assert.match(readFileSync(serverLog, 'latin1'), /changeId=[0-9a-f]{32} bytes=\d+ change received over the pipe and made durable/);
  t.diagnostic(`PasswordChangeNotify through pwsync-pipe.exe: ${calls.map((c) => c.us).join(', ')} µs`);
});

test('measure: 100 changes through pwsync-pipe.exe, each acknowledged', async (t) => {
  const r = await harness(wine, ['notify', wine.winPath(DLL.test), 'bob', '100'], { passwords: [testPassword('bob-bench')], timeoutMs: 180_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const calls = r.lines.filter((l) => l.startsWith('call ')).map(fields);
  assert.equal(calls.length, 100);
  assert.ok(calls.every((c) => c.pipe === 'acknowledged' && c.spooled === '0'), 'every change acknowledged over the pipe');
  const timing = r.lines.map(fields).find((f) => f.median_us);
  assert.ok(timing, r.stdout);
  t.diagnostic(`pwsync-pipe.exe: PasswordChangeNotify x100 median ${timing.median_us} µs, max ${timing.max_us} µs`);
  process.stderr.write(`# pwsync-pipe.exe PasswordChangeNotify x100: median_us=${timing.median_us} max_us=${timing.max_us}\n`);
});

test('a well-formed raw frame is acknowledged with its change id and written as the DLL would', async () => {
  const b = dllBinding();
  const frame = frameOf(b, [{ target: 'hub1', envelope: sealTestSuite(targetPublic, b, testPassword('raw')) }]);
  const got = await send(framed(frame));
  assert.deepEqual(got, { ok: '1', ack: b.changeId.toString('hex') });
  assert.deepEqual(readFileSync(path.join(spool, 'new', spoolFileName(b.changeTime, b.changeId))), frame);
  // The same change again (the DLL's ack came too late and it retried): durable already, acknowledged.
  assert.equal((await send(framed(frame))).ok, '1');
});

test('malformed frames get no acknowledgement and leave nothing in the spool folder', async () => {
  const b = dllBinding();
  const good = frameOf(b, [{ target: 'hub1', envelope: sealTestSuite(targetPublic, b, testPassword('bad')) }]);
  const other = Buffer.from(good);
  other.write('PWC2', 0, 'latin1');
  const unbound = Buffer.from(good);
  unbound[4]! ^= 0xff; // the frame's change id no longer matches its envelope's
  const trailing = Buffer.concat([good, Buffer.from([0])]);
  const cases: Array<[string, Buffer]> = [
    ['bad magic', framed(other)],
    ['envelope bound to another change', framed(unbound)],
    ['trailing bytes', framed(trailing)],
    ['garbage', framed(Buffer.from('PWC1 but nothing else that makes sense'))],
    ['length out of range', Buffer.from([0xff, 0xff, 0xff, 0xff])],
    ['length zero', Buffer.from([0, 0, 0, 0])],
  ];
  const before = newFiles();
  for (const [what, bytes] of cases) {
    const got = await send(bytes, 3000);
    assert.equal(got.ok, '0', `${what}: ${JSON.stringify(got)}`);
    assert.equal(got.got, '0', `${what}: not a byte of answer`);
  }
  assert.deepEqual(newFiles(), before, 'nothing written to new\\');
  assert.deepEqual(readdirSync(path.join(spool, 'tmp')), [], 'nothing left in tmp\\');
  const log = readFileSync(serverLog, 'latin1');
  assert.match(log, /malformed frame of \d+ bytes \(bad magic \(expected PWC1\)\): not acknowledged, nothing written/);
  assert.match(log, /malformed frame of \d+ bytes \(envelope bound to another change id than its frame\)/);
  assert.match(log, /frame length 4294967295 out of range/);
});

test('a client that holds an instance and sends nothing does not block the others, and is cut after 5 s', async () => {
  const holders = [0, 1, 2].map((i) => wine.spawn(path.join(path.dirname(PIPE_EXE), 'harness.exe'), ['hold', PIPE, '8000'], path.join(root, `hold${i}.out`)));
  try {
    await waitFor('three idle clients hold three of the four instances', 30_000, () =>
      ([0, 1, 2].every((i) => existsSync(path.join(root, `hold${i}.out`)) && readFileSync(path.join(root, `hold${i}.out`), 'latin1').includes('held')) ? true : undefined));
    const t0 = Date.now();
    const r = await harness(wine, ['notify', wine.winPath(DLL.test), 'carol', '1'], { passwords: [testPassword('carol-busy')], timeoutMs: 60_000 });
    const call = r.lines.filter((l) => l.startsWith('call ')).map(fields)[0];
    assert.equal(call?.pipe, 'acknowledged', r.stdout);
    assert.ok(Date.now() - t0 < 20_000);
    await waitFor('the idle clients cut by the server', 20_000, () => (/no frame length within 5000 ms/.test(readFileSync(serverLog, 'latin1')) ? true : undefined));
  } finally {
    for (const h of holders) h.kill('SIGKILL');
  }
});

test('a second server on the same pipe name exits non-zero and says why', async () => {
  const r = await wine.run(PIPE_EXE, ['--console', '--pipe', PIPE, '--spool', wine.winPath(spool)], { timeoutMs: 30_000 });
  assert.equal(r.code, 3, r.stdout + r.stderr);
  assert.match(r.stderr, /another process already serves the pipe \\\\\.\\pipe\\pwsync-native \(error \d+\): stop it/);
  // The first one still serves.
  const b = dllBinding();
  const frame = frameOf(b, [{ target: 'hub1', envelope: sealTestSuite(targetPublic, b, testPassword('still')) }]);
  assert.equal((await send(framed(frame))).ok, '1');
});

test('without --pipe it takes PipeName from HKLM\\SOFTWARE\\pwsync; outside the service manager without --console it says so', async () => {
  // The harness config above set PipeName to PIPE, which the first server holds: exit 3 names it.
  const fromRegistry = await wine.run(PIPE_EXE, ['--console', '--spool', wine.winPath(spool)], { timeoutMs: 30_000 });
  assert.equal(fromRegistry.code, 3, fromRegistry.stderr);
  assert.match(fromRegistry.stderr, /pwsync-native/);
  // Under Wine, StartServiceCtrlDispatcher takes 10 s to give up outside the service manager.
  const plain = await wine.run(PIPE_EXE, [], { timeoutMs: 30_000 });
  assert.equal(plain.code, 2);
  assert.match(plain.stderr, /not started by the service manager; use --console/);
});

test('nothing on disk holds a clear password: the prefix, the spool folder, the logs', () => {
  const { files, hits } = scanTree(root);
  assert.ok(files.some((f) => f.includes(`${path.sep}spool${path.sep}`)));
  assert.deepEqual(hits, []);
});
