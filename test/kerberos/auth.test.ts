import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { generateTlsMaterial, type TlsMaterial } from '../../core/tls-gen.ts';
import {
  configureKerberosProcess, createHubServer, createSubmitClient, DeliveryError, kerberosClient, kerberosServer, loadKerberos,
  tlsOnlyClient, tlsOnlyServer, type CallerIdentity, type ClientAuthenticator, type HubServerOptions, type ServerAuthenticator,
  type SubmitRequest,
} from '../../proto/channel.ts';
import { CLIENT_TIME_HEADER, PRINCIPAL_HEADER } from '../../proto/kerberos.ts';
import { testDir } from '../lib/dirs.ts';
import { startKdc, type TestKdc } from '../lib/kdc.ts';
import { encodeKeytab } from '../lib/keytab.ts';
import { capturingLog } from '../notifier/helpers.ts';

/**
 * Kerberos over the real channel (gRPC + TLS on loopback) against a private MIT KDC, hub and
 * client in this process: one acceptor keytab file whose content each case rewrites (MIT reads it
 * at every accept), the DC's machine account as the client. Every refusal must say what to fix.
 */
let root: string;
let kdc: TestKdc;
let tls: TlsMaterial;
let hubKeytab: string;
let hubKeys: Buffer;
const servers: Array<{ close(graceMs: number): Promise<void> }> = [];
const clients: Array<{ close(): void }> = [];
const hubLog = capturingLog();

before(async () => {
  root = testDir('krb-auth');
  kdc = startKdc(path.join(root, 'kdc'));
  hubKeytab = path.join(root, 'hub.keytab');
  copyFileSync(kdc.hubKeytab, hubKeytab);
  hubKeys = readFileSync(hubKeytab);
  configureKerberosProcess({ krb5Config: kdc.krb5Config, acceptorKeytab: hubKeytab, replayCache: path.join(root, 'hub.rcache2'), clientKeytab: kdc.dcKeytab });
  tls = await generateTlsMaterial({ hosts: ['localhost', '127.0.0.1'] });
});

after(async () => {
  for (const c of clients) c.close();
  await Promise.all(servers.map((s) => s.close(500)));
  kdc?.stop();
});

const serverAuth = (over: { service?: string } = {}): ServerAuthenticator => kerberosServer({
  service: over.service ?? kdc.hubService, keytab: hubKeytab, log: hubLog.log,
});

async function hub(auth: ServerAuthenticator, over: Partial<HubServerOptions> = {}): Promise<{ address: string; callers: CallerIdentity[] }> {
  const callers: CallerIdentity[] = [];
  const server = await createHubServer({
    listen: '127.0.0.1:0', tlsCert: Buffer.from(tls.certPem), tlsKey: Buffer.from(tls.keyPem), maxMessageBytes: 1 << 20,
    auth, hubId: 'krb-hub',
    submit: async (req, caller) => {
      callers.push(caller);
      return req.changes.map((c) => ({ changeId: c.changeId, status: 'ACCEPTED_DURABLE' }));
    },
    ...over,
  });
  servers.push(server);
  return { address: `127.0.0.1:${server.port}`, callers };
}

function client(address: string, auth: ClientAuthenticator) {
  const c = createSubmitClient({ address, ca: Buffer.from(tls.caCertPem), auth, timeoutMs: 5000 });
  clients.push(c);
  return c;
}

const asDc = (address: string, service = kdc.hubService, principal?: string): ClientAuthenticator =>
  kerberosClient({ service, hubAddress: address, keytab: kdc.dcKeytab, ...(principal ? { principal } : {}) });

function change(n: number): NonNullable<SubmitRequest['changes']>[number] {
  return {
    changeId: Buffer.alloc(16, n), domain: 'pwsync.test', sourceDc: 'dc1.pwsync.test', changeTimeMs: 1767225600000 + n,
    account: { samAccountName: `user${n}`, objectGuid: '', objectSid: '', userPrincipalName: '', distinguishedName: '' },
    sealedPassword: Buffer.alloc(64, 0xa5),
  };
}

async function refused(p: Promise<unknown>): Promise<DeliveryError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof DeliveryError, `expected a DeliveryError, got ${String(e)}`);
    return e;
  }
  assert.fail('the call succeeded');
}

/** A fresh AP-REQ for `service` as the DC, made outside the channel (to send by hand). */
async function apReq(service = kdc.hubService): Promise<string> {
  const k = await loadKerberos();
  const c = await k.initializeClient(service, { mechOID: k.GSS_MECH_OID_KRB5, flags: k.GSS_C_MUTUAL_FLAG | k.GSS_C_SEQUENCE_FLAG });
  return (await c.step(''))!;
}

