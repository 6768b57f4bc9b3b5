import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { PwsyncError } from '../../core/errors.ts';
import { generateTlsMaterial, type TlsMaterial } from '../../core/tls-gen.ts';
import { freePort } from '../../cli/lab.ts';
import {
  createFailoverClient, createHubServer, createSubmitClient, DeliveryError, HubRefusal, tlsOnlyClient, tlsOnlyServer,
  type CallerIdentity, type ChangeAck, type ClientAuthenticator, type HubServerOptions, type SubmitClientOptions,
  type SubmitRequest, type SubmitRequest__Output,
} from '../../proto/channel.ts';
import { capturingLog, waitFor } from '../notifier/helpers.ts';

const MAX = 64 * 1024;
let tls: TlsMaterial;
let otherTls: TlsMaterial;
const open: Array<{ close(graceMs: number): Promise<void> }> = [];
const clients: Array<{ close(): void }> = [];

before(async () => {
  tls = await generateTlsMaterial({ hosts: ['localhost', '127.0.0.1'] });
  otherTls = await generateTlsMaterial({ hosts: ['localhost', '127.0.0.1'] });
});

after(async () => {
  for (const c of clients) c.close();
  await Promise.all(open.map((s) => s.close(1000)));
});

type Submit = HubServerOptions['submit'];
const acceptAll: Submit = async (req) => req.changes.map((c) => ({ changeId: c.changeId, status: 'ACCEPTED_DURABLE' }));

async function hub(over: Partial<HubServerOptions> = {}): Promise<{ address: string; calls: SubmitRequest__Output[] }> {
  const calls: SubmitRequest__Output[] = [];
  const submit = over.submit ?? acceptAll;
  const server = await createHubServer({
    listen: '127.0.0.1:0', tlsCert: Buffer.from(tls.certPem), tlsKey: Buffer.from(tls.keyPem), maxMessageBytes: MAX,
    auth: tlsOnlyServer(), hubId: 'hub-test', ...over,
    submit: async (req, caller, signal) => {
      calls.push(req);
      return submit(req, caller, signal);
    },
  });
  open.push(server);
  return { address: `127.0.0.1:${server.port}`, calls };
}

function client(address: string, over: Partial<SubmitClientOptions> = {}) {
  const c = createSubmitClient({ address, ca: Buffer.from(tls.caCertPem), auth: tlsOnlyClient(), timeoutMs: 5000, ...over });
  clients.push(c);
  return c;
}

function change(n: number, sealedBytes = 200): NonNullable<SubmitRequest['changes']>[number] {
  return {
    changeId: Buffer.alloc(16, n), domain: 'example.test', sourceDc: 'dc1.example.test', changeTimeMs: 1767225600000 + n,
    account: { samAccountName: `user${n}`, objectGuid: '', objectSid: '', userPrincipalName: '', distinguishedName: '' },
    sealedPassword: Buffer.alloc(sealedBytes, 0xa5),
  };
}

async function deliveryError(p: Promise<unknown>): Promise<DeliveryError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof DeliveryError, `expected a DeliveryError, got ${String(e)}`);
    return e;
  }
  assert.fail('the call succeeded');
}

function rawCall(address: string, body: Buffer): Promise<grpc.ServiceError | null> {
  const raw = new grpc.Client(address, grpc.credentials.createSsl(Buffer.from(tls.caCertPem)));
  clients.push(raw);
  return new Promise((resolve) => {
    raw.makeUnaryRequest('/pwsync.v1.PasswordSync/Submit', (b: Buffer) => b, (b: Buffer) => b, body,
      new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err) => resolve(err));
  });
}

