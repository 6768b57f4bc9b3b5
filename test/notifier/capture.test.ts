import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { subjectToken, type Broker, type Consumer } from '../../core/broker.ts';
import { keyringOf, open, privateRecipientFromPem, recipientFromPem, seal, type Binding } from '../../core/envelope.ts';
import type { AccountRef } from '../../core/extension.ts';
import { generateRecipientKeys } from '../../core/keys.ts';
import { Secret } from '../../core/secret.ts';
import { createCapture, holdSubject, type Capture } from '../../notifier/capture.ts';
import type { SealedCapture } from '../../notifier/hook-protocol.ts';
import { HookProtocolError } from '../../notifier/hook-protocol.ts';
import { decodeNotice, noticeConsumer, noticeSubject } from '../../notifier/notice.ts';
import { decodeQueuedChange, deliverConsumer, deliverSubject } from '../../notifier/queued-change.ts';
import { ScopeUnavailable, type Scope, type ScopeDecision } from '../../notifier/scope.ts';
import { testPassword } from '../lib/passwords.ts';
import { capturingLog, tempDir } from './helpers.ts';

/**
 * Capture routing against the real embedded broker: scope per target (sent, notice, held), the
 * hold queue keeping order until the scope can be decided, sealed changes from a capturer, and
 * the password-version dedupe a Samba replay relies on. The scope is a table the test controls;
 * the LDAP scope is tested against a real DC in test/samba/.
 */
const keys = [generateRecipientKeys(), generateRecipientKeys()];
const targets = ['in-hub', 'other-hub'].map((name, i) => ({ name, token: subjectToken(name), recipient: recipientFromPem(keys[i]!.publicPem) }));
const keyrings = keys.map((k) => keyringOf([privateRecipientFromPem(k.privatePem)]));

/** target → account → decision; 'down' throws ScopeUnavailable. */
const table = new Map<string, ScopeDecision | 'down'>();
const scope: Scope = {
  decide: async (account, target) => {
    const d = table.get(`${target}/${account.samAccountName}`) ?? { send: true };
    if (d === 'down') throw new ScopeUnavailable('the directory at ldaps://dc1 did not answer');
    return d;
  },
};

const dir = tempDir();
const { log, lines } = capturingLog();
let broker: Broker;
let capture: Capture;
const deliver: Consumer[] = [];
const notices: Consumer[] = [];

before(async () => {
  broker = openSqliteBroker({ file: join(dir, 'notifier.db') });
  for (const t of targets) {
    deliver.push(await broker.consumer(deliverConsumer(t.token), deliverSubject(t.token)));
    notices.push(await broker.consumer(noticeConsumer(t.token), noticeSubject(t.token)));
  }
  capture = await createCapture({ broker, targets, clockToleranceMs: 300_000, scope, domain: 'corp.example', host: 'dc1.corp.example', log, holdRetryMs: 50, holdRetryMaxMs: 100 });
});

after(async () => {
  await capture.stop();
  await broker.close();
});

const account = (sam: string): AccountRef => ({
  domain: 'corp.example', samAccountName: sam, objectGuid: `guid-${sam}`, objectSid: '', upn: '', dn: `CN=${sam},CN=Users,DC=corp,DC=example`,
});

async function drain(c: Consumer): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let i = 0; i < 50; i++) {
    const ds = await c.fetch({ max: 100, expiresMs: 50 });
    if (ds.length === 0) break;
    for (const d of ds) {
      out.push(d.data);
      await d.ack();
    }
  }
  return out;
}

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('an out-of-scope target gets a notice with the reason and no sealed copy; the other gets the change', async () => {
  table.set('other-hub/carol', { send: false, reason: 'out of scope: member of exclusion group pwsync-exclude' });
  const id = await capture.clear({ account: account('carol') }, Secret.adopt(testPassword('carol-1')));
  const [inHub, otherHub] = [await drain(deliver[0]!), await drain(deliver[1]!)];
  assert.equal(inHub.length, 1);
  assert.equal(otherHub.length, 0, 'nothing sealed is queued for the target that must not have it');
  const n = (await drain(notices[1]!)).map(decodeNotice);
  assert.equal(n.length, 1);
  assert.equal(n[0]!.noticeId.toString('hex'), id);
  assert.ok(n[0]!.account);
  assert.equal(n[0]!.account?.samAccountName, 'carol');
  assert.match(n[0]!.reason, /exclusion group pwsync-exclude/);
  assert.ok(lines.some((l) => l.eventId === 6958 && l.target === 'other-hub'), 'event 6958 names the target');
  assert.equal((await drain(notices[0]!)).length, 0);
});

