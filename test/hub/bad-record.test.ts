import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DOMAIN, Lab, until } from '../../cli/lab.ts';
import { sampleConnectors, type Person } from '../../cli/samples.ts';
import { recipientFromPem, seal } from '../../core/envelope.ts';
import { createLogger, silentLogger } from '../../core/log.ts';
import { operationId } from '../../core/operation-id.ts';
import { Secret } from '../../core/secret.ts';
import { loadHubConfig } from '../../config/load.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { PwsyncError } from '../../core/errors.ts';
import { queryStatus } from '../../hub/admin.ts';
import { createReportHandler, DcRegistry } from '../../hub/dc-registry.ts';
import { allowConfiguredDomains, changeSubject } from '../../hub/ingest.ts';
import { encode, type ChangeRecord, type OperationRecord } from '../../hub/records.ts';
import { openBroker, startHub, type RunningHub } from '../../hub/service.ts';
import { HubState } from '../../hub/state.ts';
import { opsSubject } from '../../hub/targets.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';
import { capturingLog } from '../notifier/helpers.ts';

/**
 * One bad record never holds back the others. Records an older hub stored (a change time past
 * what a Date holds, in the year 9999, a part missing) sit in the broker's queues beside good
 * ones, and an object's latest-applied change time is 2^53-1 ms; the hub started on them applies
 * every good record of the batch and sets each bad one aside with event 6975.
 */
const SAMS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan'];
const PEOPLE: Person[] = SAMS.map((sam) => ({ sam, name: sam, mail: `${sam}@corp.example.com` }));
/** The hr-csv object id of each person (csv() numbers them from 1000). */
const objectOf = (sam: string): string => String(1000 + SAMS.indexOf(sam));
const YEAR_9999 = Date.UTC(9999, 0, 1);

let lab: Lab;
let hub: RunningHub;
let logFile: string;
const ids: Record<string, string> = {};

const logLines = (): Array<Record<string, unknown>> => readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

function sealedFor(sam: string, changeId: string, changeTime: number): string {
  const recipient = recipientFromPem(readFileSync(path.join(lab.root, 'keys', 'hub.pub')));
  const binding = {
    changeId: Buffer.from(changeId, 'hex'), changeTime, domain: DOMAIN, samAccountName: sam, objectGuid: '', objectSid: '', upn: '', dn: '', sourceHost: 'dc1.corp.example.com',
  };
  return seal(recipient, binding, Secret.adopt(testPassword(`bad-record-${sam}`))).toString('base64');
}

const accountOf = (sam: string) => ({ domain: DOMAIN, samAccountName: sam, objectGuid: '', objectSid: '', upn: '', dn: '' });

function changeRecord(sam: string, changeTime: number): ChangeRecord {
  const changeId = randomBytes(16).toString('hex');
  ids[sam] = changeId;
  return {
    changeId, domain: DOMAIN, sourceDc: 'dc1.corp.example.com', account: accountOf(sam),
    changeTime, envelope: sealedFor(sam, changeId, Math.min(changeTime, Date.now())), receivedAt: Date.now(), caller: 'dc1$',
  };
}

function operation(sam: string, changeTime: number): OperationRecord {
  const changeId = randomBytes(16).toString('hex');
  ids[sam] = changeId;
  return {
    opId: operationId(changeId, 'hr-csv', objectOf(sam)), changeId, connector: 'hr-csv', objectId: objectOf(sam),
    account: accountOf(sam), changeTime, envelope: sealedFor(sam, changeId, changeTime),
  };
}

