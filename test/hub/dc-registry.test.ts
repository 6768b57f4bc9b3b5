import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { DOMAIN as DOMAIN_OF_LAB, Lab, spawnPwsync } from '../../cli/lab.ts';
import { sampleConnectors } from '../../cli/samples.ts';
import { loadHubConfig } from '../../config/load.ts';
import type { DomainConfig } from '../../config/schema.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import type { Broker } from '../../core/broker.ts';
import { subjectToken } from '../../core/broker.ts';
import { DcRegistry } from '../../hub/dc-registry.ts';
import { startHub } from '../../hub/service.ts';
import type { DomainAuthorizer } from '../../hub/ingest.ts';
import type { CaptureState } from '../../notifier/capture-source.ts';
import { encodeNotice, noticeConsumer, noticeSubject, type QueuedNotice } from '../../notifier/notice.ts';
import { startReports, type RunningReports } from '../../notifier/report.ts';
import { createSubmitClient, tlsOnlyClient, type SealedChange } from '../../proto/channel.ts';
import { HubRefusal } from '../../proto/refusal.ts';
import { testDir } from '../lib/dirs.ts';
import { startReportHub, type ReportHub } from '../lib/report-hub.ts';
import { capturingLog, waitFor } from '../notifier/helpers.ts';

/**
 * Reports from a DC's notifier to a hub, both real (notifier/report.ts → gRPC over TLS → the
 * hub's Report handler and DC registry): liveness, capture state and queue recorded per DC;
 * out-of-scope notices stored once per account and target and then forgotten by the notifier;
 * a refused report keeps the notices queued; silence raises 6955 once and reporting again 6956;
 * `pwsync status` shows why an account's password was not sent and which DCs do not capture.
 * Authorization here is a stand-in that accepts DC1$ only; the real DC check is in test/samba/.
 */

const DOMAIN: DomainConfig = { name: 'pwsync.test', allowReadOnlyDCs: false, dcCacheTtl: 600_000, dcSilentAfter: 7_200_000 };
const onlyDc1: DomainAuthorizer = {
  authorize: async (caller) => {
    if (caller.principal !== 'DC1$@PWSYNC.TEST') throw new HubRefusal('forbidden', `${caller.principal} is not a writable domain controller of pwsync.test`);
  },
};

let dir: string;
let hub: ReportHub;
let notifierBroker: Broker;
const hubLog = capturingLog();
const running: RunningReports[] = [];

function notice(sam: string, reason: string, changeTime = Date.now(), target = 'hub1'): QueuedNotice {
  return {
    noticeId: randomBytes(16), changeTimeMs: changeTime, target, reason,
    account: { samAccountName: sam, objectGuid: '', objectSid: '', userPrincipalName: `${sam}@pwsync.test`, distinguishedName: `CN=${sam},CN=Users,DC=pwsync,DC=test` },
  };
}

/** A change the hub rejects (it is not an envelope): a submit that still tells the hub which DC called. */
function emptyChange(): SealedChange {
  return {
    changeId: randomBytes(16), changeTimeMs: Date.now(), sealedPassword: randomBytes(100),
    account: { samAccountName: 'alice', objectGuid: '', objectSid: '', userPrincipalName: '', distinguishedName: '' },
  };
}

async function queueNotice(n: QueuedNotice, target = 'hub1'): Promise<void> {
  const token = subjectToken(target);
  await notifierBroker.publish(noticeSubject(token), encodeNotice(n), { msgId: `${n.noticeId.toString('hex')}.${token}.notice.${randomBytes(4).toString('hex')}` });
}

async function pendingNotices(target: string): Promise<number> {
  return (await (await notifierBroker.consumer(noticeConsumer(subjectToken(target)), noticeSubject(subjectToken(target)), { ackWaitMs: 70_000 })).info()).pending;
}

before(async () => {
  dir = testDir('dcreg');
  hub = await startReportHub({ dir, domains: [DOMAIN], authorizer: onlyDc1, log: hubLog.log });
  notifierBroker = openSqliteBroker({ file: path.join(dir, 'notifier.db'), groupCommitMs: 2 });
});