test('a batch goes over TLS and comes back acknowledged, one ack per change in order', async () => {
  let seenCaller: CallerIdentity | undefined;
  const { address, calls } = await hub({
    submit: async (req, caller) => {
      seenCaller = caller;
      return req.changes.map((c, i) => ({ changeId: c.changeId, status: i === 1 ? 'DUPLICATE' : 'ACCEPTED_DURABLE' }));
    },
  });
  const c = client(address);
  const acks = await c.submit({ notifierId: 'dc1', changes: [change(1), change(2), change(3)] });
  assert.deepEqual(acks.map((a) => [a.changeId.toString('hex'), a.status]), [
    [Buffer.alloc(16, 1).toString('hex'), 'ACCEPTED_DURABLE'],
    [Buffer.alloc(16, 2).toString('hex'), 'DUPLICATE'],
    [Buffer.alloc(16, 3).toString('hex'), 'ACCEPTED_DURABLE'],
  ]);
  const got = calls[0]!;
  assert.equal(got.notifierId, 'dc1');
  assert.equal(got.changes[1]!.changeTimeMs, 1767225600002);
  assert.equal(got.changes[1]!.account?.samAccountName, 'user2');
  assert.deepEqual(got.changes[2]!.sealedPassword, Buffer.alloc(200, 0xa5));
  assert.equal(seenCaller?.principal, 'anonymous@tls');
  assert.equal(seenCaller?.mechanism, 'tls');
  assert.match(seenCaller?.peer ?? '', /127\.0\.0\.1/);
  assert.deepEqual(await c.ping(), { hubId: 'hub-test', version: '0.1.0' });
});

test('serverName selects the name checked in the hub certificate', async () => {
  const { address } = await hub();
  assert.equal((await client(address, { serverName: 'localhost' }).ping()).hubId, 'hub-test');
  const e = await deliveryError(client(address, { serverName: 'hub.elsewhere.test' }).ping());
  assert.equal(e.code, 'UNAVAILABLE');
  assert.match(e.message, /does not name "hub\.elsewhere\.test".*targets\[\]\.tls\.serverName/);
});

test('a client trusting another CA is refused with a message naming targets[].tls.ca', async () => {
  const { address, calls } = await hub();
  const e = await deliveryError(client(address, { ca: Buffer.from(otherTls.caCertPem) }).submit({ changes: [change(1)] }));
  assert.equal(e.code, 'UNAVAILABLE');
  assert.equal(e.retryable, true);
  assert.match(e.message, /certificate is not signed by the CA in targets\[\]\.tls\.ca/);
  assert.equal(calls.length, 0);
});

test('a CA file without a certificate is refused before any connection', () => {
  assert.throws(() => createSubmitClient({ address: '127.0.0.1:1', ca: Buffer.alloc(0), auth: tlsOnlyClient(), timeoutMs: 1000 }), /targets\[\]\.tls\.ca/);
});

test('nothing listening: the message asks whether the hub is running there', async () => {
  const server = await createHubServer({
    listen: '127.0.0.1:0', tlsCert: Buffer.from(tls.certPem), tlsKey: Buffer.from(tls.keyPem), maxMessageBytes: MAX,
    auth: tlsOnlyServer(), hubId: 'gone', submit: acceptAll,
  });
  await server.close(0);
  const address = `127.0.0.1:${server.port}`;
  const e = await deliveryError(client(address).submit({ changes: [change(1)] }));
  assert.equal(e.code, 'UNAVAILABLE');
  assert.equal(e.retryable, true);
  assert.ok(e.message.includes(`is the hub running at ${address}?`), e.message);
});

test('an oversized request gets RESOURCE_EXHAUSTED and the hub keeps serving', async () => {
  const { address, calls } = await hub();
  const c = client(address);
  const e = await deliveryError(c.submit({ changes: [change(1, MAX + 1)] }));
  assert.equal(e.code, 'RESOURCE_EXHAUSTED');
  assert.match(e.message, /batchSize|maxMessageBytes/);
  assert.equal(calls.length, 0);
  assert.equal((await c.submit({ changes: [change(2)] })).length, 1);
});

test('a body that is not protobuf gets INVALID_ARGUMENT with a clear message, and the hub keeps serving', async () => {
  const { address, calls } = await hub();
  const err = await rawCall(address, Buffer.from([0xff, 0xff, 0xff, 0xff]));
  assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
  assert.match(err?.details ?? '', /not a valid pwsync\.v1\.SubmitRequest.*same proto\/pwsync\.proto/);
  assert.equal(calls.length, 0);
  assert.equal(await rawCall(address, Buffer.alloc(0)), null, 'an empty body is an empty, valid batch');
  assert.equal((await client(address).submit({ changes: [change(1)] })).length, 1);
});

