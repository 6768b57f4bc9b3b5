import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { loadHubConfig, loadNotifierConfig } from '../../config/load.ts';
import { isLoopbackListen } from '../../config/semantic.ts';
import { UNAUTHENTICATED_CALLERS, type HubConfig } from '../../config/schema.ts';
import { hubAuthenticator } from '../../hub/authentication.ts';
import { expectIssue, HUB_HEAD, issuesOf, NOTIFIER_HEAD, target, tempDir, write } from './helpers.ts';

/**
 * Who may call a hub: beyond loopback, a hub that authenticates no caller (no hub.kerberos, no
 * hub.tls.clientCa) is refused, naming the three ways out, unless its YAML says the words.
 */
const { dir, cleanup } = tempDir();
after(cleanup);

const listening = (listen: string, more = ''): string => HUB_HEAD.replace('  id: hub1\n', `  id: hub1\n  listen: '${listen}'\n${more}`) + '  []\n';
const hubYaml = (text: string): string => text.replace('connectors:\n  []\n', 'connectors: []\n');
const DIRECTORY = '    directory:\n      url: ldaps://dc1.corp.example.com\n      ca: ldap-ca.pem\n      bindDn: reader@corp.example.com\n      password: {fromFile: reader.secret}\n';

test('hub.listen beyond loopback without caller authentication is refused, naming the three ways out', async () => {
  for (const listen of ['0.0.0.0:7443', '[::]:7443', '10.1.2.3:7443', 'hub1.corp.example.com:7443']) {
    const found = await issuesOf(dir, hubYaml(listening(listen)));
    const issue = expectIssue(found, {
      line: 3, column: 11, path: 'hub.listen',
      message: new RegExp(`the hub listens on ${listen.replace(/[[\].]/g, '\\$&')}, beyond loopback, and authenticates no caller \\(no hub\\.kerberos, no hub\\.tls\\.clientCa\\): anyone who reaches the port`),
      fix: /set hub\.tls\.clientCa \(client certificates from `pwsync tls client --dc HOST`\) or hub\.kerberos .*; or listen on 127\.0\.0\.1 only; or, knowingly, set hub\.unauthenticatedCallers: I-understand-anyone-who-reaches-this-port-can-set-passwords/,
    });
    assert.ok(issue);
  }
});

test('the words let it load; loopback needs none; other words are not the words', async () => {
  const words = write(dir, 'words.yaml', hubYaml(listening('0.0.0.0:7443', `  unauthenticatedCallers: ${UNAUTHENTICATED_CALLERS}\n`)));
  assert.equal((await loadHubConfig(words, { checkFiles: false })).hub.unauthenticatedCallers, UNAUTHENTICATED_CALLERS);
  for (const listen of ['127.0.0.1:7443', '127.0.0.2:0', '[::1]:7443', 'localhost:7443']) {
    await loadHubConfig(write(dir, 'loop.yaml', hubYaml(listening(listen))), { checkFiles: false });
  }
  const other = await issuesOf(dir, hubYaml(listening('0.0.0.0:7443', '  unauthenticatedCallers: yes\n')));
  assert.ok(other.issues.some((i) => i.path === 'hub.unauthenticatedCallers'), other.message);
  assert.ok(other.issues.some((i) => i.path === 'hub.listen'), 'still refused for listening beyond loopback');
});

test('isLoopbackListen: 127.0.0.0/8, ::1 and localhost, nothing else', () => {
  for (const l of ['127.0.0.1:1', '127.255.0.9:2', '[::1]:3', '[0:0:0:0:0:0:0:1]:4', 'LOCALHOST:5']) assert.equal(isLoopbackListen(l), true, l);
  for (const l of ['0.0.0.0:1', '[::]:2', '128.0.0.1:3', 'localhost.evil.example:4', '[::2]:5', '10.127.0.1:6']) assert.equal(isLoopbackListen(l), false, l);
});

