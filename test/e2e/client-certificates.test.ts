import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { storedHash } from '../../cli/demo.ts';
import { DOMAIN, Lab, spawnPwsync, until } from '../../cli/lab.ts';
import { UNAUTHENTICATED_CALLERS } from '../../config/schema.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { Secret } from '../../core/secret.ts';
import { generateTlsMaterial, issueClientCertificate } from '../../core/tls-gen.ts';
import { verifyPassword } from '../../extensions/examples/scrypt-hash/verify.ts';
import { queryStatus } from '../../hub/admin.ts';
import type { OperationStatus } from '../../hub/records.ts';
import { HubState } from '../../hub/state.ts';
import { sendHookChange } from '../../notifier/hook-client.ts';
import { startDirectory, type TestDirectory } from '../lib/directory.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * TLS client certificates between a notifier and a hub running as separate processes, with the
 * hub's DC check against a directory (test/env/slapd-dc.sh: dc1.corp.example.com is a writable
 * DC, ws1.corp.example.com a workstation). A certificate from the hub's client CA naming a DC is
 * heard; one from another CA, none, an expired one, and one naming a host that is no DC are each
 * refused with their fix, and each change stays queued at the notifier and arrives exactly once
 * after the fix. First, the same lab without client certificates: on loopback the hub hears
 * anyone and says so (6952); beyond loopback it does not start unless its YAML says the words.
 */
const ACCOUNTS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank'];
const DAY = 86_400_000;

let root: string;
let directory: TestDirectory;
let lab: Lab;
let broker: ReturnType<typeof openSqliteBroker> | undefined;
let state: HubState;
const passwords = new Map<string, Buffer>();

/** A certificate for `dc` from the lab's CA (or another material's), written under root/certs/NAME. */
async function certificate(name: string, dc: string, opts: { from?: { caCertPem: string; caKeyPem: string }; validity?: { from: Date; to: Date } } = {}): Promise<{ cert: string; key: string }> {
  const ca = opts.from ?? { caCertPem: readFileSync(path.join(lab.root, 'tls', 'ca.pem'), 'utf8'), caKeyPem: readFileSync(path.join(lab.root, 'tls', 'ca.key'), 'utf8') };
  const issued = await issueClientCertificate({ ...ca, dc, ...(opts.validity ? { validity: opts.validity } : {}) });
  const cert = path.join(root, 'certs', `${name}.crt`);
  const key = path.join(root, 'certs', `${name}.key`);
  writeFileSync(cert, issued.certPem);
  writeFileSync(key, issued.keyPem, { mode: 0o600 });
  return { cert, key };
}

function ops(sam: string): Promise<OperationStatus[]> {
  return queryStatus(state, { account: { samAccountName: sam }, connector: 'csv' }).then((r) => r.operations);
}

async function hook(sam: string): Promise<void> {
  const pw = testPassword(`cert-${sam}`);
  passwords.set(sam, pw);
  await sendHookChange(lab.hookSocket, { domain: DOMAIN, samAccountName: sam }, Secret.adopt(Buffer.from(pw)), 10_000);
}

