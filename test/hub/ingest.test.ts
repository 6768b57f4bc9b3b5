import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DOMAIN, Lab } from '../../cli/lab.ts';
import { sampleConnectors } from '../../cli/samples.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { keyringOf, privateRecipientFromPem, recipientFromPem, seal, type Binding } from '../../core/envelope.ts';
import { generateRecipientKeys } from '../../core/keys.ts';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { loadHubConfig } from '../../config/load.ts';
import { queryStatus } from '../../hub/admin.ts';
import { Ingest } from '../../hub/ingest.ts';
import { startHub, type RunningHub } from '../../hub/service.ts';
import type { SealedChange__Output } from '../../proto/generated/pwsync/v1/SealedChange.ts';
import { createSubmitClient, tlsOnlyClient, type SealedChange } from '../../proto/channel.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';
import { until } from '../../cli/lab.ts';
import { rawHubClient } from '../lib/raw-grpc.ts';

/**
 * Bad input at the hub's front door, over real gRPC/TLS to a hub started in this process: each
 * refused change says what is wrong, the good changes beside it are not lost, and the hub keeps
 * serving.
 */
let lab: Lab;
let hub: RunningHub;
let client: ReturnType<typeof createSubmitClient>;

/** A change sealed for `sam`; `as` sets other identifiers in both the header and the message, `sealAs` in the header only. */
function change(sam: string, password: Buffer, opts: { key?: string; sealAs?: Partial<Binding>; domain?: string; as?: Partial<Binding> } = {}): SealedChange {
  const changeId = randomBytes(16);
  const binding: Binding = {
    changeId, changeTime: Date.now(), domain: opts.domain ?? DOMAIN, samAccountName: sam, objectGuid: '', objectSid: '',
    upn: '', dn: '', sourceHost: 'dc1.corp.example.com', ...opts.as,
  };
  const recipient = recipientFromPem(opts.key ?? readFileSync(path.join(lab.root, 'keys', 'hub.pub')));
  const sealed = seal(recipient, { ...binding, ...opts.sealAs }, Secret.adopt(password));
  return {
    changeId, domain: binding.domain, sourceDc: binding.sourceHost, changeTimeMs: binding.changeTime, sealedPassword: sealed,
    account: {
      samAccountName: binding.samAccountName, objectGuid: binding.objectGuid, objectSid: binding.objectSid,
      userPrincipalName: binding.upn, distinguishedName: binding.dn,
    },
  };
}

before(async () => {
  lab = await Lab.create({ root: testDir('ingest'), connectors: sampleConnectors().filter((c) => c.name === 'hr-csv') });
  await lab.startHub();
  await lab.stop(lab.hub);
  hub = await startHub(await loadHubConfig(lab.hubConfig), createLogger({ level: 'warn', file: path.join(lab.root, 'logs', 'ingest.log') }));
  client = createSubmitClient({ address: `127.0.0.1:${hub.port}`, ca: readFileSync(path.join(lab.root, 'tls', 'ca.pem')), auth: tlsOnlyClient(), timeoutMs: 10_000 });
});

after(async () => {
  client?.close();
  await hub?.stop();
});

