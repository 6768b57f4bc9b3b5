import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { DomainConfig } from '../../config/schema.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { subjectToken, type Broker, type KvStore, type KvWrite } from '../../core/broker.ts';
import { createReportHandler, DcRegistry } from '../../hub/dc-registry.ts';
import type { DomainAuthorizer } from '../../hub/ingest.ts';
import { encodeNotice, noticeConsumer, noticeSubject, type QueuedNotice } from '../../notifier/notice.ts';
import { startReports } from '../../notifier/report.ts';
import { MAX_REPORT_NOTICES } from '../../proto/service.ts';
import { testDir } from '../lib/dirs.ts';
import { rawHubClient } from '../lib/raw-grpc.ts';
import { PRINCIPAL_HEADER, startReportHub, type ReportHub } from '../lib/report-hub.ts';
import { capturingLog, waitFor } from '../notifier/helpers.ts';

/**
 * A Report is bounded (issue 14, part 4): at most MAX_REPORT_NOTICES notices per call, stored in
 * one write of the notices bucket, and a report whose caller went away stops before it stores.
 * Its identifiers are checked like a change's (part 3): control characters and invalid UTF-8 are
 * refused. Over real gRPC/TLS to the real Report handler (test/lib/report-hub.ts).
 */

const DOMAIN: DomainConfig = { name: 'pwsync.test', allowReadOnlyDCs: false, dcCacheTtl: 600_000, dcSilentAfter: 7_200_000 };
const DC1 = 'DC1$@PWSYNC.TEST';
/** While set, authorization waits for it: a hub that is slow before it stores. */
let gate: Promise<void> | undefined;
const gated: DomainAuthorizer = { authorize: async () => { await gate; } };

let dir: string;
let hub: ReportHub;
const hubLog = capturingLog();

function notice(sam: string, over: Partial<QueuedNotice['account']> = {}): QueuedNotice {
  return {
    noticeId: randomBytes(16), changeTimeMs: Date.now(), target: 'hub1', reason: 'out of scope: member of exclusion group pwsync-exclude',
    account: { samAccountName: sam, objectGuid: '', objectSid: '', userPrincipalName: `${sam}@pwsync.test`, distinguishedName: `CN=${sam},DC=pwsync,DC=test`, ...over },
  };
}

const notices = (prefix: string, n: number): QueuedNotice[] => Array.from({ length: n }, (_, i) => notice(`${prefix}${i}`));
const report = (sourceDc: string, list: QueuedNotice[], over: { domain?: string } = {}) => ({
  notifierId: sourceDc.toLowerCase(), domain: over.domain ?? 'pwsync.test', sourceDc, sentTimeMs: Date.now(), queued: 0, capture: [], notices: list, pending: [], pendingOmitted: 0, sealingKeyId: '',
});
const storedFor = async (prefix: string): Promise<number> => (await hub.registry.listNotices()).filter((n) => n.samAccountName.startsWith(prefix)).length;

before(async () => {
  dir = testDir('report-bounds');
  hub = await startReportHub({ dir, domains: [DOMAIN], authorizer: gated, log: hubLog.log });
});

after(async () => {
  await hub?.stop();
});

test(`a report with more than ${MAX_REPORT_NOTICES} notices is refused, naming the limit; nothing of it is stored`, async () => {
  await assert.rejects(hub.client(DC1).report(report('DC2', notices('over', MAX_REPORT_NOTICES + 1))), (e: Error & { code?: string }) =>
    e.code === 'INVALID_ARGUMENT' && /a report may carry at most 1000 notices, this one has 1001: send them in several reports/.test(e.message));
  assert.equal(await storedFor('over'), 0);
  assert.ok(!(await hub.registry.listDcs()).some((d) => d.sourceDc === 'DC2'), 'the DC is not recorded either');
});

