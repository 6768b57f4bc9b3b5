import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { subjectToken, type Broker, type Consumer } from '../../core/broker.ts';
import { keyringOf, open, parseHeader, privateRecipientFromPem, recipientFromPem, seal } from '../../core/envelope.ts';
import { generateRecipientKeys } from '../../core/keys.ts';
import { Secret } from '../../core/secret.ts';
import { createCapture, type Capture } from '../../notifier/capture.ts';
import type { SealedCapture } from '../../notifier/hook-protocol.ts';
import { sendSealedChange } from '../../notifier/hook-client.ts';
import { encodeSealedRequest, HookProtocolError, parseHookRequest } from '../../notifier/hook-protocol.ts';
import { startHookServer, type HookServer } from '../../notifier/hook-server.ts';
import { decodeQueuedChange, deliverConsumer, deliverSubject } from '../../notifier/queued-change.ts';
import type { CaptureScriptConfig } from '../../notifier/samba/capture-config.ts';
import { BASELINE_ENV, runCaptureScript, sambaChangeId } from '../../notifier/samba/capture-script.ts';
import { includeAll } from '../../notifier/scope.ts';
import { TEST_PASSWORD_PREFIX, testPassword } from '../lib/passwords.ts';
import { capturingLog, tempDir } from './helpers.ts';

/**
 * Sealed hook requests (the capturer seals, the notifier never sees the password) and the Samba
 * capture script, against a real hook endpoint and the real capture over the embedded broker.
 * Two targets share one hub key, a third has its own: the script seals once per key.
 */
const BIN = fileURLToPath(new URL('../../bin/pwsync-samba-capture.mjs', import.meta.url));
const keys = [generateRecipientKeys(), generateRecipientKeys()];
const targets = [['hub-a', 0], ['hub-a-standby', 0], ['hub-b', 1]].map(([name, k]) => ({
  name: name as string, token: subjectToken(name as string), recipient: recipientFromPem(keys[k as number]!.publicPem),
}));
const keyrings = keys.map((k) => keyringOf([privateRecipientFromPem(k.privatePem)]));
const dir = tempDir();
const socketPath = join(dir, 'hook.sock');
const configFile = join(dir, 'capture.json');
const { log, lines } = capturingLog();
let broker: Broker;
let capture: Capture;
let server: HookServer;
let clearOnly: HookServer;
const consumers: Consumer[] = [];

const settings: CaptureScriptConfig = {
  v: 1, domain: 'pwsync.test', host: 'dc1.pwsync.test', hookSocket: socketPath, timeoutMs: 5000,
  keys: [keys[0]!.publicPem, keys[0]!.publicPem, keys[1]!.publicPem],
};

before(async () => {
  writeFileSync(configFile, JSON.stringify(settings), { mode: 0o600 });
  broker = openSqliteBroker({ file: join(dir, 'notifier.db') });
  for (const t of targets) consumers.push(await broker.consumer(deliverConsumer(t.token), deliverSubject(t.token)));
  capture = await createCapture({ broker, targets, clockToleranceMs: 300_000, scope: includeAll, domain: 'pwsync.test', host: 'dc1.pwsync.test', log });
  server = await startHookServer({
    path: socketPath, mode: 0o600, timeoutMs: 5000, log, onChange: (c, pw) => capture.clear(c, pw), onSealed: (c) => capture.sealed(c),
  });
  clearOnly = await startHookServer({ path: join(dir, 'clear.sock'), mode: 0o600, timeoutMs: 5000, log, onChange: (c, pw) => capture.clear(c, pw) });
});

after(async () => {
  await server.close();
  await clearOnly.close();
  await capture.stop();
  await broker.close();
});

async function drain(): Promise<Buffer[][]> {
  return Promise.all(consumers.map(async (c) => {
    const got = await c.fetch({ max: 100, expiresMs: 200 });
    for (const d of got) await d.ack();
    return got.map((d) => d.data);
  }));
}

const GUID = '1eebfb2b-7b6b-4429-b113-da2c73c40137';
const b64 = (b: Buffer): string => b.toString('base64');

