import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstatSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { subjectToken, type Broker, type Consumer } from '../../core/broker.ts';
import { keyringOf, open, privateRecipientFromPem, recipientFromPem } from '../../core/envelope.ts';
import { generateRecipientKeys } from '../../core/keys.ts';
import { Secret } from '../../core/secret.ts';
import { createCapture, type Capture } from '../../notifier/capture.ts';
import { sendHookChange } from '../../notifier/hook-client.ts';
import { startHookServer, type HookServer } from '../../notifier/hook-server.ts';
import { decodeQueuedChange, deliverConsumer, deliverSubject } from '../../notifier/queued-change.ts';
import { includeAll } from '../../notifier/scope.ts';
import { TEST_PASSWORD_PREFIX, testPassword } from '../lib/passwords.ts';
import { capturingLog, tempDir, WARN } from './helpers.ts';

const TIMEOUT_MS = 1500;
const dir = tempDir();
const socketPath = join(dir, 'hook.sock');
const keys = [generateRecipientKeys(), generateRecipientKeys()];
const targets = ['hub-a', 'hub b'].map((name, i) => ({ name, token: subjectToken(name), recipient: recipientFromPem(keys[i]!.publicPem) }));
const { log, lines } = capturingLog();
let broker: Broker;
let consumers: Consumer[];
let server: HookServer;
let capture: Capture;

before(async () => {
  broker = openSqliteBroker({ file: join(dir, 'notifier.db') });
  consumers = await Promise.all(targets.map((t) => broker.consumer(deliverConsumer(t.token), deliverSubject(t.token))));
  capture = await createCapture({ broker, targets, clockToleranceMs: 300_000, scope: includeAll, domain: 'corp.example', host: 'dc1.corp.example', log });
  server = await startHookServer({ path: socketPath, mode: 0o600, timeoutMs: TIMEOUT_MS, log, onChange: (c, pw) => capture.clear(c, pw) });
});

after(async () => {
  await server.close();
  await capture.stop();
  await broker.close();
});

async function pending(): Promise<number[]> {
  return Promise.all(consumers.map(async (c) => (await c.info()).pending));
}

/** Writes raw bytes (optionally half-closing) and returns the reply line, or '' if none came. */
function raw(bytes: Buffer, opts: { end: boolean }): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection(socketPath);
    let got = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error('no reply within 5 s')); }, 5000);
    s.on('data', (d: Buffer) => { got += d.toString('utf8'); });
    s.on('error', () => undefined);
    s.on('close', () => { clearTimeout(timer); resolve(got.trimEnd()); });
    s.on('connect', () => { if (opts.end) s.end(bytes); else s.write(bytes); });
  });
}

function header(fields: Record<string, unknown>): Buffer {
  return Buffer.from(`${JSON.stringify({ v: 1, domain: 'corp.example', samAccountName: 'bob', ...fields })}\n`);
}

test('the socket is created with mode 0600', () => {
  assert.ok(lstatSync(socketPath).isSocket());
  assert.equal(statSync(socketPath).mode & 0o777, 0o600);
});

test('a change is sealed for every target, queued, and opens to the same password bytes', async () => {
  const before = await pending();
  const pw = testPassword('hook-server-1');
  const expected = Buffer.from(pw);
  const { changeId } = await sendHookChange(socketPath, {
    domain: 'corp.example', samAccountName: 'alice', objectGuid: 'guid-1', upn: 'alice@corp.example', changeTime: 1_700_000_000_000,
  }, Secret.adopt(pw), 5000);
  assert.match(changeId, /^[0-9a-f]{32}$/);
  assert.deepEqual(await pending(), before.map((n) => n + 1));
  for (const [i, c] of consumers.entries()) {
    const [d] = await c.fetch({ max: 100, expiresMs: 1000 });
    assert.ok(d);
    assert.equal(d.msgId, `${changeId}.${targets[i]!.token}`);
    assert.equal(d.data.includes(expected), false, 'the queue record holds no clear password');
    assert.equal(d.data.includes(Buffer.from(TEST_PASSWORD_PREFIX)), false);
    const change = decodeQueuedChange(d.data);
    assert.equal(change.changeId.toString('hex'), changeId);
    assert.equal(change.account?.samAccountName, 'alice');
    assert.equal(change.changeTimeMs, 1_700_000_000_000);
    const opened = open(change.sealedPassword, keyringOf([privateRecipientFromPem(keys[i]!.privatePem)]));
    assert.equal(opened.header.changeId.toString('hex'), changeId);
    assert.equal(opened.header.samAccountName, 'alice');
    assert.equal(opened.header.sourceHost, 'dc1.corp.example');
    assert.ok(opened.password.use((b) => b.equals(expected)));
    await d.ack();
  }
});