test('an undecidable scope holds the change sealed; newer changes wait behind it; all move on in order once the directory answers', async () => {
  table.set('in-hub/dave', 'down');
  const first = await capture.clear({ account: account('dave'), changeTime: 1000 }, Secret.adopt(testPassword('dave-1')));
  table.set('in-hub/erin', { send: true });
  const second = await capture.clear({ account: account('erin'), changeTime: 2000 }, Secret.adopt(testPassword('erin-1')));
  assert.equal((await drain(deliver[0]!)).length, 0, 'nothing passes the held change');
  assert.equal((await drain(deliver[1]!)).length, 2, 'the other target is not held up');

  assert.ok(lines.some((l) => l.eventId === 6957 && String(l.error).includes('ldaps://dc1')), 'event 6957 says why');
  const held = await broker.consumer('peek-hold', holdSubject(targets[0]!.token));
  assert.equal((await held.info()).pending, 2);

  table.delete('in-hub/dave');
  const moved: string[] = [];
  await waitFor('the held changes to move on', async () => {
    for (const b of await drain(deliver[0]!)) moved.push(decodeQueuedChange(b).changeId.toString('hex'));
    return moved.length === 2;
  });
  assert.deepEqual(moved, [first, second], 'order kept');
  const again = await capture.clear({ account: account('frank') }, Secret.adopt(testPassword('frank-1')));
  const direct = await drain(deliver[0]!);
  assert.equal(decodeQueuedChange(direct[0]!).changeId.toString('hex'), again, 'once drained, changes go straight to delivery');
  const opened = open(decodeQueuedChange(direct[0]!).sealedPassword, keyrings[0]!);
  assert.ok(opened.password.use((b) => b.equals(testPassword('frank-1'))));
  opened.password.dispose();
  assert.equal((await drain(deliver[1]!)).length, 1, 'the other target had frank straight away too');
});

function sealedFor(sam: string, kvno: number, label: string, opts: { keys?: number[]; baseline?: boolean; lie?: boolean } = {}): SealedCapture {
  const a = account(sam);
  const changeId = randomBytes(16);
  const binding: Binding = {
    changeId, changeTime: 5000 + kvno, domain: a.domain, samAccountName: a.samAccountName, objectGuid: a.objectGuid,
    objectSid: a.objectSid, upn: a.upn, dn: a.dn, sourceHost: 'dc1.corp.example',
  };
  const sealBinding = opts.lie ? { ...binding, samAccountName: 'administrator' } : binding;
  return {
    account: a, changeTime: binding.changeTime, changeId, version: { objectGuid: a.objectGuid, kvno },
    ...(opts.baseline ? { baseline: true } : {}),
    envelopes: (opts.keys ?? [0, 1]).map((i) => seal(recipientFromPem(keys[i]!.publicPem), sealBinding, Secret.adopt(testPassword(label)))),
  };
}

test('a sealed change is queued with the envelope sealed for each target\'s key', async () => {
  const c = sealedFor('gina', 3, 'gina-3');
  const id = await capture.sealed(c);
  assert.equal(id, c.changeId.toString('hex'));
  for (const i of [0, 1]) {
    const [b] = await drain(deliver[i]!);
    const q = decodeQueuedChange(b!);
    assert.ok(q.sealedPassword.equals(c.envelopes[i]!), `target ${i} gets the envelope for its own key`);
  }
});

test('a sealed change without an envelope for a target, or bound to another account, is refused and queues nothing', async () => {
  await assert.rejects(capture.sealed(sealedFor('hank', 1, 'hank-1', { keys: [0] })), (e: unknown) => e instanceof HookProtocolError && /no envelope sealed for target other-hub's key/.test(e.message));
  await assert.rejects(capture.sealed(sealedFor('hank', 2, 'hank-2', { lie: true })), (e: unknown) => e instanceof HookProtocolError && /bound to another samAccountName/.test(e.message));
  assert.deepEqual([(await drain(deliver[0]!)).length, (await drain(deliver[1]!)).length], [0, 0]);
  const retry = sealedFor('hank', 2, 'hank-2');
  await capture.sealed(retry);
  assert.equal((await drain(deliver[0]!)).length, 1, 'a refused version is not remembered: its corrected replay goes through');
});

test('a password version is queued once: replays and non-password changes are dropped; a baseline records without sending', async () => {
  await capture.sealed(sealedFor('ivy', 4, 'ivy-4'));
  await capture.sealed(sealedFor('ivy', 4, 'ivy-4'));
  await capture.sealed(sealedFor('ivy', 3, 'ivy-3'));
  assert.equal((await drain(deliver[0]!)).length, 1);
  await capture.sealed(sealedFor('jack', 7, 'jack-7', { baseline: true }));
  await capture.sealed(sealedFor('jack', 7, 'jack-7'));
  assert.equal((await drain(deliver[0]!)).length, 0, 'the baseline version is not sent later either');
  await capture.sealed(sealedFor('jack', 8, 'jack-8'));
  assert.equal((await drain(deliver[0]!)).length, 1, 'the next version is');
});