/** One object as syncpasswords writes it; ldb folds lines longer than 77 characters. */
function ldif(opts: { sam?: string; kvno?: number; password?: Buffer; plain?: boolean; pwdLastSet?: string; fold?: boolean } = {}): Buffer {
  const lines = [
    'dn: CN=bob,CN=Users,DC=pwsync,DC=test',
    `objectGUID: ${GUID}`,
    'objectSid: S-1-5-21-2686911960-4013993666-3778001950-1103',
    `sAMAccountName: ${opts.sam ?? 'bob'}`,
    'userPrincipalName: bob@pwsync.test',
    `pwdLastSet: ${opts.pwdLastSet ?? '134398772321793080'}`,
    ...(opts.kvno === undefined ? [] : [`msDS-KeyVersionNumber: ${opts.kvno}`]),
  ];
  const head = Buffer.from(`${lines.join('\n')}\n`, 'utf8');
  if (!opts.password) return head;
  if (opts.plain) return Buffer.concat([head, Buffer.from('virtualClearTextUTF8: '), opts.password, Buffer.from('\n')]);
  let value = `virtualClearTextUTF8:: ${b64(opts.password)}`;
  if (opts.fold) value = value.match(/.{1,20}/g)!.join('\n ');
  return Buffer.concat([head, Buffer.from(`${value}\n\n`)]);
}

function opened(envelope: Buffer, keyIndex: number): Buffer {
  const o = open(envelope, keyrings[keyIndex]!);
  const bytes = o.password.use((b) => Buffer.from(b));
  o.password.dispose();
  return bytes;
}

test('the capture script seals a folded base64 password once per hub key; it opens to the same bytes', async () => {
  const pw = testPassword('bo-script-1 ñ 日本');
  const out = await runCaptureScript(configFile, ldif({ kvno: 5, password: pw, fold: true }), {});
  assert.ok('done' in out, JSON.stringify(out));
  const id = sambaChangeId(GUID, 5).toString('hex');
  assert.equal(out.done, `queued bob ${id}`);
  const [a, standby, b] = await drain();
  assert.equal(a!.length, 1);
  const qa = decodeQueuedChange(a![0]!);
  const qb = decodeQueuedChange(b![0]!);
  assert.equal(qa.changeId.toString('hex'), id, 'the change id comes from (objectGUID, kvno)');
  assert.ok(decodeQueuedChange(standby![0]!).sealedPassword.equals(qa.sealedPassword), 'two targets with one key share one envelope');
  assert.ok(!qb.sealedPassword.equals(qa.sealedPassword));
  assert.ok(opened(qa.sealedPassword, 0).equals(pw));
  assert.ok(opened(qb.sealedPassword, 1).equals(pw));
  const h = parseHeader(qa.sealedPassword).header;
  assert.equal(h.changeTime, 1_795_403_632_179, 'pwdLastSet (FILETIME) → ms since the epoch');
  assert.deepEqual([h.samAccountName, h.objectGuid, h.upn, h.dn, h.sourceHost, h.domain],
    ['bob', GUID, 'bob@pwsync.test', 'CN=bob,CN=Users,DC=pwsync,DC=test', 'dc1.pwsync.test', 'pwsync.test']);
});

test('a replay of the same password version is answered DONE but queued nothing; the next version is queued', async () => {
  const pw = testPassword('bo-script-1 ñ 日本');
  const replay = await runCaptureScript(configFile, ldif({ kvno: 5, password: pw }), {});
  assert.ok('done' in replay, JSON.stringify(replay));
  assert.deepEqual((await drain()).map((x) => x.length), [0, 0, 0]);
  const next = await runCaptureScript(configFile, ldif({ kvno: 6, password: testPassword('bo-script-2'), plain: true }), {});
  assert.ok('done' in next, JSON.stringify(next));
  const [a] = await drain();
  assert.ok(opened(decodeQueuedChange(a![0]!).sealedPassword, 0).equals(testPassword('bo-script-2')), 'a plain (":") value is read too');
});

test('during the baseline the script records the version and nothing is sent, then or later', async () => {
  const out = await runCaptureScript(configFile, ldif({ sam: 'carol', kvno: 9, password: testPassword('ca-base') }), { [BASELINE_ENV]: '1' });
  assert.ok('done' in out && out.done.startsWith('baseline recorded carol'), JSON.stringify(out));
  const again = await runCaptureScript(configFile, ldif({ sam: 'carol', kvno: 9, password: testPassword('ca-base') }), {});
  assert.ok('done' in again);
  assert.deepEqual((await drain()).map((x) => x.length), [0, 0, 0]);
});