test('handler failures map to status codes the notifier can act on', async () => {
  const cases: Array<[unknown, string, boolean, RegExp]> = [
    [new HubRefusal('unavailable', 'the state store is busy'), 'UNAVAILABLE', true, /state store is busy/],
    [new HubRefusal('malformed', 'change 2 has no change id'), 'INVALID_ARGUMENT', false, /change 2 has no change id/],
    [new HubRefusal('forbidden', 'dc9 is not a domain controller of example.test'), 'PERMISSION_DENIED', false, /not a domain controller/],
    [new HubRefusal('unauthenticated', 'no ticket'), 'UNAUTHENTICATED', false, /no ticket/],
    [new PwsyncError(6943, 'queue database locked', { retryable: true }), 'UNAVAILABLE', true, /queue database locked/],
    [new Error('bug in ingest'), 'INTERNAL', true, /bug in ingest/],
  ];
  for (const [thrown, code, retryable, message] of cases) {
    const { address } = await hub({ submit: async () => { throw thrown; } });
    const e = await deliveryError(client(address).submit({ changes: [change(1)] }));
    assert.equal(e.code, code, String(thrown));
    assert.equal(e.retryable, retryable, String(thrown));
    assert.match(e.message, message);
  }
});

test('a hub answering the wrong number of acks is an error, not a delivery', async () => {
  const { address } = await hub({ submit: async (): Promise<ChangeAck[]> => [] });
  const e = await deliveryError(client(address).submit({ changes: [change(1)] }));
  assert.equal(e.code, 'INTERNAL');
  assert.match(e.message, /0 acknowledgements for 1 changes/);
});

test('a server authenticator that refuses makes the call UNAUTHENTICATED before submit runs', async () => {
  const { address, calls } = await hub({
    auth: { authenticate: async () => { throw new Error('ticket expired'); } },
  });
  const e = await deliveryError(client(address).submit({ changes: [change(1)] }));
  assert.equal(e.code, 'UNAUTHENTICATED');
  assert.equal(e.retryable, false);
  assert.match(e.message, /ticket expired/);
  assert.equal(calls.length, 0);
});

test('caller metadata reaches the hub, and the reply is verified before any ack is believed', async () => {
  const { address, calls } = await hub({
    auth: {
      authenticate: async (md, peer) => {
        const token = md.get('x-pwsync-token')[0];
        if (token !== 'ap-req') throw new Error(`no token (${String(token)})`);
        return { principal: 'DC1$@EXAMPLE.TEST', mechanism: 'kerberos', peer };
      },
      replyMetadata: (identity) => {
        const md = new grpc.Metadata();
        md.set('x-pwsync-reply', `ap-rep for ${identity.principal}`);
        return md;
      },
    },
  });
  const events: string[] = [];
  const auth = (verdict: 'accept' | 'reject'): ClientAuthenticator => ({
    start: async () => {
      const metadata = new grpc.Metadata();
      metadata.set('x-pwsync-token', 'ap-req');
      return {
        metadata,
        verifyReply: async (md) => {
          events.push(`verify ${String(md.get('x-pwsync-reply')[0])}`);
          if (verdict === 'reject') throw new Error('the reply token is not from the hub');
        },
      };
    },
  });
  const acks = await client(address, { auth: auth('accept') }).submit({ changes: [change(1)] });
  events.push('acks');
  assert.equal(acks.length, 1);
  assert.deepEqual(events, ['verify ap-rep for DC1$@EXAMPLE.TEST', 'acks']);

  const e = await deliveryError(client(address, { auth: auth('reject') }).submit({ changes: [change(2)] }));
  assert.equal(e.code, 'UNAUTHENTICATED');
  assert.match(e.message, /did not prove the hub's identity.*not from the hub.*nothing in the batch is taken as delivered/);
  assert.equal(calls.length, 2, 'the hub stored it; the notifier just does not believe the answer');
  const refusedByHub = await deliveryError(client(address).submit({ changes: [change(3)] }));
  assert.equal(refusedByHub.code, 'UNAUTHENTICATED');
});

test('a hub slower than the deadline gives a retryable DEADLINE_EXCEEDED naming the timeout', async () => {
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => { release = resolve; });
  const { address } = await hub({ submit: async (req, caller, signal) => { await released; return acceptAll(req, caller, signal); } });
  try {
    const e = await deliveryError(client(address, { timeoutMs: 300 }).submit({ changes: [change(1)] }));
    assert.equal(e.code, 'DEADLINE_EXCEEDED');
    assert.equal(e.retryable, true);
    assert.match(e.message, /within 300 ms \(targets\[\]\.timeout\)/);
  } finally {
    release();
  }
});