test('each bad change in a batch is rejected with its reason; the good one beside them is stored', async () => {
  const good = change('alice', testPassword('ingest-good'));
  const wrongKey = change('alice', testPassword('ingest-wrong-key'), { key: generateRecipientKeys().publicPem });
  const otherAccount = change('alice', testPassword('ingest-other'), { sealAs: { samAccountName: 'bob' } });
  const otherDomain = change('alice', testPassword('ingest-domain'), { domain: 'evil.example.org' });
  const shortId = { ...change('alice', testPassword('ingest-id')), changeId: Buffer.alloc(3) };
  const notEnvelope = { ...change('alice', testPassword('ingest-magic')), sealedPassword: randomBytes(200) };
  const noAccount = { ...change('alice', testPassword('ingest-noacct')), account: null };
  const acks = await client.submit({ notifierId: 'test', changes: [good, wrongKey, otherAccount, otherDomain, shortId, notEnvelope, noAccount] });
  assert.deepEqual(acks.map((a) => a.status), ['ACCEPTED_DURABLE', 'REJECTED', 'REJECTED', 'REJECTED', 'REJECTED', 'REJECTED', 'REJECTED']);
  assert.match(acks[1]!.reason, /sealed for key id [0-9a-f]{32}, but this hub opens only [0-9a-f]{32}.*public key/);
  assert.match(acks[2]!.reason, /another samAccountName than the change: it was sealed for another account/);
  assert.match(acks[3]!.reason, /domain "evil\.example\.org" is not served by this hub.*domains:/);
  assert.match(acks[4]!.reason, /change_id must be 16 bytes/);
  assert.match(acks[5]!.reason, /not a pwsync envelope/);
  assert.match(acks[6]!.reason, /sam_account_name is empty/);
  await until('the good change applied', 30_000, async () => (await queryStatus(hub.state, { account: { samAccountName: 'alice' } })).operations.find((o) => o.state === 'successful'));
});

test('an identifier whose bytes are not UTF-8 is refused (6979), even when it reads as the sealed header\'s text; the changes beside it are stored', async () => {
  const raw = rawHubClient({ address: `127.0.0.1:${hub.port}`, ca: readFileSync(path.join(lab.root, 'tls', 'ca.pem')) });
  try {
    // The headers hold U+FFFD (EF BF BD); the messages hold a lone FF or C3, which a lenient decoder reads as U+FFFD too.
    const sam = { ...change('al\uFFFDce', testPassword('utf8-sam')) };
    sam.account = { ...sam.account!, samAccountName: 'al#ce' };
    const dn = change('bob', testPassword('utf8-dn'), { as: { dn: 'CN=b\uFFFDb,DC=corp' } });
    dn.account = { ...dn.account!, distinguishedName: 'CN=b%b,DC=corp' };
    const host = change('bob', testPassword('utf8-host'), { as: { sourceHost: 'dc\uFFFD.corp.example.com' } });
    host.sourceDc = 'dc$.corp.example.com';
    const good = change('alice', testPassword('utf8-good'));
    // The same text sent as valid UTF-8 is no problem: only the bytes were.
    const honest = change('al\uFFFDce', testPassword('utf8-honest'));
    const acks = (await raw.submit({ notifierId: 'raw', changes: [sam, good, dn, host, honest] }, [
      ['al#ce', Buffer.from([0x61, 0x6c, 0xff, 0x63, 0x65])],
      ['CN=b%b', Buffer.from([0x43, 0x4e, 0x3d, 0x62, 0xc3, 0x62])],
      ['dc$.corp', Buffer.from([0x64, 0x63, 0xc0, 0x2e, 0x63, 0x6f, 0x72, 0x70])],
    ])).acks;
    assert.deepEqual(acks.map((a) => a.status), ['REJECTED', 'ACCEPTED_DURABLE', 'REJECTED', 'REJECTED', 'ACCEPTED_DURABLE']);
    assert.deepEqual(acks.map((a) => Buffer.from(a.changeId).toString('hex')), [sam, good, dn, host, honest].map((c) => (c.changeId as Buffer).toString('hex')));
    assert.match(acks[0]!.reason, /^changes\[0\]\.account\.sam_account_name is not valid UTF-8 \(event 6979\)/);
    assert.match(acks[2]!.reason, /^changes\[2\]\.account\.distinguished_name is not valid UTF-8/);
    assert.match(acks[3]!.reason, /^changes\[3\]\.source_dc is not valid UTF-8/);

    // Such a field outside the changes refuses the whole call: nothing in it is acknowledged.
    await assert.rejects(raw.submit({ notifierId: 'dc#1', changes: [change('alice', testPassword('utf8-call'))] }, [['dc#1', Buffer.from([0x64, 0x63, 0xe2, 0x31])]]),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /^notifier_id is not valid UTF-8 \(event 6979\)/.test(e.details));
  } finally {
    raw.close();
  }
});

