import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { subjectToken, type Broker, type KvStore } from '../../core/broker.ts';
import { recipientFromPem, type Binding } from '../../core/envelope.ts';
import { createCapture, type CaptureTarget } from '../../notifier/capture.ts';
import { decodeQueuedChange, deliverSubject } from '../../notifier/queued-change.ts';
import { includeAll } from '../../notifier/scope.ts';
import { parseDllStatus, statusProblem } from '../../notifier/windows/dll-status.ts';
import { decodeFrame, encodeFrame, FrameError, spoolFileName } from '../../notifier/windows/frame.ts';
import { listsPackage, multiSzItems, parseRegQuery, type CommandRunner } from '../../notifier/windows/registry.ts';
import { startWindowsCapture, type WindowsCapture } from '../../notifier/windows/spool-drain.ts';
import { capturingLog, tempDir, waitFor } from '../notifier/helpers.ts';
import { testPassword } from '../lib/passwords.ts';
import { dllBinding, rsaTestKey, sealP256, sealTestSuite } from './helpers.ts';

/**
 * The notifier's side of the filter DLL's handoff, without Wine: frames made in Node as the DLL
 * makes them, dropped into a spool folder, drained into the per-target queues; the DLL's status
 * file read into the capture state. (The pipe server is native: pipe-server.test.ts.)
 */
const DOMAIN = 'corp.example.com';

function p256(): CaptureTarget['recipient'] {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return recipientFromPem(publicKey.export({ type: 'spki', format: 'pem' }));
}

interface Rig {
  dir: string;
  spool: string;
  broker: Broker;
  targets: CaptureTarget[];
  source: WindowsCapture;
  lines: ReturnType<typeof capturingLog>['lines'];
  queued(target: string): Promise<Array<{ changeId: string; envelope: Buffer; sourceDc: string; account: string }>>;
  close(): Promise<void>;
}

const keyA = p256();
const keyB = p256();

/** A notifier's capture with targets hubA and hubB (enabled) and old (disabled), draining `spool`. */
async function rig(opts: { taken?: (kv: KvStore) => KvStore; before?: (spool: string) => void; platform?: NodeJS.Platform; run?: CommandRunner } = {}): Promise<Rig> {
  const dir = tempDir();
  const spool = path.join(dir, 'spool');
  mkdirSync(path.join(spool, 'new'), { recursive: true });
  opts.before?.(spool);
  const broker = openSqliteBroker({ file: path.join(dir, 'notifier.db') });
  const { log, lines } = capturingLog();
  const targets: CaptureTarget[] = [
    { name: 'hubA', token: subjectToken('hubA'), recipient: keyA },
    { name: 'hubB', token: subjectToken('hubB'), recipient: keyB },
  ];
  const capture = await createCapture({ broker, targets, clockToleranceMs: 300_000, scope: includeAll, domain: DOMAIN, host: 'dc1.corp.example.com', log });
  const kv = await broker.kv('windows-taken');
  const source = await startWindowsCapture({
    spoolDir: spool, dllName: 'pwsyncfilter', pollMs: 60_000, targets, disabledTargets: ['old'], capture,
    taken: opts.taken ? opts.taken(kv) : kv, host: 'dc1.corp.example.com', log,
    ...(opts.platform ? { platform: opts.platform } : {}), ...(opts.run ? { run: opts.run } : {}),
  });
  let probes = 0;
  return {
    dir, spool, broker, targets, source, lines,
    async queued(target) {
      const c = await broker.consumer(`probe-${probes++}`, deliverSubject(subjectToken(target)));
      return (await c.fetch({ max: 100, expiresMs: 50 })).map((d) => {
        const q = decodeQueuedChange(d.data);
        return { changeId: q.changeId.toString('hex'), envelope: q.sealedPassword, sourceDc: q.sourceDc, account: q.account!.samAccountName };
      });
    },
    async close() {
      await source.stop();
      await capture.stop();
      await broker.close();
    },
  };
}

/** A change as the DLL spools it: one envelope per target (each sealed for the key given). */
function spoolChange(spool: string, b: Binding, entries: Array<{ target: string; key: CaptureTarget['recipient'] }>, label: string): { name: string; frame: Buffer; envelopes: Buffer[] } {
  const envelopes = entries.map((e) => sealP256(e.key, b, testPassword(label)));
  const frame = encodeFrame(b.changeId, entries.map((e, i) => ({ target: e.target, envelope: envelopes[i]! })));
  const name = spoolFileName(b.changeTime, b.changeId);
  writeFileSync(path.join(spool, 'new', name), frame);
  return { name, frame, envelopes };
}

