import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { DOMAIN, Lab, REPO, spawnPwsync, until, type LabKerberos } from '../../cli/lab.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { Secret } from '../../core/secret.ts';
import { verifyPassword } from '../../extensions/examples/scrypt-hash/verify.ts';
import { storedHash } from '../../cli/demo.ts';
import { queryStatus } from '../../hub/admin.ts';
import type { OperationStatus } from '../../hub/records.ts';
import { HubState } from '../../hub/state.ts';
import { sendHookChange } from '../../notifier/hook-client.ts';
import { configureKerberosProcess, createHubServer, loadKerberos, tlsOnlyServer, type HubServer } from '../../proto/channel.ts';
import { testDir } from '../lib/dirs.ts';
import { startDirectory, type TestDirectory } from '../lib/directory.ts';
import { kerberosLinkedToLibkrb5, startKdc, type TestKdc } from '../lib/kdc.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * Kerberos between a notifier and a hub running as separate processes, over gRPC and TLS, against
 * a private MIT KDC. A round trip, then the faults: each is refused with a message that says what
 * to fix, and each change stays queued at the notifier and arrives exactly once after the fix.
 */
const ACCOUNTS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory'];
const LIBFAKETIME = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/faketime/libfaketime.so.1'];

let root: string;
let kdc: TestKdc;
let directory: TestDirectory;
let lab: Lab;
let good: LabKerberos;
let broker: ReturnType<typeof openSqliteBroker>;
let state: HubState;
let shortCcache: string;
let shortUntil: number;
const passwords = new Map<string, Buffer>();

function ops(sam: string): Promise<OperationStatus[]> {
  return queryStatus(state, { account: { samAccountName: sam }, connector: 'csv' }).then((r) => r.operations);
}

async function hook(sam: string): Promise<void> {
  const pw = testPassword(`krb-${sam}`);
  passwords.set(sam, pw);
  await sendHookChange(lab.hookSocket, { domain: DOMAIN, samAccountName: sam }, Secret.adopt(Buffer.from(pw)), 10_000);
}

