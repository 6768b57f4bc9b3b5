import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import {
  isExtensionHost, isNativePasswordSetter, isObjectSource,
  type Connector, type ExtensionHost, type NativePasswordSetter, type ObjectSource,
} from '../../connectors/contract.ts';
import { ConnectorMetrics } from '../../connectors/metrics.ts';
import { wrapConnector } from '../../connectors/wrap.ts';
import {
  ObjectNotFoundError, PolicyViolationError, TargetUnavailableError,
  type ExtensionConnection, type OperationContext, type RecordSet, type TargetObject,
} from '../../core/extension.ts';
import { silentLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { testPassword } from '../lib/passwords.ts';

const log = silentLogger();

function base(name = 'fake'): Connector {
  return {
    name, kind: 'fake',
    open: async () => undefined,
    close: async () => undefined,
    securityLevel: () => 'encrypted',
    test: async () => 'fine',
  };
}

const OBJECTS: TargetObject[] = [{ id: 'a', attributes: { uid: 'a' } }, { id: 'b', attributes: { uid: 'b' } }];

function source(find: ObjectSource['find'] = async () => OBJECTS): ObjectSource {
  return {
    async *list() { yield* OBJECTS; },
    find,
    version: async () => 'v1',
    attributes: async () => ['uid'],
  };
}

const records: RecordSet = { location: 'mem', get: () => undefined, set: () => undefined, commit: async () => undefined };

test('wrap: the wrapped connector has exactly the capabilities of the inner one', () => {
  const plain = wrapConnector(base(), { timeoutMs: 1000, log });
  assert.ok(!isObjectSource(plain) && !isNativePasswordSetter(plain) && !isExtensionHost(plain));
  assert.equal(plain.securityLevel(), 'encrypted');

  const setOnly: Connector & NativePasswordSetter = { ...base(), setPassword: async () => undefined };
  const w1 = wrapConnector(setOnly, { timeoutMs: 1000, log });
  assert.ok(isNativePasswordSetter(w1) && !isObjectSource(w1) && !isExtensionHost(w1));
  assert.equal('changePassword' in w1, false, 'no changePassword when the inner one has none');

  const full: Connector & ObjectSource & NativePasswordSetter & ExtensionHost = {
    ...base(), ...source(),
    setPassword: async () => undefined,
    changePassword: async () => undefined,
    connect: async () => ({ connection: { kind: 'records', records }, release: async () => undefined }),
  };
  const w2 = wrapConnector(full, { timeoutMs: 1000, log });
  assert.ok(isObjectSource(w2) && isNativePasswordSetter(w2) && isExtensionHost(w2));
  assert.equal(typeof w2.changePassword, 'function');
  assert.equal(w2.name, 'fake');
  assert.equal(w2.kind, 'fake');
});

test('wrap: a call that takes too long fails retryably with "timed out after Ns"', async () => {
  const slow: Connector = { ...base('slow'), test: () => new Promise<string>(() => undefined) };
  const w = wrapConnector(slow, { timeoutMs: 50, log });
  await assert.rejects(w.test(), (e: unknown) => {
    assert.ok(e instanceof TargetUnavailableError);
    assert.equal(e.retryable, true);
    assert.match(e.message, /connector slow: test timed out after 0\.05s/);
    return true;
  });
  const [stat] = w.metrics.snapshot();
  assert.deepEqual([stat!.operation, stat!.outcome, stat!.count], ['test', 'timeout', 1]);
});

test('wrap: untyped errors become retryable with the original as cause; typed ones pass unchanged', async () => {
  const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
  const notFound = new ObjectNotFoundError('uid=x', 'the directory');
  const policy = new PolicyViolationError('too short');
  const failures = [reset, notFound, policy];
  let call = 0;
  const c = { ...base('db'), ...source(async () => { throw failures[call++]; }) };
  const w = wrapConnector(c, { timeoutMs: 1000, log });
  assert.ok(isObjectSource(w));
  await assert.rejects(w.find('uid', 'x', false), (e: unknown) => {
    assert.ok(e instanceof TargetUnavailableError);
    assert.equal(e.retryable, true);
    assert.equal(e.cause, reset);
    assert.match(e.message, /connector db: find failed: read ECONNRESET/);
    return true;
  });
  await assert.rejects(w.find('uid', 'x', false), (e: unknown) => e === notFound && notFound.retryable === false);
  await assert.rejects(w.find('uid', 'x', false), (e: unknown) => e === policy && policy.retryable === false);

  const syncThrow: Connector = { ...base('sync'), test: () => { throw new TypeError('bad'); } };
  await assert.rejects(wrapConnector(syncThrow, { timeoutMs: 1000, log }).test(), (e: unknown) => e instanceof TargetUnavailableError && e.cause instanceof TypeError);
});

test('wrap: a batch connection that arrives after its timeout is released', { timeout: 10_000 }, async () => {
  let deliver!: () => void;
  let released = false;
  const host: Connector & ExtensionHost = {
    ...base('late'),
    connect: () => new Promise((resolve) => {
      deliver = () => resolve({ connection: { kind: 'records', records } as ExtensionConnection, release: async () => { released = true; } });
    }),
  };
  const w = wrapConnector(host, { timeoutMs: 20, log });
  assert.ok(isExtensionHost(w));
  await assert.rejects(w.connect(), /connect timed out/);
  deliver();
  for (let i = 0; i < 100 && !released; i++) await new Promise((r) => setImmediate(r));
  assert.equal(released, true, 'the late connection was released, so the file is not held');
});

test('wrap: connect and release, setPassword and list go through the wrapper and are counted', async () => {
  let releases = 0;
  let sets = 0;
  const inner: Connector & ObjectSource & NativePasswordSetter & ExtensionHost = {
    ...base('all'), ...source(),
    setPassword: async () => { sets++; },
    connect: async () => ({ connection: { kind: 'records', records }, release: async () => { releases++; } }),
  };
  const metrics = new ConnectorMetrics();
  const lines: string[] = [];
  const capture = pino({ level: 'debug' }, { write: (s: string) => { lines.push(s); } });
  const w = wrapConnector(inner, { timeoutMs: 1000, log: capture, metrics });
  assert.ok(isExtensionHost(w) && isNativePasswordSetter(w) && isObjectSource(w));
  const { connection, release } = await w.connect();
  assert.equal(connection.kind, 'records');
  await release();
  assert.equal(releases, 1);
  const secret = Secret.adopt(testPassword('wrap'));
  await w.setPassword(OBJECTS[0]!, secret, { log } as unknown as OperationContext);
  secret.dispose();
  assert.equal(sets, 1);
  const ids: string[] = [];
  for await (const o of w.list()) ids.push(o.id);
  assert.deepEqual(ids, ['a', 'b']);

  const ops = metrics.snapshot().map((s) => `${s.connector}/${s.operation}/${s.outcome}/${s.count}`).sort();
  assert.deepEqual(ops, ['all/connect/ok/1', 'all/list/ok/1', 'all/release/ok/1', 'all/setPassword/ok/1']);
  const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(logged.some((l) => l.connector === 'all' && l.operation === 'setPassword' && typeof l.ms === 'number'), 'a debug line per call, bound to the connector');
  assert.ok(!lines.join('\n').includes('Zé€-pw-'), 'the password is in no log line');
});

test('wrap: an error in the middle of a listing is typed and counted', async () => {
  const broken: Connector & ObjectSource = {
    ...base('broken'), ...source(),
    async *list() { yield OBJECTS[0]!; throw new Error('EIO'); },
  };
  const w = wrapConnector(broken, { timeoutMs: 1000, log });
  assert.ok(isObjectSource(w));
  const seen: string[] = [];
  await assert.rejects((async () => { for await (const o of w.list()) seen.push(o.id); })(), (e: unknown) => e instanceof TargetUnavailableError && /list failed: EIO/.test(e.message));
  assert.deepEqual(seen, ['a']);
  assert.deepEqual(w.metrics.snapshot().map((s) => [s.operation, s.outcome]), [['list', 'retryable']]);
});