test('frames: encode/decode round trip; each structural fault is named', () => {
  const b = dllBinding();
  const env = sealP256(keyA, b, testPassword('frame'));
  const frame = encodeFrame(b.changeId, [{ target: 'hubA', envelope: env }]);
  const f = decodeFrame(frame);
  assert.deepEqual(f.changeId, b.changeId);
  assert.equal(f.changeTime, b.changeTime);
  assert.deepEqual(f.entries, [{ target: 'hubA', envelope: env }]);
  const other = sealP256(keyA, dllBinding(), testPassword('other'));
  const cases: Array<[Buffer, RegExp]> = [
    [Buffer.from('PWC2' + 'x'.repeat(30)), /bad magic/],
    [frame.subarray(0, frame.length - 1), /bad length|truncated/],
    [Buffer.concat([frame, Buffer.from([0])]), /1 bytes after its last envelope/],
    [encodeFrame(b.changeId, []), /no envelope/],
    [encodeFrame(b.changeId, [{ target: 'hubA', envelope: other }]), /another change id/],
    [encodeFrame(b.changeId, [{ target: 'hubA', envelope: env }, { target: 'hubA', envelope: env }]), /appears twice/],
  ];
  for (const [buf, re] of cases) assert.throws(() => decodeFrame(buf), (e: unknown) => e instanceof FrameError && re.test(e.message), String(re));
});

test('the drain queues in file-name order (change time, then id), envelopes unopened, and empties new', async () => {
  const t = Date.now();
  const made: Array<{ name: string; envelopes: Buffer[]; id: string; time: number }> = [];
  const r = await rig({
    before: (spool) => {
      for (const dt of [2000, 0, 1000]) {
        const b = dllBinding({ changeTime: t + dt, samAccountName: `u${dt}` });
        made.push({ ...spoolChange(spool, b, [{ target: 'hubA', key: keyA }, { target: 'hubB', key: keyB }], `order-${dt}`), id: b.changeId.toString('hex'), time: b.changeTime });
      }
    },
  });
  try {
    await r.source.drained();
    const expected = [...made].sort((x, y) => x.time - y.time);
    for (const [target, i] of [['hubA', 0], ['hubB', 1]] as const) {
      const q = await r.queued(target);
      assert.deepEqual(q.map((x) => x.changeId), expected.map((m) => m.id), `${target}: in change-time order`);
      q.forEach((x, k) => assert.deepEqual(x.envelope, expected[k]!.envelopes[i], 'the envelope is queued byte for byte'));
      assert.deepEqual(q.map((x) => x.sourceDc), ['dc1.corp.example.com', 'dc1.corp.example.com', 'dc1.corp.example.com']);
    }
    assert.deepEqual(readdirSync(path.join(r.spool, 'new')), []);
  } finally {
    await r.close();
  }
});

test('a second copy of a change (acknowledged too late, then spooled) is dropped by its change id', async () => {
  const r = await rig();
  try {
    const b = dllBinding();
    const first = spoolChange(r.spool, b, [{ target: 'hubA', key: keyA }, { target: 'hubB', key: keyB }], 'dup');
    await r.source.drained();
    await waitFor('the first copy taken', () => !existsSync(path.join(r.spool, 'new', first.name)));
    writeFileSync(path.join(r.spool, 'new', first.name), first.frame);
    await r.source.drained();
    await waitFor('the second copy removed', () => !existsSync(path.join(r.spool, 'new', first.name)));
    assert.equal((await r.queued('hubA')).length, 1);
    assert.equal((await r.queued('hubB')).length, 1);
    assert.ok(r.lines.some((l) => /already taken/.test(l.msg) && l.changeId === b.changeId.toString('hex')));
  } finally {
    await r.close();
  }
});

test('bad frames go to bad\\ with a reason; other files in new\\ are left alone', async () => {
  const r = await rig();
  try {
    const b = dllBinding();
    const garbage = spoolFileName(b.changeTime, b.changeId);
    writeFileSync(path.join(r.spool, 'new', garbage), Buffer.from('not a frame at all, but long enough to pass the first check'));
    // A good frame under another change's name.
    const c = dllBinding();
    const env = sealP256(keyA, c, testPassword('misnamed'));
    const misnamed = spoolFileName(c.changeTime + 1, c.changeId);
    writeFileSync(path.join(r.spool, 'new', misnamed), encodeFrame(c.changeId, [{ target: 'hubA', envelope: env }]));
    writeFileSync(path.join(r.spool, 'new', 'README.txt'), 'not ours');
    await r.source.drained();
    assert.deepEqual(readdirSync(path.join(r.spool, 'new')), ['README.txt']);
    assert.match(readFileSync(path.join(r.spool, 'bad', `${garbage}.reason`), 'utf8'), /bad magic/);
    assert.match(readFileSync(path.join(r.spool, 'bad', `${misnamed}.reason`), 'utf8'), /file name names another change/);
    assert.equal((await r.queued('hubA')).length, 0);
    assert.equal(r.lines.filter((l) => l.eventId === 6963).length, 2);
  } finally {
    await r.close();
  }
});