test('an object without a password is answered DONE and sends nothing', async () => {
  const out = await runCaptureScript(configFile, ldif({ kvno: 12 }), {});
  assert.ok('done' in out && out.done.startsWith('no password'), JSON.stringify(out));
  assert.deepEqual((await drain()).map((x) => x.length), [0, 0, 0]);
});

test('failures are reported, never DONE: no notifier, unreadable settings, unreadable LDIF', async () => {
  const gone = join(dir, 'gone.json');
  writeFileSync(gone, JSON.stringify({ ...settings, hookSocket: join(dir, 'nobody.sock') }));
  const cases: Array<[string, Buffer, RegExp]> = [
    [gone, ldif({ kvno: 20, password: testPassword('x1') }), /no notifier is listening on .*nobody\.sock/],
    [join(dir, 'missing.json'), ldif({ kvno: 20, password: testPassword('x2') }), /cannot read the capture settings/],
    [configFile, Buffer.from('objectGUID: x\nvirtualClearTextUTF8:: !!!!\n'), /LDIF from syncpasswords cannot be read/],
    [configFile, ldif({ kvno: 20, password: testPassword('x3'), sam: '' }), /lacks objectGUID or sAMAccountName/],
  ];
  for (const [file, input, message] of cases) {
    const out = await runCaptureScript(file, input, {});
    assert.ok('error' in out, `${message}: ${JSON.stringify(out)}`);
    assert.match(out.error, message);
    assert.equal(out.error.includes(TEST_PASSWORD_PREFIX), false);
  }
  assert.deepEqual((await drain()).map((x) => x.length), [0, 0, 0]);
});

function runBin(args: string[], input: Buffer): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
    child.stdin.end(input);
  });
}

test('as a process it answers syncpasswords with a reply that starts with "DONE-EXIT: ", or exits 1 with the reason', async () => {
  const ok = await runBin([configFile], ldif({ kvno: 30, password: testPassword('bo-bin-30') }));
  assert.equal(ok.code, 0, ok.err);
  assert.equal(ok.err, '', 'nothing on stderr: syncpasswords reads both streams as one reply');
  assert.match(ok.out, /^DONE-EXIT: queued bob [0-9a-f]{32}\n$/);
  assert.equal((await drain())[0]!.length, 1);
  const bad = await runBin([join(dir, 'missing.json')], ldif({ kvno: 31, password: testPassword('bo-bin-31') }));
  assert.equal(bad.code, 1);
  assert.equal(bad.out, '');
  assert.match(bad.err, /^pwsync-samba-capture: cannot read the capture settings/);
});

function sealedChange(opts: { baseline?: boolean; keysFor?: number[] } = {}): SealedCapture {
  const account = { domain: 'pwsync.test', samAccountName: 'dave', objectGuid: 'g-dave', objectSid: 'S-1-5-21-9', upn: 'dave@pwsync.test', dn: 'CN=dave' };
  const changeId = randomBytes(16);
  const changeTime = 1_700_000_000_000;
  const binding = { ...account, changeId, changeTime, sourceHost: 'dc1.pwsync.test' };
  return {
    account, changeTime, changeId, version: { objectGuid: 'g-dave', kvno: 1 },
    ...(opts.baseline ? { baseline: true } : {}),
    envelopes: (opts.keysFor ?? [0, 1]).map((k) => seal(recipientFromPem(keys[k]!.publicPem), binding, Secret.adopt(testPassword('da-sealed')))),
  };
}

test('sendSealedChange: the notifier queues the capturer\'s own envelopes, byte for byte', async () => {
  const c = sealedChange();
  const { changeId } = await sendSealedChange(socketPath, c, 5000);
  assert.equal(changeId, c.changeId.toString('hex'));
  const [a, standby, b] = await drain();
  assert.ok(decodeQueuedChange(a![0]!).sealedPassword.equals(c.envelopes[0]!));
  assert.ok(decodeQueuedChange(standby![0]!).sealedPassword.equals(c.envelopes[0]!));
  assert.ok(decodeQueuedChange(b![0]!).sealedPassword.equals(c.envelopes[1]!));
});

