import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DOMAIN, Lab, spawnPwsync, until } from '../../cli/lab.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { Secret } from '../../core/secret.ts';
import { queryStatus } from '../../hub/admin.ts';
import { SETTLED_STATES, type OperationStatus } from '../../hub/records.ts';
import { HubState } from '../../hub/state.ts';
import { sendHookChange } from '../../notifier/hook-client.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';
import { startSlapd, type Slapd } from './slapd.ts';

/**
 * The ldap connector end to end: `pwsync hook` → notifier → hub → join `uid = sAMAccountName` →
 * Password Modify with the ppolicy control → a private slapd (ppolicy: 16 bytes minimum, history
 * 5; TLS). Every landing is proven by a bind as the user over TLS, never by our own logs; what
 * reaches slapd is counted in slapd's own connection log.
 */
const CONNECTOR = 'openldap';
const NORIGHTS = 'openldap-norights';
const KILL_ACCOUNTS = 50;
const KILL_CHANGES = 500;
const killSam = (i: number): string => `user${String(i % KILL_ACCOUNTS).padStart(4, '0')}`;
// People beyond the kill run's: the single-purpose accounts below.
const POLICY = 'user0052';
const GONE = 'user0053';
const DENIED = 'user0054';

let slapd: Slapd;
let lab: Lab;
let broker: ReturnType<typeof openSqliteBroker>;
let state: HubState;

function ldapConnector(name: string, over: { url?: string; bindDn?: string; passwordFile?: string; filter?: string } = {}): Record<string, unknown> {
  const e = slapd.env;
  return {
    name, kind: 'ldap', enabled: true,
    connection: {
      url: over.url ?? e.SLAPD_LDAPS_URL, ca: e.SLAPD_CA, bindDn: over.bindDn ?? e.SLAPD_SERVICE_DN,
      password: { fromFile: over.passwordFile ?? e.SLAPD_SERVICE_PASSWORD_FILE }, baseDn: e.SLAPD_PEOPLE,
      ...(over.filter ? { filter: over.filter } : {}), timeout: '3s', poolSize: 2,
    },
    join: [{ target: 'uid', source: 'sAMAccountName' }],
    // Enough retries to outlast a slapd restart; a failure that is not retryable fails at once.
    retry: { count: 200, interval: '500ms' }, concurrency: 4, batchSize: 50, timeout: '15s',
  };
}

/** The `pwsync hook` CLI, as a DC's password filter calls it: the password on stdin. */
async function hook(sam: string, password: Buffer): Promise<void> {
  const p = spawnPwsync(['hook', '--socket', lab.hookSocket, '--domain', DOMAIN, '--sam', sam], { stdin: Buffer.concat([password, Buffer.from('\n')]) });
  assert.equal(await p.exited, 0, `pwsync hook failed: ${p.stderr()}`);
}

async function ops(sam: string, connector = CONNECTOR): Promise<OperationStatus[]> {
  return (await queryStatus(state, { account: { samAccountName: sam }, connector })).operations;
}

async function settled(sam: string, count: number, connector = CONNECTOR, timeoutMs = 60_000): Promise<OperationStatus[]> {
  return until(`${count} settled operation(s) for ${sam} on ${connector}`, timeoutMs, async () => {
    const o = await ops(sam, connector);
    return o.length >= count && o.every((x) => SETTLED_STATES.has(x.state)) ? o.sort((a, b) => a.changeTime - b.changeTime) : undefined;
  });
}

/** The hub log's lines for one operation with one event id. */
function logged(opId: string, eventId: number): string[] {
  return readFileSync(lab.hubLog, 'utf8').split('\n').filter((l) => l.includes(opId) && l.includes(`"eventId":${eventId}`));
}

/** Waits a few retry intervals, then checks the failed operations were not tried again. */
async function neverRetried(failed: OperationStatus[]): Promise<void> {
  await new Promise((r) => setTimeout(r, 2000));
  for (const f of failed) {
    const now = (await ops(f.account.samAccountName, f.connector)).find((o) => o.opId === f.opId)!;
    assert.equal(now.state, 'failed');
    assert.equal(now.attempts, 1, `${f.connector}/${f.account.samAccountName}: attempted once`);
    assert.equal(logged(f.opId, f.eventId!).length, 1, `event ${f.eventId} logged once for ${f.opId}`);
  }
}

