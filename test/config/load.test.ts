import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { configLocation, detectConfigKind, loadConfig, loadHubConfig, loadNotifierConfig, loadWorkerConfig } from '../../config/load.ts';
import { HUB_HEAD, NOTIFIER_HEAD, csvConnector, target, tempDir, write } from './helpers.ts';

const EXAMPLES = fileURLToPath(new URL('../../config/examples/', import.meta.url));
const { dir, cleanup } = tempDir();
after(cleanup);

test('the example hub configuration loads', async () => {
  const config = await loadHubConfig(path.join(EXAMPLES, 'hub.yaml'), { checkFiles: false });
  assert.deepEqual(config.domains.map((d) => d.name), ['corp.example.com']);
  assert.deepEqual(config.connectors.map((c) => c.kind), ['delimited', 'dsml']);
  const hr = config.connectors[0]!;
  assert.equal(hr.extension?.module, path.resolve(EXAMPLES, '../../extensions/examples/scrypt-hash/index.ts'));
  assert.deepEqual(hr.extension?.settings, { attribute: 'pwdHash', cost: 16384 });
  assert.equal(hr.retry.interval, 60_000);
  assert.ok(hr.join.length >= 1 && config.connectors[1]!.join.length >= 1);
});

test('the example notifier configuration loads', async () => {
  const config = await loadNotifierConfig(path.join(EXAMPLES, 'notifier.yaml'), { checkFiles: false });
  assert.equal(config.notifier.domain, 'corp.example.com');
  assert.equal(config.notifier.hook.mode, '0600');
  assert.equal(config.notifier.queue.maxAge, 72 * 3_600_000);
  assert.deepEqual(config.targets.map((t) => [t.name, t.enabled]), [['hub1', true], ['hub-dr', false]]);
});

test('the example connector worker configuration loads', async () => {
  const config = await loadWorkerConfig(path.join(EXAMPLES, 'worker.yaml'), { checkFiles: false });
  assert.equal(config.worker.id, 'dmz-worker-1');
  assert.equal(config.broker.kind, 'nats');
  assert.deepEqual(config.connectors.map((c) => [c.name, c.kind, c.timeout]), [['dmz-ldap', 'ldap', 30_000]]);
  assert.equal((config.connectors[0]!.connection as { pageSize: number }).pageSize, 500, 'connection defaults applied');
});

test('a worker file without NATS, or with a connector of kind remote, names what to fix', async () => {
  const file = write(dir, 'bad-worker.yaml', [
    'worker:', '  id: w', '  keys: [w.key]',
    'connectors:', '  - name: a', '    kind: remote', '    connection: { publicKey: a.pub }',
  ].join('\n'));
  await assert.rejects(loadWorkerConfig(file, { checkFiles: false }), (e: unknown) => {
    const m = (e as Error).message;
    assert.match(m, /connectors\[0\]\.kind: a worker runs the real connector, not kind remote/);
    assert.match(m, /a connector worker reaches hubs only through NATS, but broker\.kind is not nats/);
    return true;
  });
});

test('defaults are applied and durations compiled to milliseconds', async () => {
  const file = write(dir, 'minimal-hub.yaml', HUB_HEAD + csvConnector('hr'));
  const config = await loadHubConfig(file, { checkFiles: false });
  assert.equal(config.hub.listen, '127.0.0.1:7443');
  assert.equal(config.hub.log.level, 'info');
  assert.equal(config.hub.shutdownGrace, 10_000);
  assert.equal(config.hub.keepFailedFor, 72 * 3_600_000);
  assert.equal(config.hub.maxMessageBytes, 4 * 1024 * 1024);
  const c = config.connectors[0]!;
  assert.deepEqual(c.retry, { count: 10, interval: 60_000, failedWhenReachable: false, probeEvery: 60_000 });
  assert.equal(c.enabled, true);
  assert.equal(c.concurrency, 4);
  assert.equal(c.timeout, 30_000);
  assert.equal(c.join[0]!.ignoreCase, true);
  // The kind's own connection defaults are applied too.
  assert.deepEqual(c.connection, { path: path.join(dir, 'hr.csv'), encoding: 'utf8', delimiter: ',', quote: '"', anchor: 'id' });

  const nfile = write(dir, 'minimal-notifier.yaml', NOTIFIER_HEAD + target('hub1'));
  const n = await loadNotifierConfig(nfile, { checkFiles: false });
  assert.equal(n.notifier.hook.timeout, 5_000);
  assert.deepEqual(n.notifier.queue, { warnAge: 3_600_000, maxAge: 72 * 3_600_000 });
  assert.equal(n.targets[0]!.retryInterval, 60_000);
  assert.equal(n.targets[0]!.maxRetryInterval, 3_600_000);
});

