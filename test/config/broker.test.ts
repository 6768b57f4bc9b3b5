import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { natsBrokerOptions } from '../../config/broker.ts';
import { loadHubConfig } from '../../config/load.ts';
import { HUB_HEAD, csvConnector, expectIssue, issuesOf, tempDir, write } from './helpers.ts';

/** The `broker:` section: absent is the embedded broker; kind: nats needs servers, TLS off loopback, a password for a user. */
const { dir, cleanup } = tempDir();
after(cleanup);

// HUB_HEAD and one connector are 18 lines: `broker:` is line 19.
const HEAD = HUB_HEAD + csvConnector('hr');

test('no broker section: the embedded broker, as before', async () => {
  const config = await loadHubConfig(write(dir, 'plain.yaml', HEAD), { checkFiles: false });
  assert.equal(config.broker.kind, 'sqlite');
  assert.throws(() => natsBrokerOptions(config), /broker is sqlite, not nats/);
});

test('a NATS broker section loads, with defaults, into the NATS options', async () => {
  write(dir, 'nats-ca.pem', 'not read until connect\n', 0o644);
  write(dir, 'nats.password', 'random-service-secret\n');
  const file = write(dir, 'nats.yaml', `${HEAD}broker:
  kind: nats
  servers: [tls://nats1.corp.example.com:4222, tls://nats2.corp.example.com:4222]
  tls:
    ca: nats-ca.pem
  user: hub
  credentials: {fromFile: nats.password}
`);
  const config = await loadHubConfig(file, { checkFiles: false });
  assert.deepEqual({ ...config.broker, tls: undefined, credentials: undefined }, {
    kind: 'nats', servers: ['tls://nats1.corp.example.com:4222', 'tls://nats2.corp.example.com:4222'], user: 'hub',
    replicas: 3, prefix: 'pwsync', retention: 7 * 24 * 3600_000, timeout: 5000, tls: undefined, credentials: undefined,
  });
  const o = natsBrokerOptions(config);
  assert.equal(o.tls?.ca, 'not read until connect\n');
  assert.equal(o.password?.use((b) => b.toString()), 'random-service-secret');
  assert.equal(o.replicas, 3);
});

test('kind: nats without servers names what to add', async () => {
  const r = await issuesOf(dir, `${HEAD}broker:\n  kind: nats\n`);
  expectIssue(r, { line: 20, column: 9, path: 'broker.kind', message: /broker\.servers is not set/, fix: /servers: \[tls:\/\/nats1/ });
});

test('a malformed NATS broker section: every mistake at its line', async () => {
  const r = await issuesOf(dir, `${HEAD}broker:
  kind: nats
  servers: [tls://nats1:4222, nats://nats2.corp.example.com:4222, http://nats3:80]
  user: hub
  replicas: 7
  credentials: hunter2
`);
  expectIssue(r, { line: 21, column: 13, path: 'broker.servers[0]', message: /broker\.tls\.ca is not set/, fix: /tls: \{ca: PATH\}/ });
  expectIssue(r, { line: 21, column: 31, path: 'broker.servers[1]', message: /without TLS/, fix: /tls:\/\/nats2\.corp\.example\.com:4222/ });
  expectIssue(r, { line: 21, column: 67, path: 'broker.servers[2]', message: /`http:\/\/nats3:80` is not a valid/, fix: /NATS server URL such as `tls:\/\/nats1/ });
  expectIssue(r, { line: 23, column: 13, path: 'broker.replicas', message: /7/, fix: /1 to 5/ });
  expectIssue(r, { line: 24, column: 16, path: 'broker.credentials', message: /secret|inline|written/i, fix: /fromFile/ });
});

test('NATS settings under the embedded broker, plain NATS to another host, a user without a password', async () => {
  const sqlite = await issuesOf(dir, `${HEAD}broker:\n  servers: [tls://nats1:4222]\n`);
  expectIssue(sqlite, { line: 20, column: 3, path: 'broker.servers', message: /broker\.kind is sqlite/, fix: /kind: nats/ });

  const plain = await issuesOf(dir, `${HEAD}broker:\n  kind: nats\n  servers: [nats://nats1.corp.example.com:4222]\n  user: hub\n`);
  expectIssue(plain, { line: 21, column: 13, path: 'broker.servers[0]', message: /without TLS/, fix: /tls:\/\/nats1\.corp\.example\.com:4222/ });
  expectIssue(plain, { line: 22, column: 9, path: 'broker.user', message: /without broker\.credentials/, fix: /credentials: \{fromFile/ });

  const noCa = await issuesOf(dir, `${HEAD}broker:\n  kind: nats\n  servers: [tls://nats1:4222]\n`);
  expectIssue(noCa, { line: 21, column: 13, path: 'broker.servers[0]', message: /broker\.tls\.ca is not set/, fix: /tls: \{ca: PATH\}/ });
});
