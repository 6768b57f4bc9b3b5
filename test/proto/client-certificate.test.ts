import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { generateTlsMaterial, issueClientCertificate, type TlsMaterial } from '../../core/tls-gen.ts';
import {
  certificateAndKerberosServer, certificateServer, createFailoverClient, createHubServer, createSubmitClient, dcNameOf, DeliveryError, tlsOnlyClient, tlsOnlyServer,
  type CallerIdentity, type ServerAuthenticator, type SubmitClientOptions,
} from '../../proto/channel.ts';

/**
 * TLS client certificates on the notifier→hub channel: a hub with a client CA hears only callers
 * whose certificate that CA issued and which is valid now, and names each by the DNS name in it.
 * Every other caller is refused in the handshake, and the notifier's error says what to fix.
 */
let tls: TlsMaterial;
let foreign: TlsMaterial;
const open: Array<{ close(graceMs: number): Promise<void> }> = [];
const clients: Array<{ close(): void }> = [];

before(async () => {
  tls = await generateTlsMaterial({ hosts: ['localhost', '127.0.0.1'] });
  foreign = await generateTlsMaterial({ hosts: ['localhost', '127.0.0.1'] });
});

after(async () => {
  for (const c of clients) c.close();
  await Promise.all(open.map((s) => s.close(1000)));
});

function logged(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { log: pino({ level: 'debug' }, { write: (s: string) => { lines.push(JSON.parse(s) as Record<string, unknown>); } }), lines };
}

async function hub(auth: ServerAuthenticator): Promise<{ address: string; callers: CallerIdentity[] }> {
  const callers: CallerIdentity[] = [];
  const server = await createHubServer({
    listen: '127.0.0.1:0', tlsCert: Buffer.from(tls.certPem), tlsKey: Buffer.from(tls.keyPem), clientCa: Buffer.from(tls.caCertPem),
    maxMessageBytes: 64 * 1024, auth, hubId: 'hub-test',
    submit: async (req, caller) => {
      callers.push(caller);
      return req.changes.map((c) => ({ changeId: c.changeId, status: 'ACCEPTED_DURABLE' }));
    },
  });
  open.push(server);
  return { address: `127.0.0.1:${server.port}`, callers };
}

function client(address: string, own?: { certPem: string; keyPem: string }, over: Partial<SubmitClientOptions> = {}) {
  const c = createSubmitClient({
    address, ca: Buffer.from(tls.caCertPem), serverName: 'localhost', auth: tlsOnlyClient(), timeoutMs: 5000,
    ...(own ? { clientCertificate: { cert: Buffer.from(own.certPem), key: Buffer.from(own.keyPem) } } : {}), ...over,
  });
  clients.push(c);
  return c;
}

const issue = (from: TlsMaterial, dc: string, validity?: { from: Date; to: Date }) =>
  issueClientCertificate({ caCertPem: from.caCertPem, caKeyPem: from.caKeyPem, dc, ...(validity ? { validity } : {}) });

const change = {
  changeId: Buffer.alloc(16, 7), domain: 'corp.example.com', sourceDc: 'dc1.corp.example.com', changeTimeMs: 1767225600000,
  account: { samAccountName: 'alice', objectGuid: '', objectSid: '', userPrincipalName: '', distinguishedName: '' },
  sealedPassword: Buffer.alloc(100, 0xa5),
};

async function refusal(p: Promise<unknown>): Promise<DeliveryError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof DeliveryError, `expected a DeliveryError, got ${String(e)}`);
    return e;
  }
  assert.fail('the call succeeded');
}

test('a certificate from the client CA is heard, and the caller is the DC its certificate names', async () => {
  const { log, lines } = logged();
  const { address, callers } = await hub(certificateServer({ log }));
  const acks = await client(address, await issue(tls, 'dc1.corp.example.com')).submit({ changes: [change] });
  assert.equal(acks[0]?.status, 'ACCEPTED_DURABLE');
  assert.deepEqual(callers.map((c) => [c.principal, c.mechanism]), [['dc1.corp.example.com', 'certificate']]);
  assert.ok(lines.some((l) => l['msg'] === 'caller authenticated by its client certificate' && l['principal'] === 'dc1.corp.example.com'));
});