test('a client CA is caller authentication: it needs a directory per domain, and the words are then out of place', async () => {
  const ca = '  tls:\n    cert: tls.crt\n    key: tls.key\n    clientCa: clients-ca.pem\n';
  const withCa = (more = ''): string => hubYaml(listening('0.0.0.0:7443', more)).replace('  tls:\n    cert: tls.crt\n    key: tls.key\n', ca);
  const noDirectory = await issuesOf(dir, withCa());
  expectIssue(noDirectory, { line: 12, column: 5, path: 'domains[0]', message: /hub\.tls\.clientCa is set, but domain corp\.example\.com has no directory/, fix: /add directory:/ });
  assert.ok(!noDirectory.issues.some((i) => i.path === 'hub.listen'));
  const good = write(dir, 'ca.yaml', withCa().replace('  - name: corp.example.com\n', `  - name: corp.example.com\n${DIRECTORY}`));
  assert.match((await loadHubConfig(good, { checkFiles: false })).hub.tls.clientCa ?? '', /clients-ca\.pem$/);
  const both = await issuesOf(dir, withCa(`  unauthenticatedCallers: ${UNAUTHENTICATED_CALLERS}\n`).replace('  - name: corp.example.com\n', `  - name: corp.example.com\n${DIRECTORY}`));
  expectIssue(both, { line: 4, column: 3, path: 'hub.unauthenticatedCallers', message: /hub\.tls\.clientCa is set, so every caller is authenticated/, fix: /remove hub\.unauthenticatedCallers/ });
});

test('a target\'s client certificate needs its key, and both are checked as files (the key private)', async () => {
  const certOnly = target('hub1').replace('      ca: ca.crt\n', '      ca: ca.crt\n      cert: dc1.crt\n');
  const found = await issuesOf(dir, NOTIFIER_HEAD + certOnly, 'notifier');
  expectIssue(found, { line: 12, column: 7, path: 'targets[0].tls.cert', message: /targets\[\]\.tls\.cert is set without targets\[\]\.tls\.key/, fix: /`pwsync tls client --dc HOST` writes them/ });
  write(dir, 'ca.crt', 'x', 0o644);
  write(dir, 'hub1.pub', 'x', 0o644);
  write(dir, 'dc1.crt', 'x', 0o644);
  write(dir, 'dc1.key', 'x', 0o644);
  const both = NOTIFIER_HEAD + certOnly.replace('      cert: dc1.crt\n', '      cert: dc1.crt\n      key: dc1.key\n');
  const open = await issuesOf(dir, both, 'notifier', { checkFiles: true });
  expectIssue(open, { line: 13, column: 12, path: 'targets[0].tls.key', message: /dc1\.key is readable by group or others/, fix: /chmod 600/ });
  write(dir, 'dc1.key', 'x', 0o600);
  const config = await loadNotifierConfig(write(dir, 'n.yaml', both), { checkFiles: true });
  assert.match(config.targets[0]!.tls.key ?? '', /\/dc1\.key$/);
});

test('the hub refuses to start without caller authentication beyond loopback even if its YAML was not checked', async () => {
  const log = pino({ level: 'silent' });
  const hub = (over: Partial<HubConfig['hub']>): { hub: HubConfig['hub'] } => ({ hub: { listen: '0.0.0.0:7443', tls: { cert: 'c', key: 'k' }, ...over } as HubConfig['hub'] });
  await assert.rejects(hubAuthenticator(hub({}), log), /listens on 0\.0\.0\.0:7443 and authenticates no caller: set hub\.tls\.clientCa or hub\.kerberos, listen on 127\.0\.0\.1, or set hub\.unauthenticatedCallers/);
  const lines: Array<Record<string, unknown>> = [];
  const capture = pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s) as Record<string, unknown>); } });
  const auth = await hubAuthenticator(hub({ unauthenticatedCallers: UNAUTHENTICATED_CALLERS }), capture);
  assert.equal((await auth.authenticate(new grpc.Metadata(), 'peer')).mechanism, 'tls');
  assert.deepEqual(lines.filter((l) => l['eventId'] === 6952).map((l) => l['allowedBy']), ['hub.unauthenticatedCallers']);
  lines.length = 0;
  await hubAuthenticator(hub({ listen: '[::1]:7443' }), capture);
  assert.deepEqual(lines.filter((l) => l['eventId'] === 6952).map((l) => l['allowedBy']), ['loopback']);
});
