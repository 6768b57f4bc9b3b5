import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TEST_PASSWORD_PREFIX, testPassword } from '../lib/passwords.ts';
import {
  expectedChangeId, kpasswd, ldapsReset, logLines, operations, queuedFor, settled, smbpasswd, startSambaLab, targetHas,
  type SambaLab,
} from './helpers.ts';

/**
 * Capture on a real Samba AD DC: a person's own change (kpasswd, `smbpasswd -r`) and an admin's
 * LDAPS reset travel syncpasswords → capture script (sealed at once) → notifier → hub → a file
 * target, each process real. Runs inside its own network namespace (test/env/in-netns.sh).
 */
let s: SambaLab;

before(async () => {
  s = await startSambaLab('samba-capture');
});

after(async () => {
  await s?.close();
});

test('the first start records a baseline and forwards no existing password', async () => {
  for (const sam of ['alice', 'bob', 'carol', 'dave', 'erin']) {
    assert.deepEqual(await operations(s, sam), [], `${sam}: nothing sent`);
    assert.deepEqual(queuedFor(s.lab, sam), [], `${sam}: nothing queued`);
  }
});

const alice1 = testPassword('al-kp-2');
const alice2 = testPassword('al-smb-3');

test('alice changes her own password with kpasswd: it arrives in the target, with the change id of her new key version', async () => {
  const r = await kpasswd(s.dc, 'alice', s.dc.users.alice.password, alice1);
  assert.equal(r.code, 0, r.output);
  const [op] = await settled(s, 'alice', 1);
  assert.equal(op!.state, 'successful', op!.reason);
  assert.equal(op!.changeId, await expectedChangeId(s.dc, 'alice'), 'the change id is derived from (objectGUID, msDS-KeyVersionNumber)');
  assert.equal(op!.account.objectGuid, s.dc.users.alice.objectGuid);
  assert.equal(op!.account.dn, s.dc.users.alice.dn);
  assert.equal(await targetHas(s, 'alice', alice1), true, 'the target verifies the new password');
  assert.equal(await targetHas(s, 'alice', s.dc.users.alice.password), false);
});

test('alice changes it again with smbpasswd -r (SAMR): it arrives', async () => {
  const r = await smbpasswd(s.dc, 'alice', alice1, alice2);
  assert.equal(r.code, 0, r.output);
  const ops = await settled(s, 'alice', 2);
  assert.deepEqual(ops.map((o) => o.state), ['successful', 'successful']);
  assert.equal(ops[1]!.changeId, await expectedChangeId(s.dc, 'alice'));
  assert.equal(await targetHas(s, 'alice', alice2), true);
});

test('an admin resets bob over LDAPS: it arrives', async () => {
  const bob1 = testPassword('bo-reset-2');
  await ldapsReset(s.dc, s.dc.users.bob.dn, bob1);
  const [op] = await settled(s, 'bob', 1);
  assert.equal(op!.state, 'successful', op!.reason);
  assert.equal(await targetHas(s, 'bob', bob1), true);
});

test('a change the DC rejects for history never leaves the DC', async () => {
  const rejected = await kpasswd(s.dc, 'alice', alice2, alice1);
  assert.notEqual(rejected.code, 0, 'kpasswd refuses a password from the history');
  assert.match(rejected.output, /history/);
  // Samba hands changes in order: once the next real change has arrived, the rejected one would have too.
  const alice3 = testPassword('al-kp-4');
  const r = await kpasswd(s.dc, 'alice', alice2, alice3);
  assert.equal(r.code, 0, r.output);
  const ops = await settled(s, 'alice', 3);
  assert.equal(ops.length, 3, 'one operation per committed change, none for the rejected one');
  assert.equal(queuedFor(s.lab, 'alice').length, 3, 'the notifier queued three changes for alice');
  assert.equal(await targetHas(s, 'alice', alice3), true);
});

test('erin\'s non-ASCII password arrives byte for byte', async () => {
  const erin1 = testPassword('er-2 ñüß 日本 ✓ 😀 Ωμέγα');
  const r = await kpasswd(s.dc, 'erin', s.dc.users.erin.password, erin1);
  assert.equal(r.code, 0, r.output);
  const [op] = await settled(s, 'erin', 1);
  assert.equal(op!.state, 'successful', op!.reason);
  assert.equal(await targetHas(s, 'erin', erin1), true);
  assert.equal(await targetHas(s, 'erin', Buffer.from(erin1.toString('utf8').normalize('NFD'))), false, 'a different normalisation is a different password');
});

test('no notifier or hub log line holds a test password', () => {
  for (const file of [s.lab.notifierLog, s.lab.hubLog]) {
    assert.equal(logLines(file).some((l) => l.includes(TEST_PASSWORD_PREFIX)), false, file);
  }
});
