import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DOMAIN, Lab, until } from '../../cli/lab.ts';
import { sampleConnectors } from '../../cli/samples.ts';
import { recipientFromPem, seal } from '../../core/envelope.ts';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { loadHubConfig } from '../../config/load.ts';
import { queryStatus } from '../../hub/admin.ts';
import { startHub, type RunningHub } from '../../hub/service.ts';
import { createSubmitClient, tlsOnlyClient, type SealedChange } from '../../proto/channel.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * A change time in the future at the hub's front door, over real gRPC/TLS: refused (never stored)
 * beyond the hub's clock plus hub.clockTolerance (5m by default) with event 6974 naming the DC and
 * the skew; within the tolerance, or in the past, accepted.
 */
let lab: Lab;
let hub: RunningHub;
let client: ReturnType<typeof createSubmitClient>;
let logFile: string;

const MINUTE = 60_000;
const YEAR_9999 = Date.UTC(9999, 11, 31, 23, 59, 59);

function change(sam: string, changeTime: number, sourceDc = 'dc1.corp.example.com'): SealedChange {
  const changeId = randomBytes(16);
  const binding = { changeId, changeTime, domain: DOMAIN, samAccountName: sam, objectGuid: '', objectSid: '', upn: '', dn: '', sourceHost: sourceDc };
  const sealed = seal(recipientFromPem(readFileSync(path.join(lab.root, 'keys', 'hub.pub'))), binding, Secret.adopt(testPassword(`future-${sam}`)));
  return {
    changeId, domain: DOMAIN, sourceDc, changeTimeMs: changeTime, sealedPassword: sealed,
    account: { samAccountName: sam, objectGuid: '', objectSid: '', userPrincipalName: '', distinguishedName: '' },
  };
}

const logLines = (): Array<Record<string, unknown>> => readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

before(async () => {
  lab = await Lab.create({ root: testDir('change-time'), connectors: sampleConnectors().filter((c) => c.name === 'hr-csv') });
  logFile = path.join(lab.root, 'logs', 'change-time.log');
  hub = await startHub(await loadHubConfig(lab.hubConfig), createLogger({ level: 'info', file: logFile, sync: true }));
  client = createSubmitClient({ address: `127.0.0.1:${hub.port}`, ca: readFileSync(path.join(lab.root, 'tls', 'ca.pem')), auth: tlsOnlyClient(), timeoutMs: 10_000 });
});

after(async () => {
  client?.close();
  await hub?.stop();
});

test('a change stamped beyond the clock tolerance is refused with 6974 naming the DC and the skew, never stored; the one beside it is', async () => {
  const cases: Array<[string, number, RegExp]> = [
    ['year 9999', YEAR_9999, /change time 9999-12-31T23:59:59\.000Z is \d+d ahead of this clock/],
    ['2^53-1 ms, past what a Date holds', Number.MAX_SAFE_INTEGER, /change time 9007199254740991 \(not a valid time\) is \d+d ahead/],
    ['now + 10 minutes', Date.now() + 10 * MINUTE, /is 1\dm ahead of this clock .* beyond the clock tolerance of 5m/],
  ];
  const good = change('alice', Date.now());
  const bad = cases.map(([, t], i) => change('carol', t, `dc${i + 2}.corp.example.com`));
  const acks = await client.submit({ notifierId: 'test', changes: [bad[0]!, good, bad[1]!, bad[2]!] });
  assert.deepEqual(acks.map((a) => a.status), ['REJECTED', 'ACCEPTED_DURABLE', 'REJECTED', 'REJECTED']);
  for (const [i, [what, , reason]] of cases.entries()) {
    const ack = acks[i === 0 ? 0 : i + 1]!;
    assert.match(ack.reason, reason, what);
    assert.match(ack.reason, new RegExp(`event 6974, from dc${i + 2}\\.corp\\.example\\.com as `), what);
    assert.match(ack.reason, /set the DC's clock right/, what);
  }
  await until('the good change applied', 30_000, async () => (await queryStatus(hub.state, { account: { samAccountName: 'alice' } })).operations.find((o) => o.state === 'successful'));
  const carol = await queryStatus(hub.state, { account: { samAccountName: 'carol' } });
  assert.deepEqual([carol.sync, carol.operations], [[], []], 'nothing of the refused changes was stored');
  const events = await until('three 6974 events in the log', 10_000, () => {
    const e = logLines().filter((l) => l.eventId === 6974);
    return e.length === 3 ? e : undefined;
  });
  for (const [i, e] of events.entries()) {
    assert.equal(e.sourceDc, `dc${i + 2}.corp.example.com`);
    assert.equal(e.account, 'carol');
    assert.equal(typeof e.caller, 'string');
    assert.ok((e.skewMs as number) > 5 * MINUTE, 'the skew is named');
    assert.equal(e.clockToleranceMs, 5 * MINUTE);
  }
});

test('a change within the tolerance, or stamped in the past, is accepted and applied', async () => {
  // Oldest first, so that latest wins applies each one in turn.
  const cases: Array<[string, number]> = [
    ['in the year 2001 (accepted: latest wins makes it lose to anything newer; it freezes no one)', Date.UTC(2001, 0, 1)],
    ['now', Date.now()],
    ['now + 2 minutes (a DC clock slightly ahead)', Date.now() + 2 * MINUTE],
  ];
  for (const [what, t] of cases) {
    const c = change('bob', t);
    const acks = await client.submit({ notifierId: 'test', changes: [c] });
    assert.equal(acks[0]!.status, 'ACCEPTED_DURABLE', what);
    const op = await until(`${what}: settled`, 30_000, async () => (await queryStatus(hub.state, { account: { samAccountName: 'bob' } })).operations
      .find((o) => o.changeId === c.changeId!.toString('hex') && (o.state === 'successful' || o.state === 'failed')));
    assert.equal(op.state, 'successful', `${what}: ${op.reason ?? ''}`);
  }
});