before(async () => {
  slapd = await startSlapd(testDir('ldap-e2e-slapd'), 60);
  lab = await Lab.create({
    root: testDir('ldap-e2e'), connectors: [],
    hubConnectors: [
      // Every person but DENIED: a password already in place would make the refused set below a success (verifyBind).
      ldapConnector(CONNECTOR, { filter: `(&(objectClass=inetOrgPerson)(!(uid=${DENIED})))` }),
      // Only DENIED's entry, through a service account that may read but not write passwords.
      ldapConnector(NORIGHTS, { bindDn: slapd.env.SLAPD_NORIGHTS_DN, passwordFile: slapd.env.SLAPD_NORIGHTS_PASSWORD_FILE, filter: `(&(objectClass=inetOrgPerson)(uid=${DENIED}))` }),
    ],
  });
  await lab.startHub();
  await lab.startNotifier();
  broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
  state = await HubState.open(broker);
});

after(async () => {
  await broker?.close();
  await lab?.stopAll();
  await slapd?.stop();
});

test('pwsync hook → slapd: each password binds as the user over TLS, the previous one no longer does', async () => {
  const pad127 = (label: string): string => label + 'x'.repeat(127 - [...testPassword(label).toString('utf8')].length);
  const labels: Record<string, string> = {
    alice: 'e2e-é-accent', bob: 'e2e-ß-eszett', carol: 'e2e-€-euro', dave: 'e2e-日本-kanji',
    erin: 'e2e-"quoted"-pass', user0050: 'e2e-back\\slash\\', user0051: pad127('e2e-127-'),
  };
  assert.equal([...testPassword(labels.user0051!).toString('utf8')].length, 127);
  const people = Object.keys(labels);
  await Promise.all(people.map((sam) => hook(sam, testPassword(`e2e-old-${sam}`))));
  for (const sam of people) assert.equal((await settled(sam, 1))[0]!.state, 'successful', sam);
  await Promise.all(people.map((sam) => hook(sam, testPassword(labels[sam]!))));
  for (const sam of people) {
    const [, op] = await settled(sam, 2);
    assert.equal(op!.state, 'successful', `${sam}: ${op!.reason}`);
    assert.equal(op!.attempts, 1);
    assert.equal(await slapd.bindsAs(sam, testPassword(labels[sam]!)), true, `${sam} binds with the new password`);
    assert.equal(await slapd.bindsAs(sam, testPassword(`e2e-old-${sam}`)), false, `${sam}: the old password is refused (49)`);
  }
  assert.equal(await slapd.bindsAs('alice', Buffer.from(testPassword(labels.alice!).toString('utf8').normalize('NFD'))), false, 'a decomposed é is another password');
});

test('policy: too short and reused fail once with 6927 and the reason, never retried', async () => {
  await hook(POLICY, testPassword('s'));
  const [short] = await settled(POLICY, 1);
  assert.equal(short!.state, 'failed');
  assert.equal(short!.eventId, 6927);
  assert.match(short!.reason!, /too short/);
  await hook(POLICY, testPassword('policy-first-pass'));
  await settled(POLICY, 2);
  await hook(POLICY, testPassword('policy-second-pass'));
  await settled(POLICY, 3);
  await hook(POLICY, testPassword('policy-first-pass'));
  const all = await settled(POLICY, 4);
  assert.deepEqual(all.map((o) => o.state), ['failed', 'successful', 'successful', 'failed']);
  const reused = all[3]!;
  assert.equal(reused.eventId, 6927);
  assert.match(reused.reason!, /in history/);
  assert.equal(await slapd.bindsAs(POLICY, testPassword('policy-second-pass')), true, 'the refused password did not replace the current one');
  const status = spawnPwsync(['status', '--config', lab.hubConfig, '--account', `${DOMAIN}\\${POLICY}`, '--operations']);
  assert.equal(await status.exited, 3, `a failed operation shown: exit 3; ${status.stderr()}`);
  assert.match(status.stdout(), new RegExp(`${reused.opId}.*failed.*6927`));
  await neverRetried([short!, reused]);
});

