import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, mock, test } from 'node:test';
import { BerWriter, Client } from 'ldapts';
import { LdapDirectory, LdapError } from '../../core/ldap.ts';
import { Secret } from '../../core/secret.ts';
import { generateTlsMaterial, type TlsMaterial } from '../../core/tls-gen.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * How core/ldap.ts binds and reconnects, against a fake LDAP server that decodes what it receives:
 * the simple bind carries the Secret's bytes exactly (never through a JS string, its encoding wiped
 * after the answer), plain ldap:// only with allowPlain, and a directory that cannot be reached is tried again only after a backoff
 * window (100 ms doubling to 5 s, reset by a bind that works), on a clock the test moves.
 */

const BIND_DN = 'CN=reader,DC=example,DC=com';
let dir: string;
let material: TlsMaterial;
const servers: net.Server[] = [];

interface Bind {
  dn: string;
  tag: number;
  password: Buffer;
}

/** One BER element at `o`: its tag, where its value starts, and where it ends (definite lengths only). */
function element(b: Buffer, o: number): { tag: number; start: number; end: number } | undefined {
  if (o + 2 > b.length) return undefined;
  const tag = b[o]!;
  let len = b[o + 1]!;
  let start = o + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (start + n > b.length) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i]!;
    start += n;
  }
  return start + len > b.length ? undefined : { tag, start, end: start + len };
}

/**
 * A fake directory: decodes each LDAPMessage, records simple binds, answers them with `result`
 * (0 success, 49 invalid credentials), or drops the connection when `result` is 'drop'.
 */
interface Fake {
  port: number;
  accepted: number;
  binds: Bind[];
  result: number | 'drop';
  /** Every connection the server holds; destroy them to simulate a lost connection. */
  sockets: Set<net.Socket>;
}

function serve(s: net.Socket, fake: Fake): void {
  fake.sockets.add(s);
  s.on('close', () => fake.sockets.delete(s));
  s.on('error', () => undefined);
  if (fake.result === 'drop') {
    s.destroy();
    return;
  }
  let buf = Buffer.alloc(0);
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const msg = element(buf, 0);
      if (!msg) return;
      const id = element(buf, msg.start)!;
      const op = element(buf, id.end)!;
      const messageId = buf.subarray(id.start, id.end);
      if (op.tag === 0x60) {
        const version = element(buf, op.start)!;
        const name = element(buf, version.end)!;
        const auth = element(buf, name.end)!;
        fake.binds.push({ dn: buf.subarray(name.start, name.end).toString('utf8'), tag: auth.tag, password: Buffer.from(buf.subarray(auth.start, auth.end)) });
        const code = fake.result === 'drop' ? 0 : fake.result;
        // BindResponse: resultCode, matchedDN "", diagnosticMessage "".
        const body = Buffer.from([0x0a, 0x01, code, 0x04, 0x00, 0x04, 0x00]);
        const op2 = Buffer.concat([Buffer.from([0x61, body.length]), body]);
        const idTlv = Buffer.concat([Buffer.from([0x02, messageId.length]), messageId]);
        s.write(Buffer.concat([Buffer.from([0x30, idTlv.length + op2.length]), idTlv, op2]));
      } else if (op.tag === 0x42) {
        s.end();
      }
      buf = buf.subarray(msg.end);
    }
  });
}

async function fakeDirectory(secure: boolean): Promise<Fake> {
  const fake: Fake = { port: 0, accepted: 0, binds: [], result: 0, sockets: new Set() };
  const onConnection = (s: net.Socket): void => {
    fake.accepted++;
    serve(s, fake);
  };
  const server = secure
    ? tls.createServer({ cert: material.certPem, key: material.keyPem }, onConnection)
    : net.createServer(onConnection);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.port = (server.address() as net.AddressInfo).port;
  return fake;
}

function directory(url: string, password: Buffer, more: { allowPlain?: boolean; timeoutMs?: number } = {}): LdapDirectory {
  return new LdapDirectory({
    url, startTls: false, ca: path.join(dir, 'ca.pem'), serverName: 'dc1.example.com', bindDn: BIND_DN,
    password: Secret.adopt(password), timeoutMs: more.timeoutMs ?? 3000, ...more,
  });
}