test(`a report of ${MAX_REPORT_NOTICES} notices is stored whole`, async () => {
  const list = notices('full', MAX_REPORT_NOTICES);
  const res = await hub.client(DC1).report(report('DC1', list));
  assert.equal(res.storedNoticeIds.length, MAX_REPORT_NOTICES);
  assert.deepEqual(new Set(res.storedNoticeIds.map((id) => Buffer.from(id).toString('hex'))), new Set(list.map((n) => n.noticeId.toString('hex'))));
  assert.equal(await storedFor('full'), MAX_REPORT_NOTICES);
});

/** A broker whose notices bucket records every write it is asked for. */
function spying(broker: Broker, writes: string[]): Broker {
  return {
    publish: (...a) => broker.publish(...a),
    consumer: (...a) => broker.consumer(...a),
    close: () => broker.close(),
    kv: async (bucket) => {
      const kv = await broker.kv(bucket);
      if (bucket !== 'notices') return kv;
      const spy: KvStore = {
        get: (k) => kv.get(k),
        keys: (p) => kv.keys(p),
        delete: (k) => kv.delete(k),
        put: (k, v) => { writes.push('put'); return kv.put(k, v); },
        create: (k, v) => { writes.push('create'); return kv.create(k, v); },
        update: (k, v, r) => { writes.push('update'); return kv.update(k, v, r); },
        putMany: (entries: readonly KvWrite[]) => { writes.push(`putMany ${entries.length}`); return kv.putMany(entries); },
      };
      return spy;
    },
  };
}

test('a report\'s notices go to the notices bucket in one write (one transaction on the embedded broker), the older of two for one account left out', async () => {
  const writes: string[] = [];
  const broker = spying(openSqliteBroker({ file: path.join(dir, 'spy.db'), groupCommitMs: 2 }), writes);
  try {
    const registry = await DcRegistry.open(broker, hubLog.log);
    const handle = createReportHandler({ domains: [DOMAIN], authorizer: gated, registry, log: hubLog.log, clockToleranceMs: 300_000 });
    const list = notices('one', MAX_REPORT_NOTICES - 1);
    const older = { ...notice('one0'), changeTimeMs: list[0]!.changeTimeMs - 60_000, reason: 'older' };
    const res = await handle(report('DC1', [...list, older]), { principal: DC1, mechanism: 'kerberos', peer: 'p' });
    assert.equal(res.storedNoticeIds?.length, MAX_REPORT_NOTICES, 'every notice is answered stored: the older one has a newer one in its place');
    assert.deepEqual(writes, [`putMany ${MAX_REPORT_NOTICES - 1}`]);
    assert.equal((await registry.listNotices()).length, MAX_REPORT_NOTICES - 1);
    assert.notEqual((await registry.listNotices({ domain: 'pwsync.test', samAccountName: 'one0' }))[0]!.reason, 'older');
    // Sent again (a notifier that missed the answer): nothing is written twice.
    await handle(report('DC1', list), { principal: DC1, mechanism: 'kerberos', peer: 'p' });
    assert.deepEqual(writes, [`putMany ${MAX_REPORT_NOTICES - 1}`]);
  } finally {
    await broker.close();
  }
});

test('a notifier with more notices queued than a report may carry sends them in several reports; none is lost', async () => {
  const notifierBroker = openSqliteBroker({ file: path.join(dir, 'notifier.db'), groupCommitMs: 2 });
  const notifierLog = capturingLog();
  const token = subjectToken('hub1');
  const queued = notices('many', MAX_REPORT_NOTICES + 500);
  try {
    await Promise.all(queued.map((n) => notifierBroker.publish(noticeSubject(token), encodeNotice(n), { msgId: `${n.noticeId.toString('hex')}.${token}.notice` })));
    const reports = await startReports({
      broker: notifierBroker, notifierId: 'dc1', domain: 'pwsync.test', host: 'DC1', capture: () => [], intervalMs: 100, maxNotices: 10_000,
      targets: [{ name: 'hub1', token, channel: hub.client(DC1), queued: async () => 0, retryIntervalMs: 50 }],
      log: notifierLog.log,
    });
    try {
      await waitFor('every notice stored', async () => (await storedFor('many')) === queued.length, 60_000);
      const consumer = await notifierBroker.consumer(noticeConsumer(token), noticeSubject(token), { ackWaitMs: 70_000 });
      await waitFor('the notifier forgot them all', async () => (await consumer.info()).pending === 0, 30_000);
    } finally {
      await reports.stop();
    }
    assert.deepEqual(notifierLog.lines.filter((l) => /report to the hub failed/.test(l.msg)), [], 'no report was refused');
  } finally {
    await notifierBroker.close();
  }
});