test('control characters in account names, DNs, domains and host names are refused (6979), naming the field and the character', async () => {
  const cases: Array<[SealedChange, RegExp]> = [
    [change('al\u0000ice', testPassword('ctl-nul')), /^account\.sam_account_name holds the control character \\u0000 at position 2.*\(event 6979\)$/],
    [change('bob', testPassword('ctl-esc'), { as: { dn: 'CN=\u001b[2Jbob,DC=corp' } }), /^account\.distinguished_name holds the control character \\u001b at position 3/],
    [change('bob', testPassword('ctl-lf'), { domain: `${DOMAIN}\nforged` }), /^domain holds the control character \\u000a/],
    [change('bob', testPassword('ctl-host'), { as: { sourceHost: 'dc1\r.corp.example.com' } }), /^source_dc holds the control character \\u000d/],
    [change('bob', testPassword('ctl-upn'), { as: { upn: 'bob\u007f@corp.example.com' } }), /^account\.user_principal_name holds the control character \\u007f/],
  ];
  const good = change('alice', testPassword('ctl-good'));
  const acks = await client.submit({ notifierId: 'test', changes: [...cases.map(([c]) => c), good] });
  for (const [i, [, reason]] of cases.entries()) {
    assert.equal(acks[i]!.status, 'REJECTED', `case ${i}`);
    assert.match(acks[i]!.reason, reason);
  }
  assert.equal(acks.at(-1)!.status, 'ACCEPTED_DURABLE');
});

test('a submit whose caller went away while it was being authorized stores nothing; the same change from a caller still there is stored', async () => {
  const broker = openSqliteBroker({ file: path.join(lab.root, 'gone.db'), groupCommitMs: 2 });
  try {
    const keyring = keyringOf([privateRecipientFromPem(readFileSync(path.join(lab.root, 'keys', 'hub.key')))]);
    const domains = [{ name: DOMAIN, allowReadOnlyDCs: false, dcCacheTtl: 600_000, dcSilentAfter: 7_200_000 }];
    const gone = new AbortController();
    // The caller's cancellation arrives while the DC check runs (the hub server aborts the signal).
    const ingest = new Ingest(broker, keyring, domains, { authorize: async () => gone.abort() }, createLogger({ level: 'fatal' }), 300_000);
    const c = change('dave', testPassword('ingest-gone'));
    const caller = { principal: 'DC1$', mechanism: 'kerberos' as const, peer: 'p' };
    await assert.rejects(ingest.submit([c as SealedChange__Output], caller, gone.signal), { name: 'AbortError' });
    const consumer = await broker.consumer('gone', 'changes.>');
    assert.equal((await consumer.info()).pending, 0);
    const acks = await ingest.submit([c as SealedChange__Output], caller, new AbortController().signal);
    assert.equal(acks[0]!.status, 'ACCEPTED_DURABLE');
    assert.equal((await consumer.info()).pending, 1);
  } finally {
    await broker.close();
  }
});

test('a duplicate change id is acknowledged as such and stored once', async () => {
  const c = change('bob', testPassword('ingest-dup'));
  assert.equal((await client.submit({ notifierId: 'test', changes: [c] }))[0]!.status, 'ACCEPTED_DURABLE');
  assert.equal((await client.submit({ notifierId: 'test', changes: [c] }))[0]!.status, 'DUPLICATE');
  const ops = await until('the change applied', 30_000, async () => {
    const o = (await queryStatus(hub.state, { account: { samAccountName: 'bob' } })).operations;
    return o.some((x) => x.state === 'successful') ? o : undefined;
  });
  assert.equal(ops.length, 1);
});