after(async () => {
  for (const r of running) await r.stop();
  await notifierBroker?.close();
  await hub?.stop();
});

test('reports record the DC, its capture and queue; notices are stored once per account and target, then forgotten by the notifier', async () => {
  let capture: CaptureState[] = [{ source: 'samba', state: 'running', detail: '', lastCaptureMs: 0 }];
  const carol = notice('carol', 'out of scope: member of exclusion group pwsync-exclude');
  await queueNotice(carol);
  const reports = await startReports({
    broker: notifierBroker, notifierId: 'dc1', domain: 'pwsync.test', host: 'DC1', capture: () => capture, intervalMs: 200,
    targets: [{ name: 'hub1', token: subjectToken('hub1'), channel: hub.client('DC1$@PWSYNC.TEST'), queued: async () => 3, retryIntervalMs: 50 }],
    log: capturingLog().log,
  });
  running.push(reports);

  const stored = await waitFor('carol\'s notice stored', async () => (await hub.registry.listNotices({ samAccountName: 'carol' }))[0]);
  assert.equal(stored.reason, 'out of scope: member of exclusion group pwsync-exclude');
  assert.equal(stored.sourceDc, 'DC1');
  assert.equal(stored.principal, 'DC1$@PWSYNC.TEST');
  assert.equal(stored.domain, 'pwsync.test');
  assert.equal(stored.noticeId, carol.noticeId.toString('hex'));
  await waitFor('the notifier forgot the stored notice', async () => (await pendingNotices('hub1')) === 0);

  const [dc] = await hub.registry.listDcs('pwsync.test');
  assert.ok(dc);
  assert.equal(dc.sourceDc, 'DC1');
  assert.equal(dc.principal, 'DC1$@PWSYNC.TEST');
  assert.equal(dc.notifierId, 'dc1');
  assert.equal(dc.queued, 3);
  assert.deepEqual(dc.capture.map((c) => `${c.source}:${c.state}`), ['samba:running']);
  assert.equal(hubLog.events(6956).length, 1);
  assert.equal(hubLog.events(6956)[0]!.first, true);

  // The same notice again (a notifier that crashed before its ack), and an older one: stored once, the newest kept.
  await queueNotice(carol);
  await queueNotice(notice('carol', 'out of scope: not a member of inclusion group pwsync-sync', carol.changeTimeMs - 60_000));
  await waitFor('the repeats acknowledged', async () => (await pendingNotices('hub1')) === 0);
  const carols = await hub.registry.listNotices({ domain: 'pwsync.test', samAccountName: 'carol' });
  assert.deepEqual(carols.map((n) => n.reason), ['out of scope: member of exclusion group pwsync-exclude']);

  // A capture that stops shows at the next report.
  capture = [{ source: 'samba', state: 'restarting', detail: 'syncpasswords exited with 1', lastCaptureMs: 0 }];
  await waitFor('the capture state reported', async () => (await hub.registry.listDcs())[0]?.capture[0]?.state === 'restarting');
  await reports.stop();
  running.pop();
});