/** Log lines of a service written after `from` (a byte offset), as JSON. */
function logLines(file: string, from: number): Array<Record<string, unknown>> {
  if (!existsSync(file)) return [];
  return readFileSync(file).subarray(from).toString('utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

const sizeOf = (file: string): number => (existsSync(file) ? statSync(file).size : 0);

/** Waits for a log line of `eventId` after `from` whose `field` matches; returns that text. */
async function logged(file: string, from: number, eventId: number, field: string, pattern: RegExp): Promise<string> {
  return until(`event ${eventId} matching ${pattern} in ${path.basename(file)}`, 20_000, () => {
    const hit = logLines(file, from).find((l) => l['eventId'] === eventId && pattern.test(String(l[field])));
    return hit ? String(hit[field]) : undefined;
  });
}

/** The change for `sam` reached the target exactly once, with its password. */
async function arrivedOnce(sam: string): Promise<void> {
  const [op, ...more] = await until(`${sam}'s change applied`, 30_000, async () => {
    const o = await ops(sam);
    return o.length > 0 && o.every((x) => x.state === 'successful') ? o : undefined;
  });
  assert.equal(more.length, 0, `${sam}: one operation, not ${more.length + 1}`);
  assert.equal(op!.attempts, 1);
  assert.equal(await verifyPassword((await storedHash(lab.hubConfig, 'csv', sam))!, passwords.get(sam)!), true, `${sam}'s password is in the target`);
}

async function notArrived(sam: string): Promise<void> {
  assert.deepEqual(await ops(sam), [], `${sam}'s change must not be at the hub yet`);
}

/** Restarts the notifier with `kerberos` changed as given. */
async function notifierWith(change: (k: LabKerberos) => LabKerberos): Promise<number> {
  await lab.stop(lab.notifier);
  lab.options.kerberos = change(structuredClone(good));
  await lab.rewriteConfig();
  const from = sizeOf(lab.notifierLog);
  await lab.startNotifier();
  return from;
}

async function hubWith(change: (k: LabKerberos) => LabKerberos, env?: Record<string, string>): Promise<number> {
  await lab.stop(lab.hub);
  lab.options.kerberos = change(structuredClone(good));
  await lab.rewriteConfig();
  const from = sizeOf(lab.hubLog);
  await lab.startHub(30_000, env);
  return from;
}

function fakeClock(offset: string): Record<string, string> {
  const lib = LIBFAKETIME.find((f) => existsSync(f));
  assert.ok(lib, `libfaketime is not installed (${LIBFAKETIME.join(', ')}): apt-get install -y faketime`);
  return { LD_PRELOAD: lib, FAKETIME: offset, FAKETIME_DONT_FAKE_MONOTONIC: '1' };
}

before(async () => {
  root = testDir('krb-e2e');
  kdc = startKdc(path.join(root, 'kdc'));
  // The hub's DC check and SPN lookup: DC1$ is a writable DC of the lab's domain there.
  directory = startDirectory(path.join(root, 'directory'));
  // A 10-second TGT, left to expire while the first cases run.
  shortCcache = `FILE:${path.join(root, 'short.ccache')}`;
  execFileSync('kinit', ['-l', '10s', '-k', '-t', kdc.dcKeytab, '-c', shortCcache, kdc.dcPrincipal], { env: kdc.env(), stdio: 'pipe', timeout: 10_000 });
  shortUntil = Date.now() + 12_000;
  const hubKeytab = path.join(root, 'hub.keytab');
  copyFileSync(kdc.hubKeytab, hubKeytab);
  good = {
    hub: { keytab: hubKeytab, service: kdc.hubService, replayCache: path.join(root, 'rcache', 'hub.rcache2'), krb5Config: kdc.krb5Config },
    notifier: { keytab: kdc.dcKeytab, krb5Config: kdc.krb5Config },
    service: kdc.hubService,
    realm: kdc.realm,
  };
  lab = await Lab.create({
    root: path.join(root, 'lab'),
    logLevel: 'debug',
    kerberos: structuredClone(good),
    directory: { url: directory.url, ca: directory.ca, serverName: directory.serverName, bindDn: directory.bindDn, passwordFile: directory.passwordFile },
    connectors: [{
      name: 'csv', kind: 'delimited', file: 'people.csv',
      content: `id,login,pwdHash\n${ACCOUNTS.map((a, i) => `${i + 1},${a},`).join('\n')}\n`,
      join: [{ target: 'login', source: 'sAMAccountName' }],
    }],
  });
  await lab.startHub();
  await lab.startNotifier();
  broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
  state = await HubState.open(broker);
});

after(async () => {
  await broker?.close();
  await lab?.stopAll();
  directory?.stop();
  kdc?.stop();
});

test('round trip: the hub learns the DC\'s principal, the notifier verifies the hub', async () => {
  await hook('alice');
  await arrivedOnce('alice');
  const auth = logLines(lab.hubLog, 0).find((l) => l['msg'] === 'caller authenticated by Kerberos');
  assert.equal(auth?.['principal'], kdc.dcPrincipal);
  assert.ok(logLines(lab.hubLog, 0).some((l) => l['msg'] === 'notifiers are authenticated by Kerberos'));
  assert.ok(!logLines(lab.hubLog, 0).some((l) => l['eventId'] === 6952 || l['eventId'] === 6960), 'no TLS-only warning, no set-up problem');
});

test('notifier-side faults are refused with their fix; the changes stay queued and arrive once fixed', async () => {
  // No token: this notifier's target has no kerberos.service.
  let from = await notifierWith((k) => ({ ...k, service: undefined }));
  const hubFrom = sizeOf(lab.hubLog);
  await hook('bob');
  const noToken = await logged(lab.notifierLog, from, 6943, 'error', /this hub requires Kerberos/);
  assert.match(noToken, /set targets\[\]\.kerberos\.service: PWSYNC@hub\.pwsync\.test/);
  await logged(lab.hubLog, hubFrom, 6954, 'reason', /sent no Kerberos token for PWSYNC\/hub\.pwsync\.test/);

  // A ticket for another SPN than the hub's.
  from = await notifierWith((k) => ({ ...k, service: kdc.otherService }));
  await hook('carol');
  const other = await logged(lab.notifierLog, from, 6943, 'error', /presented a ticket for PWSYNC\/other\.pwsync\.test@PWSYNC\.TEST, but this hub is PWSYNC\/hub\.pwsync\.test/);
  assert.match(other, /set targets\[\]\.kerberos\.service: PWSYNC@hub\.pwsync\.test/);

  // An SPN the KDC does not know: missing, or (in AD) on two accounts.
  from = await notifierWith((k) => ({ ...k, service: 'PWSYNC@nope.pwsync.test' }));
  await hook('dave');
  const unknown = await logged(lab.notifierLog, from, 6943, 'error', /knows no account with the SPN PWSYNC\/nope\.pwsync\.test/);
  assert.match(unknown, /DC1\$@PWSYNC\.TEST cannot get a ticket/);
  assert.match(unknown, /samba-tool spn add PWSYNC\/nope\.pwsync\.test/);
  assert.match(unknown, /setspn -X/);

  // A user's principal instead of a DC's machine account: authenticated, but not allowed to report.
  from = await notifierWith((k) => ({ ...k, notifier: { keytab: kdc.userKeytab, krb5Config: kdc.krb5Config } }));
  await hook('judy');
  const user = await logged(lab.notifierLog, from, 6943, 'error', /alice@PWSYNC\.TEST is not a machine account/);
  assert.match(user, /refused this notifier/);

  // An expired ticket: a credential cache from `kinit -l 10s`, no keytab to renew from.
  const wait = shortUntil - Date.now();
  if (wait > 0) await sleep(wait);
  from = await notifierWith((k) => ({ ...k, notifier: { ccache: shortCcache, krb5Config: kdc.krb5Config } }));
  await hook('erin');
  const expired = await logged(lab.notifierLog, from, 6943, 'error', /holds only expired tickets/);
  assert.match(expired, /notifier\.kerberos\.ccache FILE:.*short\.ccache: renew them \(kinit\), or set notifier\.kerberos\.keytab/);

  // The notifier's keytab is missing: it does not start, and says which setting.
  await lab.stop(lab.notifier);
  lab.options.kerberos = { ...structuredClone(good), notifier: { keytab: path.join(root, 'missing.keytab'), krb5Config: kdc.krb5Config } };
  await lab.rewriteConfig();
  const refused = spawnPwsync(['notifier', '--config', lab.notifierConfig]);
  assert.notEqual(await refused.exited, 0);
  assert.match(refused.stderr(), /notifier\.kerberos\.keytab/);
  assert.match(refused.stderr(), /missing\.keytab does not exist/);

  for (const sam of ['bob', 'carol', 'dave', 'judy', 'erin']) await notArrived(sam);
  await notifierWith((k) => k);
  for (const sam of ['bob', 'carol', 'dave', 'judy', 'erin']) await arrivedOnce(sam);
});

test('hub-side faults are refused with their fix; the changes stay queued and arrive once fixed', async () => {
  const linked = kerberosLinkedToLibkrb5(REPO);
  assert.ok(linked.ok, linked.why);

  // The hub's clock 10 minutes ahead.
  let nFrom = sizeOf(lab.notifierLog);
  let from = await hubWith((k) => k, fakeClock('+10m'));
  await hook('frank');
  const ahead = await logged(lab.notifierLog, nFrom, 6943, 'error', /clock skew/);
  assert.match(ahead, /the notifier's clock is (59\d|60\d) s behind the hub's \(hub time /);
  assert.match(ahead, /Kerberos allows 300 s/);
  await logged(lab.hubLog, from, 6954, 'reason', /clock skew/);

  // The hub's clock 10 minutes behind: the tickets are not valid yet.
  nFrom = sizeOf(lab.notifierLog);
  from = await hubWith((k) => k, fakeClock('-10m'));
  await hook('grace');
  const behind = await logged(lab.notifierLog, nFrom, 6943, 'error', /not valid yet by the hub's clock/);
  assert.match(behind, /the notifier's clock is (59\d|60\d) s ahead of the hub's/);
  await logged(lab.hubLog, from, 6954, 'reason', /not valid yet/);

  // The wrong keytab: the hub says so at start (6960), and refuses every caller.
  const wrong = path.join(root, 'wrong.keytab');
  copyFileSync(kdc.otherKeytab, wrong);
  nFrom = sizeOf(lab.notifierLog);
  from = await hubWith((k) => ({ ...k, hub: { ...k.hub!, keytab: wrong } }));
  const setup = await logged(lab.hubLog, from, 6960, 'problem', /has no key for PWSYNC\/hub\.pwsync\.test/);
  assert.match(setup, /it holds PWSYNC\/other\.pwsync\.test@PWSYNC\.TEST/);
  await hook('heidi');
  const noKey = await logged(lab.notifierLog, nFrom, 6943, 'error', /has no key for PWSYNC\/hub\.pwsync\.test/);
  assert.match(noKey, /samba-tool domain exportkeytab .*wrong\.keytab --principal=PWSYNC\/hub\.pwsync\.test/);

  // The hub's keytab missing: the hub does not start and names the setting.
  await lab.stop(lab.hub);
  lab.options.kerberos = { ...structuredClone(good), hub: { ...good.hub!, keytab: path.join(root, 'gone.keytab') } };
  await lab.rewriteConfig();
  const down = spawnPwsync(['hub', '--config', lab.hubConfig]);
  assert.notEqual(await down.exited, 0);
  assert.match(down.stderr(), /hub\.kerberos\.keytab/);
  assert.match(down.stderr(), /gone\.keytab does not exist/);

  // An impostor holding the hub's TLS key but not its Kerberos key: its acknowledgements do not count.
  const impostorGot: string[] = [];
  const impostor: HubServer = await createHubServer({
    listen: `127.0.0.1:${lab.hubPort}`, tlsCert: readFileSync(path.join(lab.root, 'tls', 'hub.crt')), tlsKey: readFileSync(path.join(lab.root, 'tls', 'hub.key')),
    maxMessageBytes: 1 << 20, auth: tlsOnlyServer(), hubId: 'impostor',
    submit: async (req) => {
      for (const c of req.changes) impostorGot.push(`${c.account?.samAccountName}:${c.changeId.toString('hex')}`);
      return req.changes.map((c) => ({ changeId: c.changeId, status: 'ACCEPTED_DURABLE' }));
    },
  });
  try {
    nFrom = sizeOf(lab.notifierLog);
    await hook('ivan');
    const fake = await logged(lab.notifierLog, nFrom, 6943, 'error', /did not prove the hub's identity/);
    assert.match(fake, /no Kerberos reply token \(AP-REP\) for PWSYNC\/hub\.pwsync\.test came back/);
    assert.match(fake, /nothing in the batch is taken as delivered/);
    // Kept queued: the same change is offered again after the impostor "acknowledged" it.
    await until('ivan\'s change sent to the impostor twice', 20_000, () => {
      const ivan = impostorGot.filter((x) => x.startsWith('ivan:'));
      return ivan.length >= 2 && new Set(ivan).size === 1 ? true : undefined;
    });
  } finally {
    await impostor.close(1000);
  }

  for (const sam of ['frank', 'grace', 'heidi', 'ivan']) await notArrived(sam);
  await hubWith((k) => k);
  for (const sam of ['frank', 'grace', 'heidi', 'ivan']) await arrivedOnce(sam);
});

test('a garbage token and a replayed token sent to the hub process are refused and logged without the token', async () => {
  configureKerberosProcess({ krb5Config: kdc.krb5Config, clientKeytab: kdc.dcKeytab });
  const k = await loadKerberos();
  const c = await k.initializeClient(kdc.hubService, { mechOID: k.GSS_MECH_OID_KRB5, flags: k.GSS_C_MUTUAL_FLAG | k.GSS_C_SEQUENCE_FLAG });
  const token = (await c.step(''))!;
  const raw = new grpc.Client(`127.0.0.1:${lab.hubPort}`, grpc.credentials.createSsl(readFileSync(path.join(lab.root, 'tls', 'ca.pem'))));
  const ping = (auth: string): Promise<grpc.ServiceError | null> => new Promise((resolve) => {
    const md = new grpc.Metadata();
    md.set('authorization', auth);
    raw.makeUnaryRequest('/pwsync.v1.Admin/Ping', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), md, { deadline: Date.now() + 5000 }, (err) => resolve(err));
  });
  try {
    const from = sizeOf(lab.hubLog);
    const garbage = await ping(`Negotiate ${Buffer.from('garbage garbage garbage garbage').toString('base64')}`);
    assert.equal(garbage?.code, grpc.status.UNAUTHENTICATED);
    assert.match(garbage!.details, /not a valid Kerberos AP-REQ for PWSYNC\/hub\.pwsync\.test/);
    assert.equal(await ping(`Negotiate ${token}`), null, 'the first use of the token is accepted');
    const replay = await ping(`Negotiate ${token}`);
    assert.equal(replay?.code, grpc.status.UNAUTHENTICATED);
    assert.match(replay!.details, /already seen \(a replay\)/);
    await logged(lab.hubLog, from, 6954, 'reason', /a replay/);
    assert.ok(!readFileSync(lab.hubLog, 'utf8').includes(token.slice(20, 80)), 'the token is not in the hub log');
  } finally {
    raw.close();
  }
  // Nothing was lost on the way: every change hooked in this file arrived exactly once.
  for (const sam of passwords.keys()) await arrivedOnce(sam);
});