test('paths are resolved against the YAML file\'s folder', async () => {
  const yaml = `${HUB_HEAD}${csvConnector('hr', 'sub/hr.csv')}    extension:\n      module: ./ext/index.ts\n  - name: b\n    kind: ldif\n    connection: {path: /abs/b.ldif}\n    join: [{target: uid, source: sAMAccountName}]\n    extension: {module: pwsync-ext-hash}\n`;
  const file = write(dir, 'nested/paths.yaml', yaml);
  const base = path.join(dir, 'nested');
  const config = await loadHubConfig(file, { checkFiles: false });
  assert.equal(config.sourceFile, file);
  assert.equal(config.baseDir, base);
  assert.equal(config.hub.tls.cert, path.join(base, 'tls.crt'));
  assert.equal(config.hub.tls.key, path.join(base, 'tls.key'));
  assert.deepEqual(config.hub.keys, [path.join(base, 'k1.pem')]);
  assert.equal(config.hub.dataDir, path.join(base, 'data'));
  assert.equal(config.connectors[0]!.connection['path'], path.join(base, 'sub/hr.csv'));
  assert.equal(config.connectors[0]!.extension?.module, path.join(base, 'ext/index.ts'));
  assert.equal(config.connectors[1]!.connection['path'], '/abs/b.ldif');
  assert.equal(config.connectors[1]!.extension?.module, 'pwsync-ext-hash', 'a package name stays a package name');

  const pipe = NOTIFIER_HEAD.replace('socket: hook.sock', 'socket: \'\\\\.\\pipe\\pwsync-hook\'') + target('hub1');
  const n = await loadNotifierConfig(write(dir, 'nested/pipe.yaml', pipe), { checkFiles: false });
  assert.equal(n.notifier.hook.socket, '\\\\.\\pipe\\pwsync-hook', 'a Windows pipe name is not a path');
  assert.equal(n.targets[0]!.tls.ca, path.join(base, 'ca.crt'));
  assert.equal(n.targets[0]!.publicKey, path.join(base, 'hub1.pub'));
  const u = await loadNotifierConfig(write(dir, 'nested/unix.yaml', NOTIFIER_HEAD + target('hub1')), { checkFiles: false });
  assert.equal(u.notifier.hook.socket, path.join(base, 'hook.sock'));
});

test('the result is deeply frozen', async () => {
  const config = await loadHubConfig(write(dir, 'frozen.yaml', HUB_HEAD + csvConnector('hr')), { checkFiles: false });
  for (const o of [config, config.hub, config.hub.tls, config.hub.keys, config.connectors, config.connectors[0]!, config.connectors[0]!.retry, config.connectors[0]!.join[0]!, config.connectors[0]!.connection]) {
    assert.ok(Object.isFrozen(o));
  }
  assert.throws(() => { (config.connectors[0]!.retry as { count: number }).count = 1; }, TypeError);
  assert.throws(() => { (config.hub.keys as string[]).push('x'); }, TypeError);
});

test('existing, private files pass checkFiles', async () => {
  const d = tempDir();
  try {
    write(d.dir, 'tls.crt', 'cert', 0o644);
    write(d.dir, 'tls.key', 'key', 0o600);
    write(d.dir, 'k1.pem', 'key', 0o600);
    const config = await loadHubConfig(write(d.dir, 'hub.yaml', HUB_HEAD + csvConnector('hr')), { checkFiles: true });
    assert.equal(config.hub.keys[0], path.join(d.dir, 'k1.pem'));
  } finally {
    d.cleanup();
  }
});

test('the kind of a file is told by its top-level key', async () => {
  const hub = write(dir, 'kind-hub.yaml', HUB_HEAD + csvConnector('hr'));
  const notifier = write(dir, 'kind-notifier.yaml', NOTIFIER_HEAD + target('hub1'));
  assert.equal(await detectConfigKind(hub), 'hub');
  assert.equal(await detectConfigKind(notifier), 'notifier');
  assert.equal((await loadConfig(notifier, { checkFiles: false })).kind, 'notifier');
  await assert.rejects(detectConfigKind(write(dir, 'kind-none.yaml', 'domains: []\n')), /1:1: \(top level\): none of `hub:`, `notifier:` or `worker:`/);
  await assert.rejects(detectConfigKind(path.join(dir, 'absent.yaml')), /cannot read configuration file .*absent\.yaml: no such file/);
});

test('configLocation names where a setting of a loaded configuration is written', async () => {
  const file = write(dir, 'where.yaml', HUB_HEAD + csvConnector('hr'));
  const config = await loadHubConfig(file, { checkFiles: false });
  assert.equal(configLocation(config, ['connectors', 0, 'join', 0, 'target']), `${file}:17:17: connectors[0].join[0].target`);
  // A defaulted setting is reported where its nearest written parent is.
  assert.equal(configLocation(config, ['connectors', 0, 'retry', 'count']), `${file}:12:5: connectors[0].retry.count`);
});

test('connectors may share settings through a YAML merge key', async () => {
  const yaml = `${HUB_HEAD}${csvConnector('hr')}    retry: &retry\n      count: 3\n      interval: 5m\n${csvConnector('payroll')}    retry:\n      <<: *retry\n      count: 7\n`;
  const config = await loadHubConfig(write(dir, 'merge.yaml', yaml), { checkFiles: false });
  assert.deepEqual(config.connectors.map((c) => c.retry), [{ count: 3, interval: 300_000, failedWhenReachable: false, probeEvery: 60_000 }, { count: 7, interval: 300_000, failedWhenReachable: false, probeEvery: 60_000 }]);
});
