import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DOMAIN, Lab, spawnPwsync, until } from '../../cli/lab.ts';
import { sampleConnectors } from '../../cli/samples.ts';
import { recipientFromPem, seal } from '../../core/envelope.ts';
import { createLogger, silentLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { loadHubConfig, type LoadedHubConfig } from '../../config/load.ts';
import { queryStatus } from '../../hub/admin.ts';
import { AuditTrail, localActor } from '../../hub/audit.ts';
import { DcRegistry } from '../../hub/dc-registry.ts';
import { openBroker, startHub, type RunningHub } from '../../hub/service.ts';
import { HubState } from '../../hub/state.ts';
import { createSubmitClient, tlsOnlyClient, type SealedChange } from '../../proto/channel.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * A latest-applied change time that is already wrong (stored by an older hub: 2^53-1 ms, past
 * what a Date holds, or the year 9999): `pwsync status` shows every account without failing and
 * flags the future one; `pwsync latest clear` clears it, audited (latest-clear) and logged
 * (6976), and the person's next real change is applied again.
 */
const YEAR_9999 = Date.UTC(9999, 0, 1);
const ALICE = '1000';
const BOB = '1001';
let lab: Lab;
let config: LoadedHubConfig;
let hub: RunningHub | undefined;
let client: ReturnType<typeof createSubmitClient> | undefined;

async function pwsync(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const s = spawnPwsync(args);
  // 'close', not 'exit': the last output has been read by then.
  const code = await new Promise<number | null>((r) => s.proc.once('close', (c: number | null) => r(c)));
  return { code, out: s.stdout(), err: s.stderr() };
}

function change(sam: string): SealedChange {
  const changeId = randomBytes(16);
  const binding = { changeId, changeTime: Date.now(), domain: DOMAIN, samAccountName: sam, objectGuid: '', objectSid: '', upn: '', dn: '', sourceHost: 'dc1.corp.example.com' };
  return {
    changeId, domain: DOMAIN, sourceDc: binding.sourceHost, changeTimeMs: binding.changeTime,
    sealedPassword: seal(recipientFromPem(readFileSync(path.join(lab.root, 'keys', 'hub.pub'))), binding, Secret.adopt(testPassword(`latest-${sam}`))),
    account: { samAccountName: sam, objectGuid: '', objectSid: '', userPrincipalName: '', distinguishedName: '' },
  };
}

async function settled(sam: string, c: SealedChange) {
  return until(`${sam}'s change settled`, 30_000, async () => (await queryStatus(hub!.state, { account: { samAccountName: sam } })).operations
    .find((o) => o.changeId === c.changeId!.toString('hex') && (o.state === 'successful' || o.state === 'failed' || o.state === 'superseded')));
}

before(async () => {
  lab = await Lab.create({ root: testDir('latest'), connectors: sampleConnectors().filter((c) => c.name === 'hr-csv') });
  config = await loadHubConfig(lab.hubConfig);
  mkdirSync(config.hub.dataDir, { recursive: true, mode: 0o700 });
  const { broker } = await openBroker(config, silentLogger());
  try {
    // What today's code let in and wrote: times past what a Date holds, and in the year 9999.
    const state = await HubState.open(broker);
    const account = { domain: DOMAIN, samAccountName: 'alice', objectGuid: '', objectSid: '', upn: '', dn: '' };
    await state.recordApplied('hr-csv', ALICE, Number.MAX_SAFE_INTEGER, 'a'.repeat(32));
    await state.recordApplied('hr-csv', BOB, YEAR_9999, 'b'.repeat(32));
    await state.putSync({ ...account, connector: 'hr-csv', state: 'in-sync', objectId: ALICE, opId: 'o'.repeat(32), changeTime: Number.MAX_SAFE_INTEGER, updatedAt: Date.now() });
    await state.putOperation({
      opId: 'o'.repeat(32), changeId: 'a'.repeat(32), connector: 'hr-csv', objectId: ALICE, account, changeTime: Number.MAX_SAFE_INTEGER,
      state: 'retrying', attempts: 1, nextAttemptAt: Number.MAX_SAFE_INTEGER, updatedAt: Date.now(),
    });
    await (await DcRegistry.open(broker, silentLogger())).storeNotices([{
      noticeId: 'n'.repeat(32), domain: DOMAIN, samAccountName: 'carol', objectGuid: '', userPrincipalName: '', distinguishedName: '',
      target: 'lab-hub', reason: 'not in the inclusion group', changeTime: Number.MAX_SAFE_INTEGER, sourceDc: 'dc1.corp.example.com', principal: 'dc1$', receivedAt: Date.now(),
    }]);
  } finally {
    await broker.close();
  }
});

after(async () => {
  client?.close();
  await hub?.stop();
});