before(async () => {
  const csv = sampleConnectors(PEOPLE).find((c) => c.name === 'hr-csv')!;
  // One lane: the good and the bad operations share a batch.
  lab = await Lab.create({ root: testDir('bad-record'), connectors: [{ ...csv, concurrency: 1 }] });
  logFile = path.join(lab.root, 'logs', 'bad-record.log');
  const config = await loadHubConfig(lab.hubConfig);
  mkdirSync(config.hub.dataDir, { recursive: true, mode: 0o700 });
  const { broker } = await openBroker(config, silentLogger());
  try {
    // Changes as the resolver finds them: two good ones around four an older hub let in.
    const changes: unknown[] = [
      changeRecord('alice', Date.now()),
      changeRecord('carol', Number.MAX_SAFE_INTEGER),
      changeRecord('dave', YEAR_9999),
      { ...changeRecord('ivan', Date.now()), account: null },
      null,
      changeRecord('bob', Date.now()),
    ];
    for (const [i, c] of changes.entries()) await broker.publish(changeSubject(DOMAIN), encode(c), { msgId: `change-${i}` });
    // Set-operations as a connector's dispatcher finds them, and a latest-applied time past what a Date holds.
    const state = await HubState.open(broker);
    await state.recordApplied('hr-csv', objectOf('grace'), Number.MAX_SAFE_INTEGER, 'f'.repeat(32));
    const ops: unknown[] = [
      operation('erin', Date.now()),
      operation('heidi', Number.MAX_SAFE_INTEGER),
      operation('grace', Date.now()),
      { ...operation('ivan', Date.now()), objectId: undefined },
      operation('frank', Date.now()),
    ];
    for (const [i, op] of ops.entries()) await broker.publish(opsSubject('hr-csv'), encode(op), { msgId: `op-${i}` });
  } finally {
    await broker.close();
  }
  hub = await startHub(config, createLogger({ level: 'info', file: logFile, sync: true }));
});

after(async () => {
  await hub?.stop();
});

const opOf = async (sam: string) => (await queryStatus(hub.state, { account: { samAccountName: sam } })).operations.find((o) => o.changeId === ids[sam]);

test('the resolver resolves the good changes of its batch and sets aside each bad one with 6975', async () => {
  for (const sam of ['alice', 'bob']) {
    const op = await until(`${sam}'s change applied`, 30_000, async () => {
      const o = await opOf(sam);
      return o?.state === 'successful' ? o : undefined;
    });
    assert.equal(op.objectId, objectOf(sam));
  }
  for (const sam of ['carol', 'dave']) {
    const s = await queryStatus(hub.state, { account: { samAccountName: sam } });
    assert.deepEqual([s.sync, s.operations], [[], []], `${sam}'s change made no set-operation`);
  }
  const events = await until('four 6975 events from the resolver', 10_000, () => {
    const e = logLines().filter((l) => l.eventId === 6975 && l.component === 'resolver');
    return e.length === 4 ? e : undefined;
  });
  const reasons = events.map((e) => String(e.reason));
  assert.ok(reasons.some((r) => /change time 9007199254740991 \(not a valid time\) is \d+d ahead of this clock/.test(r)), reasons.join('\n'));
  assert.ok(reasons.some((r) => /change time 9999-01-01T00:00:00\.000Z is \d+d ahead/.test(r)), reasons.join('\n'));
  assert.ok(reasons.some((r) => /account \(domain, samAccountName\) is missing/.test(r)), reasons.join('\n'));
  assert.ok(reasons.some((r) => /the record is not an object/.test(r)), reasons.join('\n'));
  assert.deepEqual(events.filter((e) => e.changeId === ids.carol).map((e) => e.account), [`${DOMAIN}\\carol`], 'the event names the change');
});

test('the dispatcher applies the good set-operations of its batch and sets aside each bad one with 6975', async () => {
  for (const sam of ['erin', 'frank']) {
    await until(`${sam}'s operation applied`, 30_000, async () => ((await opOf(sam))?.state === 'successful' ? true : undefined));
  }
  const heidi = await until('heidi\'s operation set aside', 10_000, async () => ((await opOf('heidi'))?.state === 'failed' ? opOf('heidi') : undefined));
  assert.equal(heidi!.eventId, 6975);
  assert.match(heidi!.reason!, /change time 9007199254740991 \(not a valid time\) is \d+d ahead of this clock/);
  assert.deepEqual((await queryStatus(hub.state, { account: { samAccountName: 'heidi' } })).sync, [], 'a time beyond the clock is not written into the sync state');
  const events = await until('two 6975 events from the dispatcher', 10_000, () => {
    const e = logLines().filter((l) => l.eventId === 6975 && l.connector === 'hr-csv');
    return e.length === 2 ? e : undefined;
  });
  assert.ok(events.some((e) => e.changeId === ids.ivan && /objectId is missing or empty/.test(String(e.reason))), JSON.stringify(events));
});