test('a caller gone past its deadline aborts the handler\'s signal and the hub logs 6980; an answered call never aborts it', async () => {
  const log = capturingLog();
  const signals: AbortSignal[] = [];
  let slow = true;
  const { address } = await hub({
    log: log.log,
    submit: async (req, caller, signal) => {
      signals.push(signal);
      if (slow) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      signal.throwIfAborted();
      return acceptAll(req, caller, signal);
    },
  });
  const e = await deliveryError(client(address, { timeoutMs: 300 }).submit({ changes: [change(1)] }));
  assert.equal(e.code, 'DEADLINE_EXCEEDED');
  const [stopped] = await waitFor('6980 logged', () => (log.events(6980).length > 0 ? log.events(6980) : undefined));
  assert.equal(stopped!.method, 'pwsync.v1.SubmitRequest');
  assert.equal(signals[0]!.aborted, true);

  slow = false;
  const c = client(address);
  assert.equal((await c.submit({ changes: [change(2)] }))[0]!.status, 'ACCEPTED_DURABLE');
  // grpc-js signals 'cancelled' when the stream closes after an answer too: that is no caller gone.
  await c.submit({ changes: [change(3)] });
  assert.equal(signals.length, 3);
  assert.deepEqual(signals.slice(1).map((s) => s.aborted), [false, false]);
  assert.equal(log.events(6980).length, 1);
});

test('the hub refuses unusable TLS material and a port in use with clear messages', async () => {
  const base = { maxMessageBytes: MAX, auth: tlsOnlyServer(), hubId: 'x', submit: acceptAll };
  await assert.rejects(createHubServer({ ...base, listen: '127.0.0.1:0', tlsCert: Buffer.from(tls.certPem), tlsKey: Buffer.from(otherTls.keyPem) }),
    /TLS certificate and key cannot be used together \(hub\.tls\.cert, hub\.tls\.key\)/);
  const { address } = await hub();
  await assert.rejects(createHubServer({ ...base, listen: address, tlsCert: Buffer.from(tls.certPem), tlsKey: Buffer.from(tls.keyPem) }),
    /another process uses it/);
});

test('close() ends an in-flight call within the grace period', async () => {
  let entered: () => void = () => {};
  const inHandler = new Promise<void>((resolve) => { entered = resolve; });
  const server = await createHubServer({
    listen: '127.0.0.1:0', tlsCert: Buffer.from(tls.certPem), tlsKey: Buffer.from(tls.keyPem), maxMessageBytes: MAX,
    auth: tlsOnlyServer(), hubId: 'closing',
    submit: () => {
      entered();
      return new Promise<ChangeAck[]>(() => {});
    },
  });
  const pending = client(`127.0.0.1:${server.port}`).submit({ changes: [change(1)] });
  pending.catch(() => {});
  await inHandler;
  await server.close(200);
  const e = await deliveryError(pending);
  assert.equal(e.retryable, true);
});

test('failover: a target with several hubs moves on from one that cannot be reached, stays with the one that answers, and passes refusals through', async () => {
  const down = `127.0.0.1:${await freePort()}`;
  const up = await hub({ hubId: 'hub-b' });
  const f = createFailoverClient([down, up.address].map((address) => ({ address, client: client(address, { timeoutMs: 2000 }) })));
  clients.push(f);
  const acks = await f.submit({ changes: [change(7)] });
  assert.deepEqual(acks.map((a) => a.status), ['ACCEPTED_DURABLE']);
  assert.equal(f.current(), up.address);
  assert.equal(up.calls.length, 1);
  assert.equal((await f.ping()).hubId, 'hub-b', 'later calls go to the hub that answered');

  const refusing = await hub({ hubId: 'hub-c', submit: async () => { throw new HubRefusal('forbidden', 'not a DC of example.test'); } });
  const spare = await hub({ hubId: 'hub-d' });
  const g = createFailoverClient([refusing.address, spare.address].map((address) => ({ address, client: client(address) })));
  clients.push(g);
  const refused = await deliveryError(g.submit({ changes: [change(8)] }));
  assert.equal(refused.retryable, false, refused.message);
  assert.equal(spare.calls.length, 0, 'a refusal is not sent on to the next hub: it would refuse too');

  const allDown = createFailoverClient([down, `127.0.0.1:${await freePort()}`].map((address) => ({ address, client: client(address, { timeoutMs: 2000 }) })));
  clients.push(allDown);
  const e = await deliveryError(allDown.submit({ changes: [change(9)] }));
  assert.equal(e.retryable, true);
  assert.match(e.message, /none of the target's 2 hubs could be reached/);
});
