import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { DomainConfig } from '../../config/schema.ts';
import { LdapEntry, LdapError, type DirectorySearch, type LdapQuery } from '../../core/ldap.ts';
import {
  classifyDc, createDcAuthorizer, machineAccountOf, parseSpn, realmOf,
} from '../../hub/dc-check.ts';
import type { CallerIdentity } from '../../proto/auth.ts';
import { HubRefusal } from '../../proto/refusal.ts';

/**
 * The DC check's decisions, given what a directory answers: which principals are refused before
 * any lookup (other realm, not a machine account), how an account is judged (writable DC, RODC,
 * computer elsewhere, disabled), and the cache (positive for dcCacheTtl, refusals shorter, directory
 * failures never). The same check against a real Samba DC is in test/samba/dc-check.test.ts.
 */

const BASE = 'DC=pwsync,DC=test';
const domain = (over: Partial<DomainConfig> = {}): DomainConfig => ({
  name: 'pwsync.test', allowReadOnlyDCs: false, dcCacheTtl: 600_000, dcSilentAfter: 7_200_000, ...over,
});
const kerberos = (principal: string): CallerIdentity => ({ principal, mechanism: 'kerberos', peer: 'ipv4:127.0.0.1:5000' });
const certificate = (principal: string): CallerIdentity => ({ principal, mechanism: 'certificate', peer: 'ipv4:127.0.0.1:5000' });

function account(dn: string, attrs: { uac: number; group: number; rodc?: boolean; classes?: string[] }): LdapEntry {
  return new LdapEntry(dn, {
    objectClass: attrs.classes ?? ['top', 'person', 'organizationalPerson', 'user', 'computer'],
    userAccountControl: String(attrs.uac), primaryGroupID: String(attrs.group), ...(attrs.rodc !== undefined ? { 'msDS-isRODC': attrs.rodc ? 'TRUE' : 'FALSE' } : {}),
  });
}

const DC1 = account(`CN=DC1,OU=Domain Controllers,${BASE}`, { uac: 0x82000, group: 516, rodc: false });
const RODC = account(`CN=RODC1,OU=Domain Controllers,${BASE}`, { uac: 0x5001000, group: 521, rodc: true });

/** A directory that answers from a table and counts the questions. */
class TableDirectory implements DirectorySearch {
  readonly description = 'ldaps://test as reader';
  asked: string[] = [];
  failWith: Error | undefined;
  /** By sAMAccountName, or by dNSHostName (several entries: a name held twice). */
  constructor(private readonly table: Record<string, LdapEntry | LdapEntry[]>) {}
  async search(_base: string, q: LdapQuery): Promise<LdapEntry[]> {
    const filter = q.filter.toString();
    this.asked.push(filter);
    if (this.failWith) throw this.failWith;
    const key = /\(sAMAccountName=([^)]*)\)/.exec(filter)?.[1] ?? /\(dNSHostName=([^)]*)\)/.exec(filter)?.[1] ?? '';
    const e = this.table[key];
    return Array.isArray(e) ? e : e ? [e] : [];
  }
  async close(): Promise<void> {}
}

function logged(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { log: pino({ level: 'debug' }, { write: (s: string) => { lines.push(JSON.parse(s) as Record<string, unknown>); } }), lines };
}

test('a principal of another realm, or not a machine account, is refused without asking the directory', () => {
  assert.deepEqual(machineAccountOf('DC1$@PWSYNC.TEST', domain()), { sam: 'DC1$' });
  assert.deepEqual(machineAccountOf('DC1$@pwsync.test', domain()), { sam: 'DC1$' });
  const other = machineAccountOf('DC2$@OTHER.TEST', domain());
  assert.ok('reason' in other);
  assert.match(other.reason, /^DC2\$@OTHER\.TEST is a principal of realm OTHER\.TEST, but domain pwsync\.test is realm PWSYNC\.TEST/);
  assert.match(other.reason, /domains\[\]\.realm/);
  const user = machineAccountOf('alice@PWSYNC.TEST', domain());
  assert.ok('reason' in user);
  assert.match(user.reason, /alice@PWSYNC\.TEST is not a machine account.*machine keytab/);
  const service = machineAccountOf('host/dc1.pwsync.test$@PWSYNC.TEST', domain());
  assert.ok('reason' in service);
  assert.equal(realmOf(domain({ realm: 'CORP.EXAMPLE' })), 'CORP.EXAMPLE');
  assert.ok('sam' in machineAccountOf('DC1$@CORP.EXAMPLE', domain({ realm: 'CORP.EXAMPLE' })));
});