test('a tampered payload passes the header checks but is refused by the worker with 6946, and nothing else is lost', async () => {
  const tampered = change('carol', testPassword('ingest-tampered'));
  const sealed = Buffer.from(tampered.sealedPassword as Buffer);
  sealed[sealed.length - 20]! ^= 0x01;
  const acks = await client.submit({ notifierId: 'test', changes: [{ ...tampered, sealedPassword: sealed }] });
  assert.equal(acks[0]!.status, 'ACCEPTED_DURABLE');
  const op = await until('the tampered change settled', 30_000, async () => (await queryStatus(hub.state, { account: { samAccountName: 'carol' } })).operations.find((o) => o.state === 'failed'));
  assert.equal(op.eventId, 6946);
  assert.match(op.reason!, /failed authentication/);
  assert.equal(op.attempts, 1, 'never retried');
});

test('an oversized request is refused with RESOURCE_EXHAUSTED and the hub keeps serving', async () => {
  // 5 MB of notifier id: larger than hub.maxMessageBytes (4 MiB by default).
  const big = { notifierId: 'x'.repeat(5 * 1024 * 1024), changes: [change('alice', testPassword('ingest-big'))] };
  await assert.rejects(client.submit(big), (e: Error & { code?: string }) => e.code === 'RESOURCE_EXHAUSTED');
  const acks = await client.submit({ notifierId: 'test', changes: [change('alice', testPassword('ingest-after-big'))] });
  assert.equal(acks[0]!.status, 'ACCEPTED_DURABLE');
});

test('a target file missing at start-up does not stop the hub: its operations wait and retry', async () => {
  await hub.stop();
  const file = lab.targetFile('hr-csv');
  renameSync(file, `${file}.away`);
  hub = await startHub(await loadHubConfig(lab.hubConfig), createLogger({ level: 'warn', file: path.join(lab.root, 'logs', 'ingest.log') }));
  client.close();
  client = createSubmitClient({ address: `127.0.0.1:${hub.port}`, ca: readFileSync(path.join(lab.root, 'tls', 'ca.pem')), auth: tlsOnlyClient(), timeoutMs: 10_000 });
  const acks = await client.submit({ notifierId: 'test', changes: [change('bob', testPassword('ingest-missing'))] });
  assert.equal(acks[0]!.status, 'ACCEPTED_DURABLE');
  const retrying = await until('the operation waits for its file', 30_000, async () => (await queryStatus(hub.state, { account: { samAccountName: 'bob' } })).operations.find((o) => o.state === 'retrying'));
  assert.match(retrying.reason!, /hr\.csv/);
  renameSync(`${file}.away`, file);
  await until('the operation landed once the file was back', 30_000, async () => (await queryStatus(hub.state, { account: { samAccountName: 'bob' } })).operations.find((o) => o.opId === retrying.opId && o.state === 'successful'));
});

test('the hub refuses to start, naming the fix, for a join rule on an unknown attribute or a missing extension', async () => {
  const [csv] = sampleConnectors().filter((c) => c.name === 'hr-csv');
  const cases: Array<[string, typeof csv, RegExp]> = [
    ['unknown join attribute', { ...csv!, join: [{ target: 'logon', source: 'sAMAccountName' }] }, /connector hr-csv: join rule names attribute logon, which its objects do not have \(they have: id, login, name, mail, pwdHash\)/],
    ['missing extension', { ...csv!, extensionModule: path.join(lab.root, 'no-such-extension.ts') }, /no-such-extension\.ts/],
  ];
  for (const [what, connector, message] of cases) {
    const bad = await Lab.create({ root: testDir('hub-start'), connectors: [connector!] });
    const config = await loadHubConfig(bad.hubConfig);
    await assert.rejects(startHub(config, createLogger({ level: 'fatal', file: path.join(bad.root, 'logs', 'start.log') })), message, what);
  }
});