test('a sealed header round-trips through encode and parse', () => {
  const c = sealedChange({ baseline: true, keysFor: [] });
  const bytes = encodeSealedRequest(c);
  const nl = bytes.indexOf(0x0a);
  assert.equal(nl, bytes.length - 1, 'a baseline without envelopes is the header line alone');
  const r = parseHookRequest(bytes.subarray(0, nl).toString('utf8'));
  assert.equal(r.kind, 'sealed');
  const { envelopes: _, ...rest } = c;
  assert.deepEqual(r.header, { ...rest, envelopeBytes: [] });
});

function raw(path: string, bytes: Buffer): Promise<{ ok: boolean; error?: string }> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let got = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error('no reply within 5 s')); }, 5000);
    s.on('data', (d: Buffer) => { got += d.toString('utf8'); });
    s.on('error', () => undefined);
    s.on('close', () => { clearTimeout(timer); resolve(JSON.parse(got) as { ok: boolean; error?: string }); });
    s.on('connect', () => s.end(bytes));
  });
}

const headerOf = (fields: Record<string, unknown>): Buffer => Buffer.from(`${JSON.stringify({
  v: 1, kind: 'sealed', domain: 'pwsync.test', samAccountName: 'dave', changeTime: 1, changeId: 'ab'.repeat(16), envelopeBytes: [3], ...fields,
})}\n`);

const refusals: Array<[string, () => Buffer, RegExp, string?]> = [
  ['a changeId that is not 32 hex digits', () => Buffer.concat([headerOf({ changeId: 'xyz' }), Buffer.from('abc')]), /changeId must be 32 hex digits/],
  ['no changeTime', () => Buffer.concat([headerOf({ changeTime: undefined }), Buffer.from('abc')]), /needs changeTime/],
  ['no envelope outside a baseline', () => headerOf({ envelopeBytes: [] }), /at least one envelope/],
  ['a bad version', () => Buffer.concat([headerOf({ version: { objectGuid: 'g', kvno: -1 } }), Buffer.from('abc')]), /version must be/],
  ['a password field', () => Buffer.concat([headerOf({ password: 'x' }), Buffer.from('abc')]), /unknown field\(s\) password/],
  ['an unknown kind', () => Buffer.concat([headerOf({ kind: 'hashed' }), Buffer.from('abc')]), /kind is "hashed"/],
  ['fewer bytes than envelopeBytes', () => Buffer.concat([headerOf({ envelopeBytes: [10] }), Buffer.from('abc')]), /closed after 3 of 10 envelope bytes/],
  ['more bytes than envelopeBytes', () => Buffer.concat([headerOf({ envelopeBytes: [2] }), Buffer.from('abc')]), /more bytes came after the header than envelopeBytes \(2\)/],
  ['an envelope that is not one', () => Buffer.concat([headerOf({}), Buffer.from('abc')]), /an envelope cannot be read/],
  ['a sealed request on a clear-only endpoint', () => Buffer.concat([headerOf({}), Buffer.from('abc')]), /takes clear requests only/, 'clear.sock'],
];

for (const [what, bytes, message, socket] of refusals) {
  test(`a sealed request with ${what} is refused with a clear error and queues nothing`, async () => {
    const reply = await raw(join(dir, socket ?? 'hook.sock'), bytes());
    assert.equal(reply.ok, false);
    assert.match(reply.error!, message);
    assert.deepEqual((await drain()).map((x) => x.length), [0, 0, 0]);
  });
}

test('parseHookRequest keeps clear requests as they were', () => {
  const r = parseHookRequest(JSON.stringify({ v: 1, kind: 'clear', domain: 'd', samAccountName: 'a', passwordBytes: 4 }));
  assert.equal(r.kind, 'clear');
  assert.throws(() => parseHookRequest(JSON.stringify({ v: 1, domain: 'd', samAccountName: 'a', passwordBytes: 4, envelopeBytes: [1] })),
    (e: unknown) => e instanceof HookProtocolError && /unknown field\(s\) envelopeBytes/.test(e.message));
});

test('no log line holds a test password', () => {
  assert.equal(JSON.stringify(lines).includes(TEST_PASSWORD_PREFIX), false);
});