test('the directory\'s entry decides: writable DC yes; RODC only when allowed; other computers, users and disabled DCs no', () => {
  const ctx = { principal: 'DC1$@PWSYNC.TEST', account: 'DC1$', domain: domain(), directory: 'ldaps://test' };
  assert.deepEqual(classifyDc(DC1, ctx), { ok: true, readOnly: false, dn: DC1.dn });
  const rodc = classifyDc(RODC, { ...ctx, principal: 'RODC1$@PWSYNC.TEST' });
  assert.ok(!rodc.ok && /read-only domain controller.*allowReadOnlyDCs: true/.test(rodc.reason));
  assert.deepEqual(classifyDc(RODC, { ...ctx, domain: domain({ allowReadOnlyDCs: true }) }), { ok: true, readOnly: true, dn: RODC.dn });
  const workstation = classifyDc(account(`CN=WS1,CN=Computers,${BASE}`, { uac: 0x1000, group: 515 }), ctx);
  assert.ok(!workstation.ok && /not in OU=Domain Controllers,DC=pwsync,DC=test/.test(workstation.reason));
  const moved = classifyDc(account(`CN=WS1,OU=Domain Controllers,${BASE}`, { uac: 0x1000, group: 515 }), ctx);
  assert.ok(!moved.ok && /userAccountControl 4096 and primaryGroupID 515, not SERVER_TRUST_ACCOUNT/.test(moved.reason));
  const userEntry = classifyDc(account(`CN=svc$,CN=Users,${BASE}`, { uac: 0x200, group: 513, classes: ['top', 'user'] }), ctx);
  assert.ok(!userEntry.ok && /is not a computer account/.test(userEntry.reason));
  const disabled = classifyDc(account(DC1.dn, { uac: 0x82002, group: 516 }), ctx);
  assert.ok(!disabled.ok && /is disabled/.test(disabled.reason));
  const missing = classifyDc(undefined, ctx);
  assert.ok(!missing.ok && /no account DC1\$ under DC=pwsync,DC=test \(ldaps:\/\/test\)/.test(missing.reason));
});

test('SPNs are accepted in the GSS form and with a realm', () => {
  assert.deepEqual(parseSpn('PWSYNC@hub.pwsync.test'), { spn: 'PWSYNC/hub.pwsync.test' });
  assert.deepEqual(parseSpn('PWSYNC/hub.pwsync.test@pwsync.test'), { spn: 'PWSYNC/hub.pwsync.test', realm: 'PWSYNC.TEST' });
  assert.deepEqual(parseSpn('PWSYNC/hub.pwsync.test'), { spn: 'PWSYNC/hub.pwsync.test' });
});

test('answers are cached: a DC for dcCacheTtl, a refusal a shorter time, a directory failure not at all', async () => {
  let now = 1_000_000;
  const dir = new TableDirectory({ 'DC1$': DC1 });
  const { log, lines } = logged();
  const d = domain({ dcCacheTtl: 600_000 });
  const check = createDcAuthorizer({ domains: [d], baseDir: '/', log, now: () => now, negativeTtlMs: 60_000, directoryFor: () => dir });

  await check.authorize(kerberos('DC1$@PWSYNC.TEST'), d);
  await check.authorize(kerberos('DC1$@PWSYNC.TEST'), d);
  assert.equal(dir.asked.length, 1);
  now += 599_000;
  await check.authorize(kerberos('DC1$@PWSYNC.TEST'), d);
  assert.equal(dir.asked.length, 1);
  now += 2_000;
  await check.authorize(kerberos('DC1$@PWSYNC.TEST'), d);
  assert.equal(dir.asked.length, 2);

  await assert.rejects(check.authorize(kerberos('WS9$@PWSYNC.TEST'), d), (e: unknown) =>
    e instanceof HubRefusal && e.refusal === 'forbidden' && /WS9\$@PWSYNC\.TEST is not a writable domain controller of pwsync\.test/.test(e.message));
  await assert.rejects(check.authorize(kerberos('WS9$@PWSYNC.TEST'), d), HubRefusal);
  assert.equal(dir.asked.length, 3);
  now += 61_000;
  await assert.rejects(check.authorize(kerberos('WS9$@PWSYNC.TEST'), d), HubRefusal);
  assert.equal(dir.asked.length, 4);
  const refusals = lines.filter((l) => l.eventId === 6953);
  assert.equal(refusals.length, 3);
  assert.equal(refusals[0]!.principal, 'WS9$@PWSYNC.TEST');
  assert.equal(refusals[0]!.domain, 'pwsync.test');
  assert.match(String(refusals[0]!.fix), /allowReadOnlyDCs/);

  dir.failWith = new LdapError('ldaps://test (search sub DC=pwsync,DC=test): cannot reach the directory (ECONNREFUSED)', true);
  now += 700_000;
  for (let i = 0; i < 2; i++) {
    await assert.rejects(check.authorize(kerberos('DC1$@PWSYNC.TEST'), d), (e: unknown) =>
      e instanceof HubRefusal && e.refusal === 'unavailable' && /cannot check whether DC1\$@PWSYNC\.TEST .*ECONNREFUSED.*keeps its changes/.test(e.message));
  }
  assert.equal(dir.asked.length, 6);
  dir.failWith = undefined;
  await check.authorize(kerberos('DC1$@PWSYNC.TEST'), d);
  await check.close();
});