test('a joined entry deleted in slapd: the next change fails once with 6923', async () => {
  await hook(GONE, testPassword('gone-first-pass'));
  assert.equal((await settled(GONE, 1))[0]!.state, 'successful');
  await slapd.remove(slapd.dnOf(GONE));
  await hook(GONE, testPassword('gone-second-pass'));
  const [, op] = await settled(GONE, 2);
  assert.equal(op!.state, 'failed');
  assert.equal(op!.eventId, 6923, op!.reason);
  await neverRetried([op!]);
});

test('a service account without write on userPassword: 6942 naming it and the right, not retried', async () => {
  await hook(DENIED, testPassword('denied-pass-long'));
  const [op] = await settled(DENIED, 1, NORIGHTS);
  assert.equal(op!.state, 'failed');
  assert.equal(op!.eventId, 6942);
  assert.ok(op!.reason!.includes(slapd.env.SLAPD_NORIGHTS_DN!), op!.reason);
  assert.match(op!.reason!, /write on userPassword/);
  // The status is stored before the event's log line is written: wait for the line.
  const line = await until('event 6942 in the hub log', 10_000, () => logged(op!.opId, 6942)[0]);
  assert.ok(line.includes(slapd.env.SLAPD_NORIGHTS_DN!), line);
  assert.equal(await slapd.bindsAs(DENIED, testPassword('denied-pass-long')), false, 'the password was not set');
  await neverRetried([op!]);
});

test('a plain ldap:// URL with the secure rule on: the hub refuses the target, and slapd\'s plain port sees no connection', async () => {
  const plainPort = Number(new URL(slapd.env.SLAPD_LDAP_URL!).port);
  const before = slapd.accepted(plainPort);
  const plain = await Lab.create({ root: testDir('ldap-e2e-plain'), connectors: [], hubConnectors: [{ ...ldapConnector('plain', { url: slapd.env.SLAPD_LDAP_URL }), requireSecureConnection: true }] });
  const hub = await plain.startHub(30_000).then(() => undefined, (e: unknown) => e as Error);
  try {
    // The connector's open() refuses (PwsyncError 6951) before its pool exists, and the hub does not start.
    assert.ok(hub instanceof Error, 'the hub refuses the plain target');
    assert.match(hub.message, /exited with [1-9]/);
    assert.match(hub.message, /connector plain: ldap:\/\/127\.0\.0\.1:\d+ is a plain LDAP connection.*nothing is sent\. Use ldaps:\/\/, or set startTls: true/);
    const events = readFileSync(plain.hubLog, 'utf8').split('\n').filter((l) => l.includes('"eventId":6951'));
    assert.equal(events.length, 1, 'event 6951 in the hub log');
    assert.match(events[0]!, /is a plain LDAP connection/);
  } finally {
    await plain.stopAll();
  }
  // A probe connection after the hub exited: once slapd has logged it, anything the hub opened before is logged too.
  await new Promise<void>((resolve, reject) => net.connect(plainPort, '127.0.0.1').once('connect', function (this: net.Socket) { this.destroy(); resolve(); }).once('error', reject));
  await until('slapd logged the probe connection', 10_000, () => slapd.accepted(plainPort) > before || undefined);
  assert.equal(slapd.accepted(plainPort), before + 1, 'only the probe reached slapd\'s plain port: nothing from the hub');
});

test('requireSecureConnection: false: the hub starts with event 6961 and sets the password over the plain connection', async () => {
  const off = await Lab.create({ root: testDir('ldap-e2e-off'), connectors: [], hubConnectors: [{ ...ldapConnector('plain-off', { url: slapd.env.SLAPD_LDAP_URL }), requireSecureConnection: false }] });
  try {
    await off.startHub();
    await off.startNotifier();
    const warned = readFileSync(off.hubLog, 'utf8').split('\n').filter((l) => l.includes('"eventId":6961'));
    assert.equal(warned.length, 1, 'one start-up warning');
    assert.match(warned[0]!, /requireSecureConnection is false.*its channel is plain now/);
    const pw = testPassword('e2e-plain-off-pass');
    const p = spawnPwsync(['hook', '--socket', off.hookSocket, '--domain', DOMAIN, '--sam', 'user0055'], { stdin: Buffer.concat([pw, Buffer.from('\n')]) });
    assert.equal(await p.exited, 0, p.stderr());
    await until('the plain-off set landed', 60_000, async () => (await slapd.bindsAs('user0055', Buffer.from(pw))) || undefined);
  } finally {
    await off.stopAll();
  }
});