/** A Ping with exactly this metadata, the way an attacker's client would send it. */
function rawPing(address: string, md: grpc.Metadata): Promise<{ err: grpc.ServiceError | null; headers?: grpc.Metadata }> {
  const raw = new grpc.Client(address, grpc.credentials.createSsl(Buffer.from(tls.caCertPem)));
  clients.push(raw);
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    const call = raw.makeUnaryRequest('/pwsync.v1.Admin/Ping', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), md, { deadline: Date.now() + 5000 },
      (err) => resolve({ err, ...(headers ? { headers } : {}) }));
    call.on('metadata', (m: grpc.Metadata) => { headers = m; });
  });
}

function negotiate(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Negotiate ${token}`);
  return md;
}

/** The acceptor keytab holds the hub's keys plus these keytab files' (or bytes') entries. */
function hubKeytabHolds(...extra: Buffer[]): void {
  writeFileSync(hubKeytab, Buffer.concat([hubKeys, ...extra.map((b) => b.subarray(2))]), { mode: 0o600 });
}

test('each call carries a fresh AP-REQ; the hub names the DC and the client verifies the AP-REP', async () => {
  const seen: string[] = [];
  const inner = serverAuth();
  const { address, callers } = await hub({
    authenticate: async (md, peer) => {
      seen.push(String(md.get('authorization')[0]));
      assert.match(String(md.get(CLIENT_TIME_HEADER)[0]), /^\d{13}$/);
      return inner.authenticate(md, peer);
    },
    replyMetadata: (id) => inner.replyMetadata!(id),
  });
  const c = client(address, asDc(address));
  const acks = await c.submit({ notifierId: 'dc1', changes: [change(1), change(2)] });
  assert.deepEqual(acks.map((a) => a.status), ['ACCEPTED_DURABLE', 'ACCEPTED_DURABLE']);
  assert.equal((await c.ping()).hubId, 'krb-hub');
  await c.submit({ notifierId: 'dc1', changes: [change(3)] });
  assert.equal(callers.length, 2);
  for (const caller of callers) {
    assert.equal(caller.principal, kdc.dcPrincipal);
    assert.equal(caller.mechanism, 'kerberos');
    assert.ok(caller.replyToken, 'the AP-REP went back to the client');
  }
  assert.equal(seen.length, 3);
  assert.equal(new Set(seen).size, 3, 'a new token for every call');
  const logged = JSON.stringify(hubLog.lines);
  for (const t of seen) assert.ok(!logged.includes(t.slice(10, 60)), 'no token in the hub log');
});

test('a principal header sent by the caller is ignored: the principal comes from the ticket', async () => {
  const auth = serverAuth();
  const md = negotiate(await apReq());
  md.set(PRINCIPAL_HEADER, 'Administrator@PWSYNC.TEST');
  const identity = await auth.authenticate(md, 'test');
  assert.equal(identity.principal, kdc.dcPrincipal);
  assert.deepEqual(md.get(PRINCIPAL_HEADER), []);
});

test('no token: a TLS-only notifier is told that this hub requires Kerberos and what to set', async () => {
  const { address, callers } = await hub(serverAuth());
  const before = hubLog.events(6954).length;
  const e = await refused(client(address, tlsOnlyClient()).submit({ changes: [change(4)] }));
  assert.equal(e.code, 'UNAUTHENTICATED');
  assert.match(e.message, /this hub requires Kerberos/);
  assert.match(e.message, /targets\[\]\.kerberos\.service: PWSYNC@hub\.pwsync\.test/);
  assert.equal(callers.length, 0, 'nothing reached the handler');
  const logged = hubLog.events(6954).slice(before);
  assert.equal(logged.length, 1);
  assert.match(String(logged[0]!['peer']), /127\.0\.0\.1/);
  assert.equal(logged[0]!['spn'], 'PWSYNC/hub.pwsync.test');
});

test('a garbage or tampered token is refused as not a valid AP-REQ', async () => {
  const { address } = await hub(serverAuth());
  const garbage = await rawPing(address, negotiate(Buffer.from('not a kerberos token at all, just bytes').toString('base64')));
  assert.equal(garbage.err?.code, grpc.status.UNAUTHENTICATED);
  assert.match(garbage.err!.details, /not a valid Kerberos AP-REQ for PWSYNC\/hub\.pwsync\.test/);
  // A flipped byte in the authenticator (near the end; the ticket's outer realm is not integrity-protected).
  const good = await apReq();
  const i = good.length - 40;
  const tampered = good.slice(0, i) + (good[i] === 'A' ? 'B' : 'A') + good.slice(i + 1);
  const t = await rawPing(address, negotiate(tampered));
  assert.equal(t.err?.code, grpc.status.UNAUTHENTICATED);
  assert.match(t.err!.details, /not a valid Kerberos AP-REQ|does not decrypt/);
  const bearer = new grpc.Metadata();
  bearer.set('authorization', 'Bearer abc.def');
  const b = await rawPing(address, bearer);
  assert.match(b.err!.details, /not a Kerberos token/);
});

test('a replayed AP-REQ is refused; its first use was accepted', async () => {
  const { address } = await hub(serverAuth());
  const token = await apReq();
  const first = await rawPing(address, negotiate(token));
  assert.equal(first.err?.code ?? grpc.status.OK, grpc.status.OK);
  assert.match(String(first.headers?.get('www-authenticate')[0]), /^Negotiate \S+/);
  const second = await rawPing(address, negotiate(token));
  assert.equal(second.err?.code, grpc.status.UNAUTHENTICATED);
  assert.match(second.err!.details, /already seen \(a replay\)/);
});

test('a ticket for another SPN names both SPNs and the setting to correct', async () => {
  const { address, callers } = await hub(serverAuth());
  const e = await refused(client(address, asDc(address, kdc.otherService)).submit({ changes: [change(5)] }));
  assert.equal(e.code, 'UNAUTHENTICATED');
  assert.match(e.message, /presented a ticket for PWSYNC\/other\.pwsync\.test@PWSYNC\.TEST, but this hub is PWSYNC\/hub\.pwsync\.test/);
  assert.match(e.message, /set targets\[\]\.kerberos\.service: PWSYNC@hub\.pwsync\.test/);
  assert.equal(callers.length, 0);
});

test('an SPN the KDC does not know: the notifier says to register it once (spn add / setspn -S, setspn -X)', async () => {
  const { address, callers } = await hub(serverAuth());
  const e = await refused(client(address, asDc(address, 'PWSYNC@nope.pwsync.test')).submit({ changes: [change(6)] }));
  assert.equal(e.code, 'UNAUTHENTICATED');
  assert.equal(e.retryable, true);
  assert.match(e.message, /DC1\$@PWSYNC\.TEST cannot get a ticket for PWSYNC\/nope\.pwsync\.test@PWSYNC\.TEST/);
  assert.match(e.message, /knows no account with the SPN PWSYNC\/nope\.pwsync\.test/);
  assert.match(e.message, /samba-tool spn add PWSYNC\/nope\.pwsync\.test/);
  assert.match(e.message, /setspn -S PWSYNC\/nope\.pwsync\.test/);
  assert.match(e.message, /setspn -X/);
  assert.equal(callers.length, 0, 'nothing was sent');
});

test('a client principal the keytab does not hold is named with the setting to correct', async () => {
  const { address } = await hub(serverAuth());
  const e = await refused(client(address, asDc(address, kdc.hubService, 'DC2$@PWSYNC.TEST')).ping());
  assert.match(e.message, /DC2\$@PWSYNC\.TEST has no key in notifier\.kerberos\.keytab/);
  assert.match(e.message, /notifier\.kerberos\.principal/);
});

test('a keytab older than the account\'s key version says to export it again', async () => {
  const spn = 'PWSYNC/kvno.pwsync.test';
  const stale = path.join(root, 'kvno-stale.keytab');
  const fresh = path.join(root, 'kvno-fresh.keytab');
  kdc.kadmin(`addprinc -randkey ${spn}\nktadd -k ${stale} ${spn}\nktadd -k ${fresh} ${spn}\n`);
  hubKeytabHolds(readFileSync(stale));
  const auth = serverAuth({ service: 'PWSYNC@kvno.pwsync.test' });
  const { address } = await hub(auth);
  const e = await refused(client(address, asDc(address, 'PWSYNC@kvno.pwsync.test')).ping());
  assert.match(e.message, /encrypted with key version 3, which the hub's keytab does not hold/);
  assert.match(e.message, /PWSYNC\/kvno\.pwsync\.test@PWSYNC\.TEST kvno 2 \(aes256-cts-hmac-sha1-96, aes128-cts-hmac-sha1-96\)/);
  assert.match(e.message, /samba-tool domain exportkeytab .* --principal=PWSYNC\/kvno\.pwsync\.test/);
  hubKeytabHolds(readFileSync(fresh));
  assert.equal((await client(address, asDc(address, 'PWSYNC@kvno.pwsync.test')).ping()).hubId, 'krb-hub', 'works once exported again');
  hubKeytabHolds();
});

test('the RC4-only trap: AES tickets, RC4 keytab; and a key that does not decrypt', async () => {
  const principal = 'PWSYNC/rc4.pwsync.test@PWSYNC.TEST';
  kdc.kadmin(`addprinc -randkey ${principal}\n`);
  hubKeytabHolds(encodeKeytab([{ principal, kvno: 1, enctype: 23 }]));
  const { address } = await hub(serverAuth({ service: 'PWSYNC@rc4.pwsync.test' }));
  const rc4 = await refused(client(address, asDc(address, 'PWSYNC@rc4.pwsync.test')).ping());
  assert.match(rc4.message, /encrypted its ticket for PWSYNC\/rc4\.pwsync\.test@PWSYNC\.TEST with aes256-cts/);
  assert.match(rc4.message, /RC4-only trap: set msDS-SupportedEncryptionTypes to 24/);
  assert.match(rc4.message, /PWSYNC\/rc4\.pwsync\.test@PWSYNC\.TEST kvno 1 \(rc4-hmac\)/);
  hubKeytabHolds(encodeKeytab([{ principal, kvno: 1, enctype: 18 }, { principal, kvno: 1, enctype: 17 }]));
  const wrongKey = await refused(client(address, asDc(address, 'PWSYNC@rc4.pwsync.test')).ping());
  assert.match(wrongKey.message, /does not decrypt the ticket, so the keytab holds another key than the KDC/);
  hubKeytabHolds();
});

test('the hub\'s keytab missing, or without its SPN: named, with the export command', async () => {
  const { address } = await hub(serverAuth());
  renameSync(hubKeytab, `${hubKeytab}.away`);
  try {
    const e = await refused(client(address, asDc(address)).ping());
    assert.match(e.message, new RegExp(`its keytab ${hubKeytab.replace(/[.]/g, '\\.')} does not exist \\(hub\\.kerberos\\.keytab\\)`));
    assert.match(e.message, /exportkeytab .* --principal=PWSYNC\/hub\.pwsync\.test/);
  } finally {
    renameSync(`${hubKeytab}.away`, hubKeytab);
  }
  writeFileSync(hubKeytab, readFileSync(kdc.otherKeytab), { mode: 0o600 });
  try {
    const e = await refused(client(address, asDc(address)).ping());
    assert.match(e.message, /has no key for PWSYNC\/hub\.pwsync\.test/);
    assert.match(e.message, /holds: PWSYNC\/other\.pwsync\.test@PWSYNC\.TEST kvno 2/);
  } finally {
    hubKeytabHolds();
  }
});

test('a hub that answers without an AP-REP (TLS alone, or an impostor) is not believed', async () => {
  const { address, callers } = await hub(tlsOnlyServer());
  const e = await refused(client(address, asDc(address)).submit({ changes: [change(7)] }));
  assert.equal(e.code, 'UNAUTHENTICATED');
  assert.match(e.message, /did not prove the hub's identity/);
  assert.match(e.message, /no Kerberos reply token \(AP-REP\) for PWSYNC\/hub\.pwsync\.test came back/);
  assert.match(e.message, /nothing in the batch is taken as delivered/);
  assert.equal(callers.length, 1, 'the impostor got the batch; its acknowledgement does not count');
});

test('a reply token that does not verify is not believed either', async () => {
  const inner = serverAuth();
  const { address } = await hub({
    authenticate: (md, peer) => inner.authenticate(md, peer),
    replyMetadata: (id) => {
      const md = new grpc.Metadata();
      const t = id.replyToken!;
      md.set('www-authenticate', `Negotiate ${t.slice(0, -12)}${t.slice(-12).split('').reverse().join('')}`);
      return md;
    },
  });
  const e = await refused(client(address, asDc(address)).ping());
  assert.match(e.message, /did not prove the hub's identity \(the reply token does not verify for PWSYNC\/hub\.pwsync\.test/);
});

test('Kerberos set up twice in one process with other settings is refused', () => {
  assert.throws(() => configureKerberosProcess({ acceptorKeytab: path.join(root, 'elsewhere.keytab') }), /already set up in this process with other settings/);
  configureKerberosProcess({ krb5Config: kdc.krb5Config, clientKeytab: kdc.dcKeytab });
  assert.throws(() => configureKerberosProcess({ ccache: 'FILE:/nowhere' }), /already set up|already in use/);
});