test('callers that ask at once share one lookup', async () => {
  const dir = new TableDirectory({ 'DC1$': DC1 });
  const check = createDcAuthorizer({ domains: [domain()], baseDir: '/', log: pino({ level: 'silent' }), directoryFor: () => dir });
  await Promise.all(Array.from({ length: 5 }, () => check.authorize(kerberos('DC1$@PWSYNC.TEST'), domain())));
  assert.equal(dir.asked.length, 1);
});

test('TLS alone: no principal to check, accepted as before; Kerberos without a directory: refused, saying what to set', async () => {
  const { log } = logged();
  const d = domain();
  const check = createDcAuthorizer({ domains: [d], baseDir: '/', log });
  await check.authorize({ principal: 'anonymous@tls', mechanism: 'tls', peer: 'x' }, d);
  await assert.rejects(check.authorize(kerberos('DC1$@PWSYNC.TEST'), d), (e: unknown) =>
    e instanceof HubRefusal && e.refusal === 'forbidden' && /domain pwsync\.test has no directory.*set domains\[\]\.directory/.test(e.message));
  await assert.rejects(check.lookupSpn('PWSYNC/hub.pwsync.test'), /no domain has a directory/);
});

test('a caller named by its client certificate is looked up by dNSHostName and judged like a Kerberos principal', async () => {
  const dir = new TableDirectory({
    'dc1.pwsync.test': DC1,
    'ws1.pwsync.test': account(`CN=WS1,CN=Computers,${BASE}`, { uac: 0x1000, group: 515 }),
    'rodc1.pwsync.test': RODC,
    'twice.pwsync.test': [DC1, RODC],
  });
  const { log, lines } = logged();
  const d = domain();
  const check = createDcAuthorizer({ domains: [d], baseDir: '/', log, directoryFor: () => dir });
  await check.authorize(certificate('dc1.pwsync.test'), d);
  assert.match(dir.asked[0]!, /^\(&\(objectClass=computer\)\(dNSHostName=dc1\.pwsync\.test\)\)$/);
  const refused = async (name: string, reason: RegExp): Promise<void> => {
    await assert.rejects(check.authorize(certificate(name), d), (e: unknown) => e instanceof HubRefusal && e.refusal === 'forbidden' && reason.test(e.message), name);
  };
  await refused('ws1.pwsync.test', /^ws1\.pwsync\.test is not a writable domain controller of pwsync\.test: CN=WS1,CN=Computers,DC=pwsync,DC=test is not in OU=Domain Controllers/);
  await refused('dc9.pwsync.test', /no account with dNSHostName dc9\.pwsync\.test under DC=pwsync,DC=test/);
  await refused('rodc1.pwsync.test', /read-only domain controller.*allowReadOnlyDCs: true/);
  await refused('twice.pwsync.test', /is not one domain controller of pwsync\.test: .* both match with dNSHostName twice\.pwsync\.test.*pwsync tls client/);
  // A Kerberos principal and a certificate name are cached apart: the same text is not the same caller.
  await assert.rejects(check.authorize(kerberos('dc1.pwsync.test'), d), /is a principal of realm \(none\)/);
  const events = lines.filter((l) => l.eventId === 6953).map((l) => l.principal);
  assert.deepEqual(events, ['ws1.pwsync.test', 'dc9.pwsync.test', 'rodc1.pwsync.test', 'twice.pwsync.test', 'dc1.pwsync.test']);
  await check.close();
});