/** The server drops every connection; resolves once the client has seen its connection close (bounded). */
async function lose(fake: Fake, client: Client): Promise<void> {
  for (const s of fake.sockets) s.destroy();
  for (let i = 0; client.isConnected; i++) {
    assert.ok(i < 200, 'the client noticed the lost connection within 10 s');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function failure(p: Promise<unknown>): Promise<LdapError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof LdapError, `an LdapError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a failure');
}

before(async () => {
  dir = testDir('ldap-bind');
  material = await generateTlsMaterial({ hosts: ['dc1.example.com'] });
  writeFileSync(path.join(dir, 'ca.pem'), material.caCertPem);
});

after(() => {
  for (const s of servers) s.close();
});

test('a simple bind over TLS carries the password bytes exactly, as the [0] simple choice', async () => {
  const fake = await fakeDirectory(true);
  const label = 'é-ß-€-日本-"-\\-';
  const password = testPassword(label + 'p'.repeat(127 - [...testPassword(label).toString('utf8')].length));
  assert.equal([...password.toString('utf8')].length, 127);
  const expected = Buffer.from(password);
  const text = expected.toString('utf8');
  const d = directory(`ldaps://127.0.0.1:${fake.port}`, password);
  // Any decoding of the password's bytes into a string on the way (the bind once did so) is seen here.
  const toString = Buffer.prototype.toString;
  let decoded = 0;
  Buffer.prototype.toString = function (this: Buffer, ...args: Parameters<Buffer['toString']>): string {
    const out = toString.apply(this, args);
    if (out.includes(text)) decoded++;
    return out;
  };
  // The BER writer the password went into, to check it was wiped after the answer.
  const writeBuffer = BerWriter.prototype.writeBuffer;
  const writers: BerWriter[] = [];
  BerWriter.prototype.writeBuffer = function (this: BerWriter, value: Buffer, tag: number): void {
    if (tag === 0x80) writers.push(this);
    writeBuffer.call(this, value, tag);
  };
  try {
    await d.use(async () => undefined);
    Buffer.prototype.toString = toString;
    BerWriter.prototype.writeBuffer = writeBuffer;
    assert.equal(decoded, 0, 'the password was never a JS string on the client side');
    assert.equal(writers.length, 1);
    const memory = (writers[0] as unknown as { data: Buffer }).data;
    assert.ok(memory.length > expected.length && memory.every((b) => b === 0), 'the encoded bind request was wiped, all of it');
    assert.equal(fake.binds.length, 1);
    assert.equal(fake.binds[0]!.dn, BIND_DN);
    assert.equal(fake.binds[0]!.tag, 0x80);
    assert.ok(fake.binds[0]!.password.equals(expected), 'the server received the password byte for byte');
  } finally {
    Buffer.prototype.toString = toString;
    BerWriter.prototype.writeBuffer = writeBuffer;
    await d.close();
  }
});

test('a refused bind names the bind DN and not the password; the bind is not retried', async () => {
  const fake = await fakeDirectory(true);
  fake.result = 49;
  const d = directory(`ldaps://127.0.0.1:${fake.port}`, testPassword('refused-bind'));
  try {
    const e = await failure(d.use(async () => undefined));
    assert.equal(e.retryable, false);
    assert.match(e.message, /refused the bind as CN=reader,DC=example,DC=com \(invalid credentials\)/);
    assert.doesNotMatch(e.message, /Zé€|refused-bind/);
    assert.equal(fake.binds.length, 1);
  } finally {
    await d.close();
  }
});

