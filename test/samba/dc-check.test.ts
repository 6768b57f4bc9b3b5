import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { spawnPwsync } from '../../cli/lab.ts';
import type { DomainConfig } from '../../config/schema.ts';
import type { DirectorySearch, LdapEntry, LdapQuery } from '../../core/ldap.ts';
import { createDcAuthorizer, openDomainDirectory, type DcAuthorizer } from '../../hub/dc-check.ts';
import { scopeFromConfig } from '../../notifier/scope-ldap.ts';
import type { CallerIdentity } from '../../proto/auth.ts';
import { HubRefusal } from '../../proto/refusal.ts';
import { testDir } from '../lib/dirs.ts';
import { startReportHub, type ReportHub } from '../lib/report-hub.ts';
import { startSambaDc, type SambaDc } from '../lib/samba.ts';
import { capturingLog } from '../notifier/helpers.ts';

/**
 * The hub's DC check against a real Samba AD DC (run inside a network namespace:
 * bash test/env/in-netns.sh node --import tsx --test test/samba/dc-check.test.ts): DC1$ is a
 * writable DC; users, service accounts, a plain computer, an unknown machine name and a DC of
 * another realm are not; answers are cached and a directory that is down makes the call
 * 'unavailable', not 'forbidden'. Then a report through a real hub server, authorized by that
 * check, and `pwsync status` saying why carol's password was not sent. The caller's principal is
 * given as Kerberos would give it; the Kerberos exchange itself is tested with proto/kerberos.ts.
 * A caller named by a client certificate is looked up by the dNSHostName Samba gave its DC.
 */

let dc: SambaDc;
let domain: DomainConfig;
let check: DcAuthorizer;
let searches = 0;
let now = 1_000_000;
const hubLog = capturingLog();

const caller = (principal: string): CallerIdentity => ({ principal, mechanism: 'kerberos', peer: 'ipv4:127.0.0.1:40000' });

/** Counts the searches of the real directory, to see the cache at work. */
function counting(d: DirectorySearch): DirectorySearch {
  return {
    description: d.description,
    search: (base: string, q: LdapQuery): Promise<LdapEntry[]> => {
      searches++;
      return d.search(base, q);
    },
    close: () => d.close(),
  };
}

before(async () => {
  dc = await startSambaDc();
  const f = dc.facts;
  execFileSync('samba-tool', ['computer', 'create', 'WS1', '-s', f.smbConf], { env: { ...process.env, ...dc.env }, stdio: 'pipe', timeout: 60_000 });
  domain = {
    name: 'pwsync.test', allowReadOnlyDCs: false, dcCacheTtl: 600_000, dcSilentAfter: 7_200_000,
    directory: {
      url: f.ldapsUrl, startTls: false, ca: f.caPem, serverName: f.dcHost, bindDn: f.reader.bindDn,
      password: { fromFile: f.reader.passwordFile }, timeout: 5_000,
    },
  };
  check = createDcAuthorizer({
    domains: [domain], baseDir: '/', log: hubLog.log, now: () => now, negativeTtlMs: 60_000,
    directoryFor: (d, i) => counting(openDomainDirectory(d, i, '/')!),
  });
});

after(async () => {
  await check?.close();
  await dc?.stop();
});

test('DC1$@PWSYNC.TEST is a writable DC of pwsync.test: accepted', async () => {
  await check.authorize(caller('DC1$@PWSYNC.TEST'), domain);
});

test('users, the hub\'s service account, a plain computer, an unknown machine and another realm\'s DC are refused (6953), each saying why', async () => {
  const cases: Array<[string, RegExp]> = [
    ['alice@PWSYNC.TEST', /alice@PWSYNC\.TEST is not a machine account/],
    ['pwsync-hub@PWSYNC.TEST', /pwsync-hub@PWSYNC\.TEST is not a machine account/],
    ['WS1$@PWSYNC.TEST', /WS1\$@PWSYNC\.TEST is not a writable domain controller of pwsync\.test: CN=WS1,CN=Computers,DC=pwsync,DC=test is not in OU=Domain Controllers,DC=pwsync,DC=test/],
    ['pwsync-hub$@PWSYNC.TEST', /no account pwsync-hub\$ under DC=pwsync,DC=test \(ldaps:\/\/127\.0\.0\.1:636 as pwsync-reader@pwsync\.test\)/],
    ['DC2$@OTHER.TEST', /DC2\$@OTHER\.TEST is a principal of realm OTHER\.TEST, but domain pwsync\.test is realm PWSYNC\.TEST/],
  ];
  for (const [principal, why] of cases) {
    await assert.rejects(check.authorize(caller(principal), domain), (e: unknown) => {
      assert.ok(e instanceof HubRefusal, principal);
      assert.equal(e.refusal, 'forbidden', principal);
      assert.match(e.message, why);
      return true;
    });
  }
  const logged = hubLog.events(6953);
  assert.deepEqual(logged.map((l) => l.principal), cases.map(([p]) => p));
  assert.ok(logged.every((l) => l.domain === 'pwsync.test' && typeof l.reason === 'string' && typeof l.fix === 'string'));
});

test('the hub\'s SPN: one owner, its key version and AES encryption types, for the Kerberos check', async () => {
  const info = await check.lookupSpn(dc.facts.hub.spn);
  assert.deepEqual(info.owners, [dc.facts.hub.dn]);
  assert.equal(typeof info.kvno, 'number');
  assert.ok(info.kvno! >= 1);
  assert.equal(info.supportedEnctypes, 24);
  assert.deepEqual((await check.lookupSpn('PWSYNC@nohub.pwsync.test')).owners, []);
});

