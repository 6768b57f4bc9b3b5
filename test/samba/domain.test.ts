import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { until } from '../../cli/lab.ts';
import { decodeQueuedChange } from '../../notifier/queued-change.ts';
import { testPassword } from '../lib/passwords.ts';
import { kpasswd, ldapsReset, logLines, operations, settled, startSambaLab, targetHas, type SambaLab } from './helpers.ts';

/**
 * The whole domain side at once, on a real Samba AD DC: capture through syncpasswords, the
 * notifier authenticating as DC1$ with Kerberos (the DC's own KDC) to the hub's SPN, the hub
 * checking over LDAPS that DC1$ is a writable DC of pwsync.test, and the target's scope
 * (inclusion group pwsync-sync, reached through two nested groups; exclusion group
 * pwsync-exclude). Out-of-scope changes never leave the DC, and the hub's status says why.
 */
let s: SambaLab;

before(async () => {
  s = await startSambaLab('samba-domain', (dc, root) => {
    const f = dc.facts;
    const directory = { url: f.ldapsUrl, ca: f.caPem, serverName: f.dcHost, bindDn: f.reader.bindDn, passwordFile: f.reader.passwordFile };
    return {
      kerberos: {
        hub: { keytab: f.hub.keytab, service: f.hub.service, replayCache: path.join(root, 'hub.rcache2'), krb5Config: f.krb5Conf },
        notifier: { keytab: f.dc.keytab, principal: f.dc.principal, krb5Config: f.krb5Conf },
        service: f.hub.service, realm: f.realm,
      },
      directory, notifierDirectory: directory, reportInterval: '1s',
      targets: [{ name: 'lab-hub', scope: { include: 'pwsync-sync', exclude: 'pwsync-exclude' } }],
    };
  });
});

after(async () => {
  await s?.close();
});

function pwsync(...args: string[]): string {
  const r = spawnSync(process.execPath, [path.join(import.meta.dirname, '../../bin/pwsync.mjs'), ...args], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

/** `pwsync status --account`: undefined while the hub has heard nothing of the account ("no such account", exit 2). */
function accountStatus(account: string): string | undefined {
  const r = spawnSync(process.execPath, [path.join(import.meta.dirname, '../../bin/pwsync.mjs'), 'status', '--config', s.lab.hubConfig, '--account', account], { encoding: 'utf8', timeout: 60_000 });
  if (r.status === 2 && /no such account/.test(r.stderr)) return undefined;
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

/** What the notifier's queues hold for an account: deliveries and held changes (sealed), by subject. */
function queuedInNotifier(sam: string): string[] {
  const db = new Database(path.join(s.lab.root, 'notifier-data', 'notifier.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT subject, data FROM messages').all() as Array<{ subject: string; data: Buffer }>;
    return rows.filter((r) => /^(deliver|hold)\./.test(r.subject) && decodeQueuedChange(r.data).account?.samAccountName === sam).map((r) => r.subject);
  } finally {
    db.close();
  }
}

test('alice, a member of the inclusion group through two nested groups, changes her password: it arrives, authenticated as DC1$ and checked as a DC', async () => {
  const alice1 = testPassword('dom-al-1');
  const r = await kpasswd(s.dc, 'alice', s.dc.users.alice.password, alice1);
  assert.equal(r.code, 0, r.output);
  const [op] = await settled(s, 'alice', 1);
  assert.equal(op!.state, 'successful', op!.reason);
  assert.equal(await targetHas(s, 'alice', alice1), true);
  const hubLog = logLines(s.lab.hubLog).join('\n');
  assert.doesNotMatch(hubLog, /"eventId":695[34]/, 'no refused caller, no failed authentication');
  assert.doesNotMatch(hubLog, /"eventId":6952/, 'the hub does not run on TLS alone');
  const dcs = await until('the hub to list DC1 as reporting', 20_000, () => {
    const out = pwsync('status', '--config', s.lab.hubConfig, '--dcs');
    return out.includes(s.dc.facts.dc.principal) ? out : undefined;
  });
  assert.match(dcs, /dc1\.pwsync\.test/i);
});

test('bob, a direct member, is reset by an admin over LDAPS: it arrives', async () => {
  const bob1 = testPassword('dom-bo-1');
  await ldapsReset(s.dc, s.dc.users.bob.dn, bob1);
  const [op] = await settled(s, 'bob', 1);
  assert.equal(op!.state, 'successful', op!.reason);
  assert.equal(await targetHas(s, 'bob', bob1), true);
});

test('carol (exclusion group) and dave (no group) never leave the DC, and the hub\'s status says why', async () => {
  assert.equal((await kpasswd(s.dc, 'carol', s.dc.users.carol.password, testPassword('dom-ca-1'))).code, 0);
  assert.equal((await kpasswd(s.dc, 'dave', s.dc.users.dave.password, testPassword('dom-da-1'))).code, 0);
  const carol = await until('the hub to know why carol\'s password did not arrive', 60_000, () => {
    const out = accountStatus('carol');
    return out !== undefined && /out of scope/.test(out) ? out : undefined;
  });
  assert.match(carol, /member of exclusion group pwsync-exclude/);
  const dave = await until('the hub to know why dave\'s password did not arrive', 60_000, () => {
    const out = accountStatus('dave');
    return out !== undefined && /out of scope/.test(out) ? out : undefined;
  });
  assert.match(dave, /not a member of inclusion group pwsync-sync/);
  assert.deepEqual(await operations(s, 'carol'), [], 'no set-operation for carol');
  assert.deepEqual(await operations(s, 'dave'), []);
  assert.deepEqual(queuedInNotifier('carol'), [], 'no sealed item for carol in any notifier queue');
  assert.deepEqual(queuedInNotifier('dave'), []);
  const notifierLog = logLines(s.lab.notifierLog).join('\n');
  assert.match(notifierLog, /"eventId":6958[^\n]*"account":"carol"|"account":"carol"[^\n]*"eventId":6958/);
});

test('erin\'s non-ASCII password arrives intact through the whole authenticated path', async () => {
  const erin1 = testPassword('dom-er ñüß 日本 ✓');
  assert.equal((await kpasswd(s.dc, 'erin', s.dc.users.erin.password, erin1)).code, 0);
  const [op] = await settled(s, 'erin', 1);
  assert.equal(op!.state, 'successful', op!.reason);
  assert.equal(await targetHas(s, 'erin', erin1), true);
});