test('a report whose caller went away (deadline) stops before it stores: nothing recorded, 6980 logged', async () => {
  let release: () => void = () => {};
  gate = new Promise<void>((resolve) => { release = resolve; });
  try {
    await assert.rejects(hub.client(DC1, 300).report(report('DC3', notices('gone', 500))), (e: Error & { code?: string }) => e.code === 'DEADLINE_EXCEEDED');
    await waitFor('the hub saw the caller go', () => hubLog.lines.some((l) => /the caller went away/.test(l.msg) && l.method === 'pwsync.v1.ReportRequest'));
  } finally {
    release();
    gate = undefined;
  }
  const [stopped] = await waitFor('the report stopped', () => (hubLog.events(6980).length > 0 ? hubLog.events(6980) : undefined));
  assert.equal(stopped!.method, 'pwsync.v1.ReportRequest');
  assert.equal(await storedFor('gone'), 0);
  assert.ok(!(await hub.registry.listDcs()).some((d) => d.sourceDc === 'DC3'), 'its liveness was not recorded either');
  // The hub serves the next report as usual.
  assert.equal((await hub.client(DC1).report(report('DC3', notices('after', 3)))).storedNoticeIds.length, 3);
});

test('control characters in a report\'s domain or host name refuse it (6979); a notice with one is left out, the others stored', async () => {
  for (const [req, field] of [[report('DC\n4', []), /source_dc holds the control character \\u000a at position 2/], [report('DC4', [], { domain: 'pwsync.test\u0000' }), /domain holds the control character \\u0000/]] as const) {
    await assert.rejects(hub.client(DC1).report(req), (e: Error & { code?: string }) => e.code === 'INVALID_ARGUMENT' && field.test(e.message) && /event 6979/.test(e.message));
  }
  const bad = [notice('ctl1', { distinguishedName: 'CN=\u001b[2Jctl1' }), notice('ctl2', { samAccountName: 'ctl2\u0000' }), notice('ctl3', { userPrincipalName: 'ctl3\n@pwsync.test' })];
  const good = notice('ctl4');
  const res = await hub.client(DC1).report(report('DC4', [...bad, good]));
  assert.deepEqual(res.storedNoticeIds.map((id) => Buffer.from(id).toString('hex')), [good.noticeId.toString('hex')]);
  assert.equal(await storedFor('ctl'), 1);
  assert.ok(hubLog.lines.some((l) => /cannot be read; not stored/.test(l.msg) && /distinguished_name holds the control character \\u001b/.test(String(l.problem))));
});

test('invalid UTF-8 in a report: a notice with it is left out; in the report\'s own fields it refuses the call', async () => {
  const raw = rawHubClient({ address: hub.address, ca: readFileSync(hub.caFile), serverName: 'localhost', metadata: { [PRINCIPAL_HEADER]: DC1 } });
  try {
    const bad = notice('u8#1', { userPrincipalName: '', distinguishedName: '' });
    const good = notice('u8ok');
    const res = await raw.report(report('DC5', [bad, good]), [['u8#1', Buffer.from([0x75, 0x38, 0xff, 0x31])]]);
    assert.deepEqual(res.storedNoticeIds.map((id) => Buffer.from(id).toString('hex')), [good.noticeId.toString('hex')]);
    assert.ok(hubLog.events(6979).some((l) => l.field === 'notices[0].account.sam_account_name'));
    await assert.rejects(raw.report(report('DC#6', [notice('u8x')]), [['DC#6', Buffer.from([0x44, 0x43, 0xed, 0x36])]]),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /^source_dc is not valid UTF-8 \(event 6979\)/.test(e.details));
    assert.equal(await storedFor('u8x'), 0);
  } finally {
    raw.close();
  }
});