test('plain ldap:// is refused before any connection, unless allowPlain; then the bind goes without StartTLS', async () => {
  const fake = await fakeDirectory(false);
  const url = `ldap://127.0.0.1:${fake.port}`;
  const refused = testPassword('plain-refused');
  assert.throws(() => directory(url, refused), (e: unknown) => e instanceof LdapError && /plain connection.*in clear/.test(e.message));
  assert.equal(fake.accepted, 0);
  const d = directory(url, testPassword('plain-allowed-pass'), { allowPlain: true });
  try {
    await d.use(async () => undefined);
    assert.equal(fake.accepted, 1);
    assert.equal(fake.binds.length, 1, 'the first and only request was the bind: no StartTLS was asked');
    assert.ok(fake.binds[0]!.password.equals(testPassword('plain-allowed-pass')));
  } finally {
    await d.close();
  }
});

test('an ldapts without the internal the bind relies on fails loudly, not silently', async () => {
  const fake = await fakeDirectory(true);
  const proto = Client.prototype as unknown as { _sendBind?: unknown };
  const original = proto._sendBind;
  delete proto._sendBind;
  const d = directory(`ldaps://127.0.0.1:${fake.port}`, testPassword('no-internal'));
  try {
    const e = await failure(d.use(async () => undefined));
    assert.match(e.message, /ldapts has no Client\._sendBind/);
    assert.equal(e.retryable, false);
    assert.equal(fake.binds.length, 0);
  } finally {
    proto._sendBind = original;
    await d.close();
  }
});

test('a directory that cannot be reached is tried again only after a window doubling from 100 ms to 5 s, reset by a bind', async () => {
  const fake = await fakeDirectory(false);
  fake.result = 'drop';
  const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  // Only Date moves by the test's hand; sockets and timeouts run on the real clock.
  mock.timers.enable({ apis: ['Date'], now: Date.now() });
  const d = directory(`ldap://127.0.0.1:${fake.port}`, testPassword('backoff-pass'), { allowPlain: true });
  try {
    let last = await failure(d.use(async () => undefined));
    assert.equal(last.retryable, true);
    assert.doesNotMatch(last.message, /retrying the connection/);
    assert.equal(fake.accepted, 1);
    const windows = [100, 200, 400, 800, 1600, 3200, 5000, 5000];
    for (const [i, w] of windows.entries()) {
      // Within the window: failed at once with the same retryable error, and no connection made.
      const fast = await failure(d.search('DC=x', { scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'] }));
      assert.equal(fast.retryable, true);
      assert.equal(fast.message, `${last.message} (retrying the connection in ${w} ms)`);
      mock.timers.tick(w - 1);
      assert.match((await failure(d.use(async () => undefined))).message, /retrying the connection in 1 ms\)$/);
      assert.equal(fake.accepted, 1 + i, 'no connection inside the window');
      mock.timers.tick(1);
      // The window is over: one new attempt, which fails and opens the next window.
      last = await failure(d.use(async () => undefined));
      assert.doesNotMatch(last.message, /retrying the connection/);
      assert.equal(fake.accepted, 2 + i);
    }
    // The directory is back: after the window, a bind works and the window resets.
    fake.result = 0;
    mock.timers.tick(5000);
    const client = await d.use(async (c) => c);
    assert.equal(fake.binds.length, 1);
    fake.result = 'drop';
    await lose(fake, client);
    await failure(d.use(async () => undefined));
    assert.match((await failure(d.use(async () => undefined))).message, /retrying the connection in 100 ms/, 'a bind that worked reset the window');
  } finally {
    mock.timers.reset();
    await d.close();
  }
  const closed = await failure(d.use(async () => undefined));
  assert.match(closed.message, /closed/);
  assert.equal(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length, timersBefore, 'no timer left running after close()');
});

test('a lost connection is replaced by a fresh one bound with the same password', async () => {
  const fake = await fakeDirectory(true);
  const d = directory(`ldaps://127.0.0.1:${fake.port}`, testPassword('rebind-pass'));
  try {
    await lose(fake, await d.use(async (c) => c));
    await d.use(async () => undefined);
    assert.equal(fake.accepted, 2);
    assert.equal(fake.binds.length, 2);
    for (const b of fake.binds) assert.ok(b.password.equals(testPassword('rebind-pass')));
  } finally {
    await d.close();
  }
});