test('a latest-applied time past what a Date holds refuses the change as older (6919), names the fix, and holds back nothing', async () => {
  const grace = await until('grace\'s operation settled', 30_000, async () => ((await opOf('grace'))?.state === 'superseded' ? opOf('grace') : undefined));
  assert.equal(grace!.eventId, 6919);
  assert.match(grace!.reason!, /older than the one applied \(9007199254740991 \(not a valid time\)\); that time lies in the future.*pwsync latest clear --connector hr-csv --object 1006/);
  assert.equal(logLines().filter((l) => /batch failed unexpectedly/.test(String(l.msg))).length, 0, 'no batch failed as a whole');
});

test('a report\'s notices are stored in one write, each on its own when that fails: one stamped in the future or one that cannot be stored holds back none of the others', async () => {
  const broker = openSqliteBroker({ file: path.join(testDir('bad-notice'), 'hub.db') });
  try {
    const { log, events } = capturingLog();
    const registry = await DcRegistry.open(broker, log);
    const store = registry.storeNotices.bind(registry);
    // One notice the store refuses for good, one it cannot take now (the broker unreachable): the
    // report's one write fails, and each notice is then written on its own.
    registry.storeNotices = async (ns) => {
      if (ns.some((n) => n.samAccountName === 'broken')) throw new Error('the record cannot be written');
      if (ns.some((n) => n.samAccountName === 'later')) throw new PwsyncError(6970, 'NATS did not answer in time', { retryable: true });
      return store(ns);
    };
    const domain = { name: DOMAIN, allowReadOnlyDCs: false, dcCacheTtl: 60_000, dcSilentAfter: 3_600_000 };
    const report = createReportHandler({ domains: [domain], authorizer: allowConfiguredDomains, registry, log, clockToleranceMs: 5 * 60_000 });
    const notice = (sam: string, changeTimeMs = Date.now()) => ({
      noticeId: randomBytes(16), changeTimeMs, target: 'lab-hub', reason: 'out of scope',
      account: { samAccountName: sam, objectGuid: '', objectSid: '', userPrincipalName: '', distinguishedName: '' },
    });
    const notices = [
      notice('alice'), notice('future', Number.MAX_SAFE_INTEGER), notice('year9999', YEAR_9999), notice('broken'), notice('later'), notice('bob'),
    ];
    const res = await report({ notifierId: 'dc1', domain: DOMAIN, sourceDc: 'dc1.corp.example.com', capture: [], notices, sentTimeMs: Date.now(), queued: 0, pending: [], pendingOmitted: 0, sealingKeyId: '' }, { principal: 'dc1$', mechanism: 'tls', peer: '127.0.0.1' });
    const answered = new Set(res.storedNoticeIds!.map((id) => Buffer.from(id).toString('hex')));
    const name = (n: (typeof notices)[number]): string => n.account.samAccountName;
    assert.deepEqual(notices.filter((n) => answered.has(n.noticeId.toString('hex'))).map(name), ['alice', 'future', 'year9999', 'broken', 'bob'], 'only the one the broker could not take now is sent again');
    assert.deepEqual((await registry.listNotices()).map((n) => n.samAccountName), ['alice', 'bob']);
    assert.deepEqual(events(6974).map((e) => e.account), ['future', 'year9999']);
    assert.ok(events(6974).every((e) => e.sourceDc === 'dc1.corp.example.com' && (e.skewMs as number) > 0));
    assert.deepEqual(events(6975).map((e) => e.account), ['broken']);
  } finally {
    await broker.close();
  }
});