test('a report refused (not a DC) keeps its notices queued; they go once the caller is accepted', async () => {
  const dave = notice('dave', 'out of scope: not a member of inclusion group pwsync-sync', Date.now(), 'hub2');
  await queueNotice(dave, 'hub2');
  const notifierLog = capturingLog();
  const refused = await startReports({
    broker: notifierBroker, notifierId: 'ws9', domain: 'pwsync.test', host: 'WS9', capture: () => [], intervalMs: 60_000,
    targets: [{ name: 'hub2', token: subjectToken('hub2'), channel: hub.client('WS9$@PWSYNC.TEST'), queued: async () => 0, retryIntervalMs: 20, maxRetryIntervalMs: 40 }],
    log: notifierLog.log,
  });
  await waitFor('two refused reports', () => notifierLog.lines.filter((l) => /report to the hub failed/.test(l.msg)).length >= 2);
  await refused.stop();
  const warned = notifierLog.lines.find((l) => /report to the hub failed/.test(l.msg))!;
  assert.equal(warned.code, 'PERMISSION_DENIED');
  assert.match(String(warned.err), /WS9\$@PWSYNC\.TEST is not a writable domain controller/);
  assert.equal(await pendingNotices('hub2'), 1);
  assert.deepEqual(await hub.registry.listNotices({ samAccountName: 'dave' }), []);
  assert.ok(!(await hub.registry.listDcs()).some((d) => d.sourceDc === 'WS9'));

  // A domain this hub does not serve is refused whole, whoever asks.
  await assert.rejects(hub.client('DC1$@PWSYNC.TEST').report({ notifierId: 'x', domain: 'other.test', sourceDc: 'DC9', sentTimeMs: Date.now() }),
    (e: unknown) => (e as { code?: string }).code === 'PERMISSION_DENIED' && /domain "other\.test" is not served by this hub/.test((e as Error).message));

  // Once the caller is accepted, the kept notice goes.
  const accepted = await startReports({
    broker: notifierBroker, notifierId: 'dc1', domain: 'pwsync.test', host: 'DC1', capture: () => [], intervalMs: 60_000,
    targets: [{ name: 'hub2', token: subjectToken('hub2'), channel: hub.client('DC1$@PWSYNC.TEST'), queued: async () => 0, retryIntervalMs: 20 }],
    log: capturingLog().log,
  });
  running.push(accepted);
  await waitFor('dave\'s notice stored', async () => (await hub.registry.listNotices({ samAccountName: 'dave' }))[0], 15_000);
  await waitFor('dave\'s notice acknowledged', async () => (await pendingNotices('hub2')) === 0);
  await accepted.stop();
  running.pop();
});

test('a DC silent past dcSilentAfter raises 6955 once; reporting again raises 6956', async () => {
  let now = 10_000_000;
  const log = capturingLog();
  const broker = openSqliteBroker({ file: path.join(dir, 'silence.db'), groupCommitMs: 2 });
  try {
    const registry = await DcRegistry.open(broker, log.log, () => now);
    const d: DomainConfig = { ...DOMAIN, dcSilentAfter: 3_600_000 };
    const caller = { principal: 'DC2$@PWSYNC.TEST', mechanism: 'kerberos' as const, peer: 'p' };
    const report = { notifierId: 'dc2', domain: 'pwsync.test', sourceDc: 'dc2.pwsync.test', capture: [], notices: [], sentTimeMs: now, queued: 0, pending: [], pendingOmitted: 0, sealingKeyId: '' };
    await registry.recordReport(d, report, caller);
    const hubStart = now;
    now += 3_500_000;
    assert.deepEqual(await registry.checkSilence([d], hubStart), []);
    now += 200_000;
    assert.equal((await registry.checkSilence([d], hubStart)).length, 1);
    now += 600_000;
    assert.deepEqual(await registry.checkSilence([d], hubStart), []);
    const silent = log.events(6955);
    assert.equal(silent.length, 1);
    assert.equal(silent[0]!.sourceDc, 'dc2.pwsync.test');
    assert.equal(silent[0]!.principal, 'DC2$@PWSYNC.TEST');
    assert.ok((await registry.listDcs())[0]!.silent);

    // A hub that was itself down does not blame the DC until dcSilentAfter after its own start.
    assert.deepEqual(await registry.checkSilence([{ ...d, name: 'pwsync.test' }], now), []);

    await registry.recordSubmit([d], 'dc2', [{ domain: 'pwsync.test', sourceDc: 'dc2.pwsync.test' } as never], caller);
    const again = log.events(6956);
    assert.deepEqual(again.map((e) => e.first), [true, false]);
    assert.equal((await registry.listDcs())[0]!.silent, false);
    now += 3_700_000;
    assert.equal((await registry.checkSilence([d], hubStart)).length, 1);
    assert.equal(log.events(6955).length, 2);
  } finally {
    await broker.close();
  }
});