function logLines(file: string, from: number): Array<Record<string, unknown>> {
  if (!existsSync(file)) return [];
  return readFileSync(file).subarray(from).toString('utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

const sizeOf = (file: string): number => (existsSync(file) ? statSync(file).size : 0);

async function logged(file: string, from: number, eventId: number, field: string, pattern: RegExp): Promise<string> {
  return until(`event ${eventId} matching ${pattern} in ${path.basename(file)}`, 20_000, () => {
    const hit = logLines(file, from).find((l) => l['eventId'] === eventId && pattern.test(String(l[field])));
    return hit ? String(hit[field]) : undefined;
  });
}

async function arrivedOnce(sam: string): Promise<void> {
  const [op, ...more] = await until(`${sam}'s change applied`, 30_000, async () => {
    const o = await ops(sam);
    return o.length > 0 && o.every((x) => x.state === 'successful') ? o : undefined;
  });
  assert.equal(more.length, 0, `${sam}: one operation, not ${more.length + 1}`);
  assert.equal(await verifyPassword((await storedHash(lab.hubConfig, 'csv', sam))!, passwords.get(sam)!), true, `${sam}'s password is in the target`);
  assert.ok(op);
}

/** Restarts the notifier with this client certificate (or none); returns where its log goes on. */
async function notifierWith(own: { cert: string; key: string } | undefined): Promise<number> {
  await lab.stop(lab.notifier);
  lab.options.clientCertificates = { clientCa: path.join(lab.root, 'tls', 'ca.pem'), ...own };
  await lab.rewriteConfig();
  const from = sizeOf(lab.notifierLog);
  await lab.startNotifier();
  return from;
}

before(async () => {
  root = testDir('client-certs');
  directory = startDirectory(path.join(root, 'directory'));
  lab = await Lab.create({
    root: path.join(root, 'lab'),
    logLevel: 'debug',
    directory: { url: directory.url, ca: directory.ca, serverName: directory.serverName, bindDn: directory.bindDn, passwordFile: directory.passwordFile },
    connectors: [{
      name: 'csv', kind: 'delimited', file: 'people.csv',
      content: `id,login,pwdHash\n${ACCOUNTS.map((a, i) => `${i + 1},${a},`).join('\n')}\n`,
      join: [{ target: 'login', source: 'sAMAccountName' }],
    }],
  });
  mkdirSync(path.join(root, 'certs'), { mode: 0o700 });
});

after(async () => {
  await broker?.close();
  await lab?.stopAll();
  directory?.stop();
});

test('without caller authentication: on loopback the hub starts and warns (6952); beyond loopback it refuses to start unless the YAML says the words', async () => {
  await lab.startHub();
  await until('event 6952 at start', 20_000, () => logLines(lab.hubLog, 0).find((l) => l['eventId'] === 6952));
  const warning = logLines(lab.hubLog, 0).find((l) => l['eventId'] === 6952)!;
  assert.equal(warning['allowedBy'], 'loopback');
  assert.match(String(warning['fix']), /hub\.tls\.clientCa/);
  await lab.stop(lab.hub);

  // The same YAML listening on every address: refused before anything is opened or bound.
  const wide = path.join(lab.root, 'wide.yaml');
  const doc = parse(readFileSync(lab.hubConfig, 'utf8')) as { hub: Record<string, unknown> };
  doc.hub['listen'] = '0.0.0.0:0';
  writeFileSync(wide, stringify(doc));
  const refused = spawnPwsync(['hub', '--config', wide]);
  assert.notEqual(await refused.exited, 0);
  assert.match(refused.stderr(), /hub\.listen: the hub listens on 0\.0\.0\.0:0, beyond loopback, and authenticates no caller/);
  assert.match(refused.stderr(), /hub\.tls\.clientCa .* or hub\.kerberos .*; or listen on 127\.0\.0\.1 only; or, knowingly, set hub\.unauthenticatedCallers: I-understand-anyone-who-reaches-this-port-can-set-passwords/);
  const check = spawnPwsync(['config', 'check', wide]);
  assert.equal(await check.exited, 1);
  assert.match(check.stderr(), /beyond loopback, and authenticates no caller/);

  doc.hub['unauthenticatedCallers'] = UNAUTHENTICATED_CALLERS;
  writeFileSync(wide, stringify(doc));
  const said = spawnPwsync(['config', 'check', wide]);
  assert.equal(await said.exited, 0, said.stderr());
  assert.match(said.stdout(), /ok \(hub: 1 connector/);
});

test('a certificate from the hub\'s client CA naming a DC: heard, and the caller is that DC', async () => {
  const dc1 = await certificate('dc1', 'dc1.corp.example.com');
  lab.options.clientCertificates = { clientCa: path.join(lab.root, 'tls', 'ca.pem'), ...dc1 };
  await lab.rewriteConfig();
  const hubFrom = sizeOf(lab.hubLog);
  await lab.startHub();
  await lab.startNotifier();
  broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
  state = await HubState.open(broker);
  await hook('alice');
  await arrivedOnce('alice');
  const lines = logLines(lab.hubLog, hubFrom);
  assert.ok(lines.some((l) => l['msg'] === 'notifiers are authenticated by TLS client certificates'));
  assert.ok(lines.some((l) => l['msg'] === 'caller authenticated by its client certificate' && l['principal'] === 'dc1.corp.example.com'));
  assert.ok(!lines.some((l) => l['eventId'] === 6952), 'no warning: every caller is authenticated');
  assert.ok(!lines.some((l) => l['eventId'] === 6978), 'the client CA has years to run');
  const dcs = spawnPwsync(['status', '--config', lab.hubConfig, '--dcs']);
  assert.equal(await dcs.exited, 0, dcs.stderr());
  assert.match(dcs.stdout(), /corp\.example\.com\s+dc1\.corp\.example\.com\s+dc1\.corp\.example\.com/);
});

test('another CA\'s certificate, none, an expired one, a workstation\'s: each refused with its fix; the changes stay queued and arrive once fixed', async () => {
  const foreign = await generateTlsMaterial({ hosts: ['localhost'] });
  let from = await notifierWith(await certificate('foreign', 'dc1.corp.example.com', { from: foreign }));
  await hook('bob');
  await logged(lab.notifierLog, from, 6977, 'error', /refused this DC's client certificate \(targets\[\]\.tls\.cert: CN=dc1\.corp\.example\.com, issued by CN=pwsync CA .*\) in the TLS handshake: it must be issued by the CA the hub names in hub\.tls\.clientCa/);

  from = await notifierWith(undefined);
  await hook('carol');
  await logged(lab.notifierLog, from, 6977, 'error', /requires a TLS client certificate \(hub\.tls\.clientCa\) and this notifier sent none/);

  from = await notifierWith(await certificate('expired', 'dc1.corp.example.com', { validity: { from: new Date(Date.now() - 30 * DAY), to: new Date(Date.now() - DAY) } }));
  await hook('dave');
  await logged(lab.notifierLog, from, 6977, 'error', /it has expired; renew it with `pwsync tls client .*--force/);
  await logged(lab.notifierLog, from, 6978, 'setting', /^targets\[lab-hub\]\.tls\.cert$/);

  // A valid certificate from the right CA, for a host that is a computer of the domain but no DC.
  const hubFrom = sizeOf(lab.hubLog);
  from = await notifierWith(await certificate('ws1', 'ws1.corp.example.com'));
  await hook('erin');
  const notDc = await logged(lab.notifierLog, from, 6943, 'error', /refused this notifier: ws1\.corp\.example\.com is not a writable domain controller of corp\.example\.com/);
  assert.match(notDc, /is not in OU=Domain Controllers/);
  await logged(lab.hubLog, hubFrom, 6953, 'principal', /^ws1\.corp\.example\.com$/);

  for (const sam of ['bob', 'carol', 'dave', 'erin']) assert.deepEqual(await ops(sam), [], `${sam}'s change must not be at the hub`);
  await notifierWith(await certificate('dc1-again', 'dc1.corp.example.com'));
  for (const sam of ['bob', 'carol', 'dave', 'erin']) await arrivedOnce(sam);
});