test('no certificate, a foreign CA\'s, an expired one, or the hub\'s own server certificate: refused in the handshake, saying what to fix', async () => {
  const { log } = logged();
  const { address, callers } = await hub(certificateServer({ log }));

  const none = await refusal(client(address).submit({ changes: [change] }));
  assert.equal(none.code, 'UNAVAILABLE');
  assert.equal(none.retryable, true, 'the change stays queued and is retried');
  assert.equal(none.eventId, 6977);
  assert.match(none.message, /requires a TLS client certificate \(hub\.tls\.clientCa\) and this notifier sent none: issue this DC one with `pwsync tls client --ca-dir DIR --dc HOST --out DIR` and set targets\[\]\.tls\.cert/);

  const other = await refusal(client(address, await issue(foreign, 'dc1.corp.example.com')).submit({ changes: [change] }));
  assert.equal(other.eventId, 6977);
  assert.equal(other.retryable, true);
  assert.match(other.message, /refused this DC's client certificate \(targets\[\]\.tls\.cert: CN=dc1\.corp\.example\.com, issued by CN=pwsync CA [0-9a-f]+, valid .*\) in the TLS handshake: it must be issued by the CA the hub names in hub\.tls\.clientCa/);

  const day = 86_400_000;
  const old = await issue(tls, 'dc1.corp.example.com', { from: new Date(Date.now() - 10 * day), to: new Date(Date.now() - day) });
  const expired = await refusal(client(address, old).submit({ changes: [change] }));
  assert.equal(expired.eventId, 6977);
  assert.match(expired.message, /refused this DC's client certificate .*: it has expired; renew it with `pwsync tls client .*` --force/);

  const serverCert = await refusal(client(address, { certPem: tls.certPem, keyPem: tls.keyPem }).submit({ changes: [change] }));
  assert.equal(serverCert.eventId, 6977, 'a certificate for server use only is no client certificate');

  assert.deepEqual(callers, [], 'no refused caller reached the handler');
  // A certificate with another one's key (a mixed-up YAML) is refused before any connection.
  assert.throws(() => client(address, { certPem: old.certPem, keyPem: foreign.keyPem }), /client certificate and key cannot be used together \(targets\[\]\.tls\.cert, targets\[\]\.tls\.key\)/);
});

test('a hub without a client CA asks for no certificate: a notifier that has one is heard by TLS alone; the certificate authenticator there refuses', async () => {
  const plain = async (auth: ServerAuthenticator): Promise<string> => {
    const server = await createHubServer({
      listen: '127.0.0.1:0', tlsCert: Buffer.from(tls.certPem), tlsKey: Buffer.from(tls.keyPem), maxMessageBytes: 64 * 1024,
      auth, hubId: 'hub-test', submit: async () => [],
    });
    open.push(server);
    return `127.0.0.1:${server.port}`;
  };
  const own = await issue(tls, 'dc1.corp.example.com');
  assert.equal((await client(await plain(tlsOnlyServer()), own).ping()).hubId, 'hub-test');
  const e = await refusal(client(await plain(certificateServer({ log: pino({ level: 'silent' }) })), own).ping());
  // Without a client CA the handshake verified no certificate: a set-up error, said as such.
  assert.equal(e.code, 'UNAUTHENTICATED');
  assert.match(e.message, /presented no verified TLS client certificate: the hub requires one from hub\.tls\.clientCa/);
});

test('a client CA file without a certificate is refused before the hub binds', async () => {
  await assert.rejects(createHubServer({
    listen: '127.0.0.1:0', tlsCert: Buffer.from(tls.certPem), tlsKey: Buffer.from(tls.keyPem), clientCa: Buffer.from('nothing'),
    maxMessageBytes: 64 * 1024, auth: certificateServer({ log: pino({ level: 'silent' }) }), hubId: 'hub-test', submit: async () => [],
  }), /hub\.tls\.clientCa cannot be used \(no PEM certificate in it\)/);
});

test('the DC name comes from the one DNS name of the subjectAltName; none, several or a wildcard name no DC', () => {
  const peer = (subjectaltname: string | undefined): PeerCertificate => ({ subject: { CN: 'x' }, serialNumber: '01', ...(subjectaltname ? { subjectaltname } : {}) } as unknown as PeerCertificate);
  assert.deepEqual(dcNameOf(peer('DNS:DC1.corp.example.com')), { name: 'dc1.corp.example.com' });
  assert.deepEqual(dcNameOf(peer('IP Address:10.0.0.1, DNS:dc1.corp.example.com')), { name: 'dc1.corp.example.com' });
  const none = dcNameOf(peer(undefined));
  assert.ok('reason' in none && /CN=x, serial 01\) names no DNS name .*`pwsync tls client --dc/.test(none.reason), JSON.stringify(none));
  const two = dcNameOf(peer('DNS:dc1.corp.example.com, DNS:dc2.corp.example.com'));
  assert.ok('reason' in two && /names 2 DNS names \(dc1\.corp\.example\.com, dc2\.corp\.example\.com\)/.test(two.reason));
  const wild = dcNameOf(peer('DNS:*.corp.example.com'));
  assert.ok('reason' in wild && /"\*\.corp\.example\.com", which is not a host's DNS name/.test(wild.reason));
});

test('certificate and Kerberos together: both required, the caller named by Kerberos, the certificate\'s DC kept beside it', async () => {
  const { log, lines } = logged();
  const kerberos: ServerAuthenticator = {
    authenticate: async (md, peer) => {
      if (md.get('authorization')[0] !== 'Negotiate dGVzdA==') throw new Error('no ticket');
      return { principal: 'DC1$@CORP.EXAMPLE.COM', mechanism: 'kerberos', peer };
    },
  };
  const { address, callers } = await hub(certificateAndKerberosServer(kerberos, { log }));
  const own = await issue(tls, 'dc1.corp.example.com');
  const withTicket = {
    start: async () => {
      const metadata = new grpc.Metadata();
      metadata.set('authorization', 'Negotiate dGVzdA==');
      return { metadata, verifyReply: async () => {} };
    },
  };
  await client(address, own, { auth: withTicket }).submit({ changes: [change] });
  assert.deepEqual(callers.map((c) => [c.principal, c.mechanism, c.certificate]), [['DC1$@CORP.EXAMPLE.COM', 'kerberos', 'dc1.corp.example.com']]);
  const noTicket = await refusal(client(address, own).submit({ changes: [change] }));
  assert.equal(noTicket.code, 'UNAUTHENTICATED');
  assert.match(noTicket.message, /no ticket/);
  const noCertificate = await refusal(client(address, undefined, { auth: withTicket }).submit({ changes: [change] }));
  assert.equal(noCertificate.eventId, 6977);
  assert.equal(callers.length, 1);
  assert.ok(!lines.some((l) => l['eventId'] === 6977), 'a handshake refusal never reaches the authenticator');
});

test('failover: hubs that all refuse the certificate in the handshake are tried in turn, and the failure is still told as 6977', async () => {
  const { log } = logged();
  const a = await hub(certificateServer({ log }));
  const b = await hub(certificateServer({ log }));
  const own = await issue(foreign, 'dc1.corp.example.com');
  const f = createFailoverClient([a.address, b.address].map((address) => ({ address, client: client(address, own) })));
  const e = await refusal(f.submit({ changes: [change] }));
  assert.equal(e.eventId, 6977);
  assert.equal(e.retryable, true);
  assert.match(e.message, /none of the target's 2 hubs could be reached .*must be issued by the CA the hub names in hub\.tls\.clientCa.*; 127\.0\.0\.1:\d+: the hub at .*must be issued by the CA/);
});