test('slapd killed -9 and restarted during 500 changes: every change accounted for, every account holds its latest password', { timeout: 240_000 }, async () => {
  const base = Date.now() - 10 * KILL_CHANGES;
  const acked = new Map<number, string>();
  const kill = { killed: 0, restarted: 0 };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < KILL_CHANGES) {
      const i = next++;
      const pw = Secret.adopt(testPassword(`kill-${killSam(i)}-${i}`));
      try {
        const { changeId } = await sendHookChange(lab.hookSocket, { domain: DOMAIN, samAccountName: killSam(i), changeTime: base + i }, pw, 10_000);
        acked.set(i, changeId);
      } finally {
        pw.dispose();
      }
      if (acked.size >= 150 && kill.killed === 0) {
        kill.killed = Date.now();
        await slapd.kill();
      }
      if (acked.size >= 300 && kill.killed > 0 && kill.restarted === 0) {
        kill.restarted = -1;
        // Restart only once the hub has met the dead directory (a retryable failure after the kill).
        await until('a set-operation retried while slapd was down', 60_000, () => readFileSync(lab.hubLog, 'utf8').split('\n')
          .some((l) => l.includes('"eventId":6940') && l.includes(`"connector":"${CONNECTOR}"`) && Date.parse((JSON.parse(l) as { time: string }).time) >= kill.killed) || undefined);
        await slapd.restart();
        kill.restarted = Date.now();
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  assert.equal(acked.size, KILL_CHANGES, 'the notifier acknowledged every change');
  assert.ok(kill.killed > 0 && kill.restarted > 0, 'slapd was killed and restarted during the run');

  const latest = Array.from({ length: KILL_ACCOUNTS }, (_, a) => KILL_CHANGES - KILL_ACCOUNTS + a);
  await until('every account\'s latest change applied, and every older one settled', 180_000, async () => {
    const ops = (await state.listOperations()).filter((o) => o.connector === CONNECTOR);
    const ok = new Set(ops.filter((o) => o.state === 'successful').map((o) => o.changeId));
    // An older change waiting to retry is superseded (6919) at its next attempt.
    const settledIds = new Set(ops.filter((o) => SETTLED_STATES.has(o.state)).map((o) => o.changeId));
    return (latest.every((i) => ok.has(acked.get(i)!)) && [...acked.values()].every((id) => settledIds.has(id))) || undefined;
  });
  const byChange = new Map((await state.listOperations()).filter((o) => o.connector === CONNECTOR).map((o) => [o.changeId, o]));
  const missing = [...acked.values()].filter((id) => !byChange.has(id));
  assert.deepEqual(missing, [], 'every acknowledged change has its set-operation');
  const unsettled = [...acked.values()].map((id) => byChange.get(id)!).filter((o) => o.state !== 'successful' && o.state !== 'superseded');
  assert.deepEqual(unsettled.map((o) => [o.account.samAccountName, o.state, o.eventId, o.reason]), [], 'every change landed or was superseded by a newer one (6919)');
  // A retried operation may end superseded (6919) rather than with a second attempt: the hub's own
  // log says which met the dead directory.
  const retried = readFileSync(lab.hubLog, 'utf8').split('\n').filter((l) => l.includes('"eventId":6940') && l.includes(`"connector":"${CONNECTOR}"`)
    && Date.parse((JSON.parse(l) as { time: string }).time) >= kill.killed);
  assert.ok(retried.length > 0, 'some set-operations met the dead directory and were retried');
  for (let a = 0; a < KILL_ACCOUNTS; a++) {
    const sam = killSam(a);
    const last = KILL_CHANGES - KILL_ACCOUNTS + a;
    assert.equal(await slapd.bindsAs(sam, testPassword(`kill-${sam}-${last}`)), true, `${sam} binds with its latest password`);
    assert.equal(await slapd.bindsAs(sam, testPassword(`kill-${sam}-${last - KILL_ACCOUNTS}`)), false, `${sam}: its previous password is refused`);
  }
});