test('envelopes for an unknown or disabled target, or sealed for another key, are kept aside (never lost); the rest is queued', async () => {
  const r = await rig();
  try {
    const b = dllBinding();
    const { name, envelopes } = spoolChange(r.spool, b, [
      { target: 'hubA', key: keyA }, { target: 'old', key: keyA }, { target: 'nope', key: keyA }, { target: 'hubB', key: keyA },
    ], 'aside');
    await r.source.drained();
    assert.deepEqual((await r.queued('hubA')).map((q) => q.envelope), [envelopes[0]]);
    assert.equal((await r.queued('hubB')).length, 0);
    const aside = decodeFrame(readFileSync(path.join(r.spool, 'aside', name)));
    assert.deepEqual(aside.entries.map((e) => e.target), ['old', 'nope', 'hubB']);
    assert.deepEqual(aside.entries.map((e) => e.envelope), envelopes.slice(1), 'kept byte for byte');
    const reason = readFileSync(path.join(r.spool, 'aside', `${name}.reason`), 'utf8');
    assert.match(reason, /old: target old is disabled/);
    assert.match(reason, /nope: this notifier has no target named nope/);
    assert.match(reason, /hubB: sealed for key [0-9a-f]{32}, but target hubB's key is/);
    assert.deepEqual(readdirSync(path.join(r.spool, 'new')), []);
  } finally {
    await r.close();
  }
});

test('a spooled change stamped beyond notifier.clockTolerance is kept aside with its reason (6974); the one beside it is queued', async () => {
  const future: string[] = [];
  let present = '';
  const both = [{ target: 'hubA', key: keyA }, { target: 'hubB', key: keyB }];
  const r = await rig({
    before: (spool) => {
      present = spoolChange(spool, dllBinding({ samAccountName: 'present' }), both, 'present').name;
      for (const t of [Date.UTC(9999, 11, 31), Date.now() + 10 * 60_000]) future.push(spoolChange(spool, dllBinding({ changeTime: t, samAccountName: 'future' }), both, 'future').name);
    },
  });
  try {
    await r.source.drained();
    assert.deepEqual((await r.queued('hubA')).map((q) => q.account), ['present']);
    assert.deepEqual((await r.queued('hubB')).map((q) => q.account), ['present']);
    for (const name of future) {
      assert.equal(decodeFrame(readFileSync(path.join(r.spool, 'aside', name))).entries.length, 2, 'kept whole');
      const reason = readFileSync(path.join(r.spool, 'aside', `${name}.reason`), 'utf8');
      assert.match(reason, /hubA: change time .* is \d+[dm] ahead of this clock .*beyond the clock tolerance of 5m.*event 6974/);
    }
    assert.equal(r.lines.filter((l) => l.eventId === 6974 && l.account === 'future').length, 2);
    assert.ok(!readdirSync(path.join(r.spool, 'aside')).includes(present));
    assert.deepEqual(readdirSync(path.join(r.spool, 'new')), []);
  } finally {
    await r.close();
  }
});

test('a test-only suite envelope is kept aside by a notifier started without PWSYNC_TEST_ONLY_SUITES; another domain too', async () => {
  const r = await rig();
  try {
    const b = dllBinding();
    const env = sealTestSuite(rsaTestKey().publicKey, b, testPassword('suite'));
    const name = spoolFileName(b.changeTime, b.changeId);
    writeFileSync(path.join(r.spool, 'new', name), encodeFrame(b.changeId, [{ target: 'hubA', envelope: env }]));
    const other = spoolChange(r.spool, dllBinding({ domain: 'elsewhere.example' }), [{ target: 'hubA', key: keyA }], 'domain');
    await r.source.drained();
    assert.match(readFileSync(path.join(r.spool, 'aside', `${name}.reason`), 'utf8'), /test-only suite 241/);
    assert.match(readFileSync(path.join(r.spool, 'aside', `${other.name}.reason`), 'utf8'), /domain elsewhere\.example, but this notifier serves corp\.example\.com/);
    assert.equal((await r.queued('hubA')).length, 0);
  } finally {
    await r.close();
  }
});

test('a crash between the queue write and the delete replays the file: still one queued change per target', async () => {
  let failPut = true;
  const r = await rig({
    taken: (kv) => ({
      ...kv, get: (k) => kv.get(k), keys: (p) => kv.keys(p), delete: (k) => kv.delete(k),
      put: async (k, v) => {
        if (failPut) {
          failPut = false;
          throw new Error('simulated crash after the queue write');
        }
        return kv.put(k, v);
      },
    }),
  });
  try {
    const b = dllBinding();
    const { name } = spoolChange(r.spool, b, [{ target: 'hubA', key: keyA }, { target: 'hubB', key: keyB }], 'crash');
    await r.source.drained();
    await waitFor('the failed pass logged', () => r.lines.some((l) => /draining the spool folder failed/.test(l.msg) && /simulated crash/.test(String(l.err))));
    if (existsSync(path.join(r.spool, 'new', name))) await r.source.drained();
    assert.equal(existsSync(path.join(r.spool, 'new', name)), false, 'taken on the replay');
    assert.equal((await r.queued('hubA')).length, 1, 'the replay is dropped by the queue\'s message id');
    assert.equal((await r.queued('hubB')).length, 1);
  } finally {
    await r.close();
  }
});

test('capture state: from the DLL\'s status file, and on Windows from Notification Packages', async () => {
  const now = Date.now();
  const boot = now - os.uptime() * 1000;
  const ok = parseDllStatus(`version=0.1.0\r\nbuild=prod\r\nloadedAt=${now}\r\npid=612\r\nstate=ok\r\nreason=\r\ntargets=2\r\nfailed=0\r\nlastFailure=\r\n`);
  assert.equal(statusProblem(ok, 'status.txt', now, boot), undefined);
  assert.match(statusProblem('missing', 'S\\status.txt', now, boot)!, /has not written S\\status\.txt.*reboot/);
  assert.match(statusProblem({ ...ok, state: 'disabled', reason: 'exception 0xc0000005 in PasswordChangeNotify' }, 's', now, boot)!, /disabled itself: exception 0xc0000005/);
  assert.match(statusProblem({ ...ok, loadedAt: boot - 3_600_000 }, 's', now, boot)!, /before this boot/);
  assert.match(statusProblem({ ...ok, targets: 0, reason: 'target t1: suite 241 refused by the production build' }, 's', now, boot)!, /no enabled target.*suite 241 refused/);

  let packages = 'scecli\\0rassfm';
  const run: CommandRunner = async (cmd, args) => {
    assert.equal(cmd, 'reg.exe');
    assert.deepEqual(args, ['query', 'HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa', '/v', 'Notification Packages']);
    return { code: 0, stderr: '', stdout: `\r\nHKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Lsa\r\n    Notification Packages    REG_MULTI_SZ    ${packages}\r\n\r\n` };
  };
  const r = await rig({ platform: 'win32', run });
  try {
    assert.equal(r.source.state().state, 'not-registered');
    assert.match(r.source.state().detail, /has not written/);
    writeFileSync(path.join(r.spool, 'status.txt'), `version=0.1.0\r\nbuild=prod\r\nloadedAt=${Date.now()}\r\npid=1\r\nstate=ok\r\nreason=\r\ntargets=2\r\nfailed=0\r\nlastFailure=\r\n`);
    await r.source.checkState();
    assert.equal(r.source.state().state, 'not-registered');
    assert.match(r.source.state().detail, /Notification Packages lists scecli, rassfm, not pwsyncfilter/);
    packages = 'scecli\\0rassfm\\0pwsyncfilter';
    await r.source.checkState();
    assert.deepEqual({ ...r.source.state(), lastCaptureMs: 0 }, { source: 'windows', state: 'running', detail: '', lastCaptureMs: 0 });
    writeFileSync(path.join(r.spool, 'status.txt'), `loadedAt=${Date.now()}\r\nstate=ok\r\ntargets=2\r\nfailed=3\r\nlastFailure=1795 stage=seal error=0xc00000e5 sealing failed\r\n`);
    await r.source.checkState();
    assert.equal(r.source.state().state, 'running');
    assert.match(r.source.state().detail, /3 change\(s\) not captured.*stage=seal/);
    assert.ok(r.lines.some((l) => l.eventId === 6964));
  } finally {
    await r.close();
  }
});

test('reg.exe output: values and REG_MULTI_SZ items', () => {
  const out = 'HKEY_LOCAL_MACHINE\\SOFTWARE\\pwsync\r\n    PipeName    REG_SZ    \\\\.\\pipe\\pwsync-hook\r\n    TimeBudgetMs    REG_DWORD    0x12c\r\n    Empty    REG_SZ    \r\n';
  assert.deepEqual(parseRegQuery(out), [
    { name: 'PipeName', type: 'REG_SZ', data: '\\\\.\\pipe\\pwsync-hook' },
    { name: 'TimeBudgetMs', type: 'REG_DWORD', data: '0x12c' },
    { name: 'Empty', type: 'REG_SZ', data: '' },
  ]);
  assert.deepEqual(multiSzItems('scecli\\0rassfm\\0'), ['scecli', 'rassfm']);
  assert.equal(listsPackage(['scecli', 'PwSyncFilter'], 'pwsyncfilter'), true);
  assert.equal(listsPackage(['scecli'], 'pwsyncfilter'), false);
});