test('`pwsync status` does not fail on a stored time past what a Date holds, and flags a latest-applied time in the future', async () => {
  const all = await pwsync(['status', '--config', lab.hubConfig, '--operations']);
  assert.equal(all.code, 0, all.err);
  assert.match(all.out, /corp\.example\.com\\alice\s+hr-csv\s+in-sync\s+9007199254740991 \(not a valid time\)/);
  assert.match(all.out, /retrying\s+1\s+9007199254740991 \(not a valid time\)/, 'the next try of the operation');
  const alice = await pwsync(['status', '--config', lab.hubConfig, '--account', 'alice']);
  assert.equal(alice.code, 0, alice.err);
  assert.match(alice.out, /CONNECTOR\s+OBJECT\s+LATEST APPLIED\s+CHANGE\s+NOTE/);
  assert.match(alice.out, /hr-csv\s+1000\s+9007199254740991 \(not a valid time\)\s+a{32}\s+IN THE FUTURE: .*pwsync latest clear --connector hr-csv --object 1000/);
  const bob = await pwsync(['status', '--config', lab.hubConfig, '--account', `${DOMAIN}\\bob`, '--json']);
  assert.equal(bob.code, 2, 'bob has no sync state or operation yet: no such account');
  assert.match(bob.err, /no such account/);
  const carol = await pwsync(['status', '--config', lab.hubConfig, '--account', `${DOMAIN}\\carol`]);
  assert.equal(carol.code, 0, carol.err);
  assert.match(carol.out, /corp\.example\.com\\carol\s+lab-hub\s+dc1\.corp\.example\.com\s+9007199254740991 \(not a valid time\)\s+6958/, 'a notice');
});

test('`pwsync latest clear` refuses what it cannot clear, naming the fix', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['--connector', 'nope', '--object', ALICE], /no connector nope in .*hub\.yaml: it has hr-csv/],
    [['--connector', 'hr-csv', '--object', '1002'], /connector hr-csv has no latest-applied change time for object 1002: `pwsync status --account NAME` lists/],
    [['--connector', 'hr-csv', '--account', 'carol'], /account carol has no object with a latest-applied change time in connector hr-csv/],
    [['--connector', 'hr-csv', '--object', ALICE, '--account', 'alice'], /either --object ID or --account NAME \(not both\)/],
    [['--connector', 'hr-csv'], /either --object ID or --account NAME/],
  ];
  for (const [args, message] of cases) {
    const r = await pwsync(['latest', 'clear', '--config', lab.hubConfig, ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, message);
  }
});

test('a latest-applied time in the future refuses a real change (6919) until an admin clears it: audited, logged, and the next change applies', async () => {
  hub = await startHub(config, createLogger({ level: 'info', file: path.join(lab.root, 'logs', 'in-process-hub.log'), sync: true }));
  client = createSubmitClient({ address: `127.0.0.1:${hub.port}`, ca: readFileSync(path.join(lab.root, 'tls', 'ca.pem')), auth: tlsOnlyClient(), timeoutMs: 10_000 });
  const frozen = change('alice');
  assert.equal((await client.submit({ notifierId: 'test', changes: [frozen] }))[0]!.status, 'ACCEPTED_DURABLE');
  const refused = await settled('alice', frozen);
  assert.equal(refused!.eventId, 6919);
  assert.match(refused!.reason!, /that time lies in the future.*pwsync latest clear --connector hr-csv --object 1000/);

  const cleared = await pwsync(['latest', 'clear', '--config', lab.hubConfig, '--connector', 'hr-csv', '--account', 'alice']);
  assert.equal(cleared.code, 0, cleared.err);
  assert.match(cleared.out, /cleared the latest-applied change time of hr-csv\/1000 \(change a{32} of 9007199254740991 \(not a valid time\)\)/);
  const byObject = await pwsync(['latest', 'clear', '--config', lab.hubConfig, '--connector', 'hr-csv', '--object', BOB]);
  assert.equal(byObject.code, 0, byObject.err);
  assert.match(byObject.out, /hr-csv\/1001 \(change b{32} of 9999-01-01T00:00:00\.000Z\)/);

  const { broker } = await openBroker(config, silentLogger());
  try {
    const entries = (await (await AuditTrail.open(broker)).list()).filter((e) => e.action === 'latest-clear');
    const ok = entries.filter((e) => e.result === 'ok');
    assert.deepEqual(ok.map((e) => e.subject), ['hr-csv/1000', 'hr-csv/1001']);
    assert.ok(ok.every((e) => e.actor === localActor().actor && e.from === localActor().from));
    assert.match(ok[0]!.detail!, /cleared change a{32} of 9007199254740991/);
    assert.ok(entries.some((e) => e.result === 'refused' && e.subject === 'hr-csv/1002'), 'a refused clear is audited too');
  } finally {
    await broker.close();
  }
  assert.ok(existsSync(lab.hubLog));
  const logged = readFileSync(lab.hubLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.eventId === 6976);
  assert.deepEqual(logged.map((l) => [l.connector, l.objectId, l.actor]), [['hr-csv', ALICE, localActor().actor], ['hr-csv', BOB, localActor().actor]]);

  for (const sam of ['alice', 'bob']) {
    const next = change(sam);
    assert.equal((await client.submit({ notifierId: 'test', changes: [next] }))[0]!.status, 'ACCEPTED_DURABLE');
    const applied = await settled(sam, next);
    assert.equal(applied!.state, 'successful', `${sam}: ${applied!.reason ?? ''}`);
  }
  const after = await pwsync(['status', '--config', lab.hubConfig, '--account', 'alice']);
  // 3: the operation stored stuck (retrying, no sealed password) was failed by the hub's recovery at start.
  assert.equal(after.code, 3, after.err);
  assert.match(after.out, /o{32}\s.*failed/);
  assert.doesNotMatch(after.out, /IN THE FUTURE/);
  assert.match(after.out, /corp\.example\.com\\alice\s+hr-csv\s+in-sync\s+\d{4}-\d\d-\d\dT/, 'the sync state stamped in the future gave way to the real change');
  assert.match(after.out, /hr-csv\s+1000\s+\d{4}-\d\d-\d\dT/);
});
