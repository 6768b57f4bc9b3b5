import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { enctypeName, KeytabFormatError, parseKeytab, readKeytab } from '../../core/keytab.ts';
import { hubAuthenticator } from '../../hub/authentication.ts';
import { checkHubKerberos, type SpnInfo } from '../../hub/kerberos-check.ts';
import type { HubConfig } from '../../config/schema.ts';
import { testDir } from '../lib/dirs.ts';
import { startKdc, type TestKdc } from '../lib/kdc.ts';
import { capturingLog } from '../notifier/helpers.ts';

/**
 * The keytab reader against keytabs MIT's kadmin.local wrote (checked against `klist -k -e`),
 * and the hub's start-time Kerberos check with its fixes: no key for the SPN, RC4 only, and with
 * a directory's answer: SPN on no account or on two, an outdated kvno, an account without AES.
 */
let root: string;
let kdc: TestKdc;
const SERVICE = 'PWSYNC@hub.pwsync.test';

before(() => {
  root = testDir('krb-keytab');
  kdc = startKdc(path.join(root, 'kdc'));
});

after(() => kdc?.stop());

const file = (name: string): string => path.join(root, name);

/** What `klist -k -e` lists: principal, kvno and enctype name per entry. */
function klist(keytab: string): Array<{ principal: string; kvno: number; enctype: string }> {
  const out = execFileSync('klist', ['-k', '-e', keytab], { env: kdc.env(), encoding: 'utf8' });
  return [...out.matchAll(/^\s*(\d+) (\S+) \((?:DEPRECATED:)?([^)]+)\)\s*$/gm)].map((m) => ({ principal: m[2]!, kvno: Number(m[1]), enctype: m[3]! }));
}

const MIT_NAMES: Record<string, string> = { 'aes256-cts-hmac-sha1-96': 'aes256-cts-hmac-sha1-96', 'aes128-cts-hmac-sha1-96': 'aes128-cts-hmac-sha1-96', 'arcfour-hmac': 'rc4-hmac' };

test('reads what kadmin.local writes, entry for entry as klist lists it, across several kvnos and enctypes', () => {
  const kt = file('multi.keytab');
  kdc.kadmin([
    'addprinc -randkey PWSYNC/multi.pwsync.test',
    `ktadd -k ${kt} -e aes256-cts-hmac-sha1-96:normal,aes128-cts-hmac-sha1-96:normal PWSYNC/multi.pwsync.test`,
    `ktadd -k ${kt} -e rc4-hmac:normal PWSYNC/multi.pwsync.test`,
    'addprinc -randkey WS1$',
    `ktadd -k ${kt} WS1$`,
  ].join('\n'));
  const parsed = readKeytab(kt);
  const listed = klist(kt);
  assert.equal(parsed.length, 5);
  assert.deepEqual(parsed.map((e) => ({ principal: e.principal, kvno: e.kvno, enctype: enctypeName(e.enctype) })),
    listed.map((e) => ({ principal: e.principal, kvno: e.kvno, enctype: MIT_NAMES[e.enctype] ?? e.enctype })));
  assert.deepEqual(parsed.map((e) => e.kvno), [2, 2, 3, 2, 2]);
  assert.equal(parsed[0]!.name, 'PWSYNC/multi.pwsync.test');
  assert.equal(parsed[0]!.realm, 'PWSYNC.TEST');
  assert.equal(parsed[3]!.principal, 'WS1$@PWSYNC.TEST');
});

test('skips the holes kadmin leaves for removed entries', () => {
  const kt = file('holes.keytab');
  kdc.kadmin([
    'addprinc -randkey PWSYNC/holes.pwsync.test',
    `ktadd -k ${kt} PWSYNC/holes.pwsync.test`,
    `ktadd -k ${kt} PWSYNC/holes.pwsync.test`,
    `ktremove -k ${kt} PWSYNC/holes.pwsync.test old`,
  ].join('\n'));
  const parsed = readKeytab(kt);
  assert.deepEqual([...new Set(parsed.map((e) => e.kvno))], [3]);
  assert.deepEqual(parsed.map((e) => e.kvno), klist(kt).map((e) => e.kvno));
});

test('refuses what is not a keytab, or a truncated one, saying so', () => {
  assert.throws(() => parseKeytab(Buffer.from('hello')), (e: Error) => e instanceof KeytabFormatError && /not a keytab/.test(e.message));
  assert.throws(() => parseKeytab(Buffer.from([0x05, 0x01, 0, 0])), /format 0x0501 is not supported/);
  const good = readKeytab(kdc.hubKeytab);
  assert.equal(good.length, 2);
  const bytes = readFileSync(kdc.hubKeytab);
  assert.throws(() => parseKeytab(bytes.subarray(0, bytes.length - 10)), /truncated keytab/);
});

test('a keytab with an AES key for the SPN, and a directory that agrees, has no problems', async () => {
  assert.deepEqual(await checkHubKerberos({ keytab: kdc.hubKeytab, service: SERVICE, realm: 'PWSYNC.TEST' }), []);
  const lookup = async (): Promise<SpnInfo> => ({ owners: ['CN=pwsync-hub,CN=Users,DC=pwsync,DC=test'], kvno: 2, supportedEnctypes: 24 });
  assert.deepEqual(await checkHubKerberos({ keytab: kdc.hubKeytab, service: SERVICE }, lookup), []);
});