const nonUtf8 = Buffer.from([0x41, 0xff, 0xfe, 0x80]);
const refusals: Array<[string, () => Buffer, boolean, RegExp]> = [
  ['garbage without a newline', () => Buffer.from('\x01\x02garbage'.repeat(20)), true, /closed before the header line ended/],
  ['garbage with a newline', () => Buffer.concat([Buffer.from([0xc3, 0x28, 0xa0]), Buffer.from('\nxx')]), true, /header line is not UTF-8 JSON/],
  ['a half-written header', () => Buffer.from('{"v":1,"domain":"corp.example"'), true, /closed before the header line ended/],
  ['non-JSON', () => Buffer.from('hello notifier\nsecret'), true, /not JSON/],
  ['missing fields', () => Buffer.concat([Buffer.from('{"v":1,"domain":"corp.example","passwordBytes":3}\n'), Buffer.from('abc')]), true, /lacks samAccountName/],
  ['a wrong version', () => Buffer.concat([header({ v: 7, passwordBytes: 3 }), Buffer.from('abc')]), true, /version 7/],
  ['a non-UTF-8 password', () => Buffer.concat([header({ passwordBytes: nonUtf8.length }), nonUtf8]), true, /not valid UTF-8/],
  ['a short password', () => Buffer.concat([header({ passwordBytes: 20 }), testPassword('s')]), true, /closed after \d+ of 20 password bytes/],
  ['more bytes than passwordBytes', () => Buffer.concat([header({ passwordBytes: 5 }), testPassword('too-long')]), true, /more bytes came after the header than passwordBytes \(5\)/],
  ['an oversized header', () => Buffer.from(`{"v":1,"dn":"${'x'.repeat(33 * 1024)}`), false, /header line is longer than 32768 bytes/],
  ['another domain', () => Buffer.concat([header({ domain: 'other.example', passwordBytes: testPassword('d').length }), testPassword('d')]), true, /other\.example.*serves corp\.example/],
  ['an empty password', () => header({ passwordBytes: 0 }), true, /passwordBytes/],
  ['nothing at all', () => Buffer.alloc(0), true, /closed before a header line came/],
  ['a request that never completes', () => header({ passwordBytes: 9 }), false, /not complete within 1500 ms/],
  // Control characters in identifiers (event 6979): refused before the password is read.
  ['a NUL in samAccountName', () => Buffer.concat([header({ samAccountName: 'bob\u0000admin', passwordBytes: 3 }), Buffer.from('abc')]), true,
    /the header field samAccountName holds the control character \\u0000 at position 3.*6979/],
  ['an ESC in the dn', () => Buffer.concat([header({ dn: 'CN=\u001b[2Jbob,DC=corp', passwordBytes: 3 }), Buffer.from('abc')]), true,
    /the header field dn holds the control character \\u001b at position 3/],
  ['a line break in the domain', () => Buffer.concat([header({ domain: 'corp.example\nforged', passwordBytes: 3 }), Buffer.from('abc')]), true,
    /the header field domain holds the control character \\u000a/],
  ['a DEL in the upn', () => Buffer.concat([header({ upn: 'bob\u007f@corp.example', passwordBytes: 3 }), Buffer.from('abc')]), true,
    /the header field upn holds the control character \\u007f/],
  ['a NUL in a sealed change\'s version objectGuid', () => Buffer.concat([header({
    kind: 'sealed', changeTime: 1, changeId: '00'.repeat(16), version: { objectGuid: 'g\u0000', kvno: 2 }, envelopeBytes: [3],
  }), Buffer.from('abc')]), true, /version\.objectGuid holds the control character \\u0000/],
];

for (const [what, bytes, end, message] of refusals) {
  test(`the hook endpoint refuses ${what} with a clear error and queues nothing`, async () => {
    const before = await pending();
    const warnsBefore = lines.filter((l) => l.level === WARN && l.msg.includes('refused')).length;
    const reply = JSON.parse(await raw(bytes(), { end })) as { ok: boolean; error: string };
    assert.equal(reply.ok, false);
    assert.match(reply.error, message);
    assert.deepEqual(await pending(), before);
    assert.equal(lines.filter((l) => l.level === WARN && l.msg.includes('refused')).length, warnsBefore + 1);
  });
}

test('no log line holds a test password', () => {
  assert.equal(JSON.stringify(lines).includes(TEST_PASSWORD_PREFIX), false);
});

test('a stale socket file is replaced, a live one and a non-socket are refused', async () => {
  const stale = join(dir, 'stale.sock');
  // A process killed while listening leaves its socket file behind.
  spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`], { timeout: 10_000 });
  assert.ok(lstatSync(stale).isSocket());
  const s = await startHookServer({ path: stale, mode: 0o660, timeoutMs: 1000, log, onChange: () => Promise.resolve('x') });
  assert.equal(statSync(stale).mode & 0o777, 0o660);
  await assert.rejects(startHookServer({ path: stale, mode: 0o600, timeoutMs: 1000, log, onChange: () => Promise.resolve('x') }), /another process is listening on the hook socket/);
  await s.close();

  const live = join(dir, 'live.sock');
  const other = createServer();
  await new Promise<void>((r) => other.listen(live, r));
  await assert.rejects(startHookServer({ path: live, mode: 0o600, timeoutMs: 1000, log, onChange: () => Promise.resolve('x') }), /another process is listening/);
  await new Promise<void>((r) => other.close(() => r()));

  const file = join(dir, 'plain-file');
  writeFileSync(file, 'not a socket');
  await assert.rejects(startHookServer({ path: file, mode: 0o600, timeoutMs: 1000, log, onChange: () => Promise.resolve('x') }), /exists and is not a socket/);
});