test('answers are cached; a directory that is down refuses as unavailable (the notifier retries), and is used again once back', async () => {
  now += 700_000;
  await check.authorize(caller('DC1$@PWSYNC.TEST'), domain);
  const before = searches;
  await check.authorize(caller('DC1$@PWSYNC.TEST'), domain);
  await assert.rejects(check.authorize(caller('WS1$@PWSYNC.TEST'), domain), HubRefusal);
  assert.equal(searches, before + 1, 'WS1$ was looked up once more (its refusal expired), DC1$ not');

  await dc.stop();
  try {
    await check.authorize(caller('DC1$@PWSYNC.TEST'), domain);
    await assert.rejects(check.authorize(caller('DC3$@PWSYNC.TEST'), domain), (e: unknown) =>
      e instanceof HubRefusal && e.refusal === 'unavailable'
      && /cannot check whether DC3\$@PWSYNC\.TEST is a domain controller of pwsync\.test now: ldaps:\/\/127\.0\.0\.1:636/.test(e.message));
  } finally {
    await dc.start();
  }
  now += 700_000;
  await check.authorize(caller('DC1$@PWSYNC.TEST'), domain);
});

test('a report through a real hub, authorized by the DC check, stores why carol\'s password was not sent; `pwsync status` shows it', async () => {
  const dir = testDir('samba-report');
  let hub: ReportHub | undefined;
  const f = dc.facts;
  const scope = scopeFromConfig({
    notifier: {
      domain: 'pwsync.test', scopeCacheTtl: 60_000,
      directory: { url: f.ldapsUrl, startTls: false, ca: f.caPem, serverName: f.dcHost, bindDn: f.reader.bindDn, password: { fromFile: f.reader.passwordFile }, timeout: 5_000 },
    } as never,
    targets: [{ name: 'hub1', scope: { include: 'pwsync-sync', exclude: 'pwsync-exclude' } }] as never,
  }, '/', capturingLog().log);
  try {
    hub = await startReportHub({ dir, domains: [domain], authorizer: check, log: hubLog.log });
    const carol = dc.users.carol;
    const decision = await scope.decide({ domain: 'pwsync.test', samAccountName: carol.sam, objectGuid: carol.objectGuid, objectSid: carol.objectSid, upn: carol.upn, dn: carol.dn }, 'hub1');
    assert.ok(!decision.send);
    const noticeId = randomBytes(16);
    const res = await hub.client('DC1$@PWSYNC.TEST').report({
      notifierId: 'dc1', domain: 'pwsync.test', sourceDc: 'DC1', sentTimeMs: Date.now(), queued: 0,
      capture: [{ source: 'samba', state: 'running', detail: '', lastCaptureMs: Date.now() }],
      notices: [{
        noticeId, changeTimeMs: Date.now(), target: 'hub1', reason: decision.reason,
        account: { samAccountName: carol.sam, objectGuid: carol.objectGuid, objectSid: carol.objectSid, userPrincipalName: carol.upn, distinguishedName: carol.dn },
      }],
    });
    assert.deepEqual(res.storedNoticeIds.map((b) => Buffer.from(b).toString('hex')), [noticeId.toString('hex')]);

    await assert.rejects(hub.client('WS1$@PWSYNC.TEST').report({ notifierId: 'ws1', domain: 'pwsync.test', sourceDc: 'WS1', sentTimeMs: Date.now() }),
      (e: unknown) => (e as { code?: string }).code === 'PERMISSION_DENIED' && /WS1\$@PWSYNC\.TEST is not a writable domain controller/.test((e as Error).message));

    const status = spawnPwsync(['status', '--config', hub.hubConfig, '--account', 'pwsync.test\\carol']);
    assert.equal(await status.exited, 0, status.stderr());
    assert.match(status.stdout(), /pwsync\.test\\carol\s+hub1\s+DC1\s+.*not sent by DC1 to hub1: out of scope: member of exclusion group pwsync-exclude/);
    const dcs = spawnPwsync(['status', '--config', hub.hubConfig, '--dcs']);
    assert.equal(await dcs.exited, 0, dcs.stderr());
    assert.match(dcs.stdout(), /pwsync\.test\s+DC1\s+DC1\$@PWSYNC\.TEST\s+.*samba: running\s+0\s+reporting/);
    assert.doesNotMatch(dcs.stdout(), /WS1/);
  } finally {
    await scope.close?.();
    await hub?.stop();
  }
});

test('a caller named by its client certificate is found by dNSHostName: the DC\'s name accepted, a plain computer\'s and an unknown one refused', async () => {
  const named = (name: string): CallerIdentity => ({ principal: name, mechanism: 'certificate', peer: 'ipv4:127.0.0.1:40000' });
  await check.authorize(named(dc.facts.dcHost.toLowerCase()), domain);
  for (const [name, why] of [
    ['ws1.pwsync.test', /^ws1\.pwsync\.test is not a writable domain controller of pwsync\.test: /],
    ['dc9.pwsync.test', /no account with dNSHostName dc9\.pwsync\.test under DC=pwsync,DC=test/],
  ] as const) {
    await assert.rejects(check.authorize(named(name), domain), (e: unknown) => e instanceof HubRefusal && e.refusal === 'forbidden' && why.test(e.message), name);
  }
});