test('`pwsync status` says why an account\'s password was not sent, and which DCs do not capture', async () => {
  await hub.registry.recordReport(DOMAIN, {
    notifierId: 'dc3', domain: 'pwsync.test', sourceDc: 'DC3', sentTimeMs: Date.now(), queued: 7, notices: [], pending: [], pendingOmitted: 0, sealingKeyId: '',
    capture: [{ source: 'samba', state: 'restarting', detail: 'samba-tool syncpasswords exited with status 255', lastCaptureMs: 0 }],
  }, { principal: 'DC3$@PWSYNC.TEST', mechanism: 'kerberos', peer: 'p' });
  const account = spawnPwsync(['status', '--config', hub.hubConfig, '--account', 'pwsync.test\\carol']);
  assert.equal(await account.exited, 0, account.stderr());
  assert.match(account.stdout(), /pwsync\.test\\carol\s+hub1\s+DC1\s+\S+\s+6958\s+not sent by DC1 to hub1: out of scope: member of exclusion group pwsync-exclude/);
  assert.doesNotMatch(account.stdout(), /no accounts recorded yet/);

  const json = spawnPwsync(['status', '--config', hub.hubConfig, '--account', 'carol', '--json']);
  assert.equal(await json.exited, 0, json.stderr());
  const parsed = JSON.parse(json.stdout()) as { notices: Array<{ reason: string }> };
  assert.equal(parsed.notices[0]?.reason, 'out of scope: member of exclusion group pwsync-exclude');

  const dcs = spawnPwsync(['status', '--config', hub.hubConfig, '--dcs']);
  assert.equal(await dcs.exited, 0, dcs.stderr());
  const out = dcs.stdout();
  // DC1's last report (to hub2, in the test before) said no capture source and nothing queued.
  assert.match(out, /pwsync\.test\s+DC1\s+DC1\$@PWSYNC\.TEST\s+.*not reported\s+0\s+reporting/);
  assert.match(out, /pwsync\.test\s+DC3\s+DC3\$@PWSYNC\.TEST\s+.*samba: restarting\s+7\s+reporting/);
  assert.match(out, /capture not running[^\n]*\n(.*\n)*\s+DC3 \(pwsync\.test\): samba restarting: samba-tool syncpasswords exited with status 255/);
  assert.match(out, /\s+DC1 \(pwsync\.test\): no capture source reported/);
});

test('a hub started from its YAML takes reports and records submits (TLS alone: accepted, the caller named by TLS)', async () => {
  const lab = await Lab.create({ root: testDir('dcreg-hub'), connectors: sampleConnectors().filter((c) => c.name === 'hr-csv') });
  const started = await startHub(await loadHubConfig(lab.hubConfig), capturingLog().log);
  const client = createSubmitClient({ address: `127.0.0.1:${started.port}`, ca: readFileSync(path.join(lab.root, 'tls', 'ca.pem')), auth: tlsOnlyClient(), timeoutMs: 10_000 });
  try {
    const res = await client.report({
      notifierId: 'dc1', domain: DOMAIN_OF_LAB, sourceDc: 'dc1.corp.example.com', sentTimeMs: Date.now(), queued: 2,
      capture: [{ source: 'hook', state: 'running', detail: '', lastCaptureMs: 0 }],
      notices: [{ ...notice('carol', 'out of scope: member of exclusion group Domain Admins'), target: 'lab-hub' }],
    });
    assert.equal(res.storedNoticeIds.length, 1);
    assert.ok(res.hubTimeMs > 0);
    await client.submit({ notifierId: 'dc2', changes: [{ ...emptyChange(), domain: DOMAIN_OF_LAB, sourceDc: 'dc2.corp.example.com' }] });
  } finally {
    client.close();
    await started.stop();
  }
  const dcs = spawnPwsync(['status', '--config', lab.hubConfig, '--dcs']);
  assert.equal(await dcs.exited, 0, dcs.stderr());
  assert.match(dcs.stdout(), /corp\.example\.com\s+dc1\.corp\.example\.com\s+anonymous@tls\s+.*hook: running\s+2\s+reporting/);
  assert.match(dcs.stdout(), /corp\.example\.com\s+dc2\.corp\.example\.com\s+anonymous@tls\s+-\s+.*not reported\s+-\s+reporting/);
  const why = spawnPwsync(['status', '--config', lab.hubConfig, '--account', 'carol']);
  assert.equal(await why.exited, 0, why.stderr());
  assert.match(why.stdout(), /not sent by dc1\.corp\.example\.com to lab-hub: out of scope: member of exclusion group Domain Admins/);
});