test('a keytab without the SPN, missing, or not a keytab: each named with the export command', async () => {
  const [other] = await checkHubKerberos({ keytab: kdc.otherKeytab, service: SERVICE });
  assert.match(other!.problem, /has no key for PWSYNC\/hub\.pwsync\.test .* it holds PWSYNC\/other\.pwsync\.test@PWSYNC\.TEST/);
  assert.match(other!.fix, /samba-tool domain exportkeytab .*other\.keytab --principal=PWSYNC\/hub\.pwsync\.test/);
  assert.match(other!.fix, /ktpass \/princ PWSYNC\/hub\.pwsync\.test@REALM/);
  const [realm] = await checkHubKerberos({ keytab: kdc.hubKeytab, service: SERVICE, realm: 'CORP.EXAMPLE.COM' });
  assert.match(realm!.problem, /has no key for PWSYNC\/hub\.pwsync\.test@CORP\.EXAMPLE\.COM/);
  const [missing] = await checkHubKerberos({ keytab: file('absent.keytab'), service: SERVICE });
  assert.match(missing!.problem, /absent\.keytab \(hub\.kerberos\.keytab\) does not exist/);
  writeFileSync(file('junk.keytab'), 'not a keytab');
  const [junk] = await checkHubKerberos({ keytab: file('junk.keytab'), service: SERVICE });
  assert.match(junk!.problem, /junk\.keytab is not a usable keytab: not a keytab file/);
});

test('RC4-only keys for the SPN are the trap: set msDS-SupportedEncryptionTypes 24 and export again', async () => {
  const kt = file('rc4.keytab');
  kdc.kadmin(`addprinc -randkey PWSYNC/rc4.pwsync.test\nktadd -k ${kt} -e rc4-hmac:normal PWSYNC/rc4.pwsync.test\n`);
  const [p] = await checkHubKerberos({ keytab: kt, service: 'PWSYNC@rc4.pwsync.test' });
  assert.match(p!.problem, /holds only rc4-hmac keys for PWSYNC\/rc4\.pwsync\.test/);
  assert.match(p!.fix, /set msDS-SupportedEncryptionTypes to 24 \(AES128 \+ AES256\)/);
  assert.match(p!.fix, /exportkeytab/);
});

test('with a directory: SPN on no account, on two, a kvno behind, no AES; a failed lookup is said too', async () => {
  const check = (info: SpnInfo | Error) => checkHubKerberos({ keytab: kdc.hubKeytab, service: SERVICE }, async (spn) => {
    assert.equal(spn, 'PWSYNC/hub.pwsync.test');
    if (info instanceof Error) throw info;
    return info;
  });
  const [none] = await check({ owners: [] });
  assert.match(none!.problem, /no account in the directory holds the SPN PWSYNC\/hub\.pwsync\.test/);
  assert.match(none!.fix, /samba-tool spn add PWSYNC\/hub\.pwsync\.test ACCOUNT.*setspn -S PWSYNC\/hub\.pwsync\.test ACCOUNT/);
  const [two] = await check({ owners: ['CN=pwsync-hub,CN=Users,DC=x', 'CN=old-hub,CN=Users,DC=x'] });
  assert.match(two!.problem, /registered on 2 accounts \(CN=pwsync-hub,CN=Users,DC=x; CN=old-hub,CN=Users,DC=x\)/);
  assert.match(two!.fix, /setspn -X.*setspn -D PWSYNC\/hub\.pwsync\.test OTHER-ACCOUNT/);
  const [behind] = await check({ owners: ['CN=pwsync-hub,CN=Users,DC=x'], kvno: 5, supportedEnctypes: 24 });
  assert.match(behind!.problem, /holds key version 2 of PWSYNC\/hub\.pwsync\.test, but the account CN=pwsync-hub,CN=Users,DC=x is at msDS-KeyVersionNumber 5/);
  const [rc4] = await check({ owners: ['CN=pwsync-hub,CN=Users,DC=x'], kvno: 2, supportedEnctypes: 4 });
  assert.match(rc4!.problem, /does not allow AES \(msDS-SupportedEncryptionTypes 4\)/);
  assert.match(rc4!.fix, /set msDS-SupportedEncryptionTypes to 24/);
  const [down] = await check(new Error('connect ECONNREFUSED 10.0.0.1:636'));
  assert.match(down!.problem, /could not be looked up in the directory: connect ECONNREFUSED/);
});

test('the hub logs 6952 once with TLS alone on loopback, and 6960 for each Kerberos set-up problem at start', async () => {
  const tlsLog = capturingLog();
  const tls = await hubAuthenticator({ hub: { listen: '127.0.0.1:7443', tls: {} } as HubConfig['hub'] }, tlsLog.log);
  assert.equal((await tls.authenticate(new grpc.Metadata(), 'peer')).mechanism, 'tls');
  assert.equal(tlsLog.events(6952).length, 1);

  const krbLog = capturingLog();
  const hub = { listen: '0.0.0.0:7443', tls: {}, kerberos: { keytab: kdc.otherKeytab, service: SERVICE, replayCache: file('rcache/hub.rcache2'), krb5Config: kdc.krb5Config } } as HubConfig['hub'];
  await hubAuthenticator({ hub }, krbLog.log, async () => ({ owners: [] }));
  const problems = krbLog.events(6960).map((l) => String(l['problem']));
  assert.equal(problems.length, 2, problems.join('\n'));
  assert.match(problems[0]!, /has no key for PWSYNC\/hub\.pwsync\.test/);
  assert.match(problems[1]!, /no account in the directory holds the SPN/);
  assert.ok(krbLog.events(6960).every((l) => typeof l['fix'] === 'string' && l['fix'] !== ''));
});
