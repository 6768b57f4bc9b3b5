import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { NotifierConfig } from '../../config/schema.ts';
import { generateTlsMaterial, type TlsMaterial } from '../../core/tls-gen.ts';
import { Secret } from '../../core/secret.ts';
import { sendHookChange } from '../../notifier/hook-client.ts';
import { startNotifier, type RunningNotifier } from '../../notifier/service.ts';
import { testPassword } from '../lib/passwords.ts';
import { capturingLog, tempDir, waitFor } from './helpers.ts';
import { TestHub } from './test-hub.ts';

/**
 * A notifier never drops a change it could keep (issue 15, part 1), against a hub over gRPC/TLS
 * whose Report answer names its keys: a key the hub does not open holds the target, a change the
 * hub refuses as sealed for another key is parked, and both are sent once the key is right.
 */
let tls: TlsMaterial;
const running: Array<{ stop(): Promise<void> }> = [];

before(async () => {
  tls = await generateTlsMaterial({ hosts: ['localhost', '127.0.0.1'] });
});

after(async () => {
  for (const r of running.reverse()) await r.stop().catch(() => undefined);
});

async function world(setup: (hub: TestHub) => void): Promise<{ hub: TestHub; notifier: RunningNotifier; log: ReturnType<typeof capturingLog> }> {
  const dir = tempDir();
  const ca = join(dir, 'ca.pem');
  writeFileSync(ca, tls.caCertPem);
  const hub = new TestHub('hub1', dir, tls);
  setup(hub);
  await hub.start();
  running.push(hub);
  const config: NotifierConfig = {
    notifier: {
      domain: 'corp.example', host: 'dc1.corp.example', dataDir: join(dir, 'data'),
      hook: { socket: join(dir, 'hook.sock'), mode: '0600', timeout: 5000 },
      log: { level: 'debug' } as NotifierConfig['notifier']['log'], queue: { warnAge: 3_600_000, maxAge: 72 * 3_600_000 }, shutdownGrace: 5000,
      scopeCacheTtl: 60_000, report: 200, clockTolerance: 300_000,
    },
    targets: [{
      name: 'hub1', enabled: true, address: hub.address, tls: { ca, serverName: 'localhost' }, publicKey: hub.publicKeyFile,
      retryInterval: 200, maxRetryInterval: 400, batchSize: 10, timeout: 3000,
    }],
  };
  const log = capturingLog();
  const notifier = await startNotifier(config, log.log);
  running.push(notifier);
  return { hub, notifier, log };
}

const OTHER_KEY = 'ffeeddccbbaa99887766554433221100';

test('a hub that does not open the notifier\'s key: 6987 names both, the hook change is held (not sent) and reported pending, then resealed and sent once a report confirms the key', async () => {
  const { hub, notifier, log } = await world((h) => { h.reportKeyIds = [OTHER_KEY]; });
  const mismatch = await waitFor('event 6987', () => log.events(6987)[0]);
  assert.equal(mismatch.sealingKeyId, hub.keyId);
  assert.deepEqual(mismatch.hubKeyIds, [OTHER_KEY]);

  const password = testPassword('held-by-key');
  const { changeId } = await sendHookChange(notifier.hookPath, { domain: 'corp.example', samAccountName: 'alice' }, Secret.adopt(Buffer.from(password)), 5000);
  const reported = await waitFor('the change in a report\'s pending list', () => hub.lastReport?.pending.find((p) => p.account?.samAccountName === 'alice'));
  assert.match(reported.held, new RegExp(`the notifier's key for this hub is ${hub.keyId}, the hub has key ${OTHER_KEY} \\(6987\\)`));
  assert.ok(reported.changeTimeMs > 0);
  assert.equal(hub.lastReport?.sealingKeyId, hub.keyId);
  assert.ok((hub.lastReport?.queued ?? 0) >= 1);
  assert.equal(hub.begun, 0, 'nothing was sent to a hub that would refuse it');

  // The hub now opens the notifier's key (the admin put it back): the next report releases the change.
  hub.reportKeyIds = [OTHER_KEY, hub.keyId];
  const got = await waitFor('the change at the hub', () => hub.received.find((r) => r.changeId === changeId));
  assert.ok(got.password.equals(password), 'resealed for the hub\'s key, the same password');
  await waitFor('6989: sealing for a retired key', () => log.events(6989)[0]);
  await waitFor('a report with nothing pending', () => (hub.lastReport && hub.lastReport.pending.length === 0 && hub.lastReport.queued === 0 ? true : undefined));
  assert.equal(log.events(6946).length, 0);
});

test('a change the hub refuses as sealed for another key is parked (6988), never dropped, and sent once the hub opens that key again', async () => {
  const { hub, notifier, log } = await world((h) => { h.reportKeyIds = [h.keyId]; h.refuseOwnKey = true; });
  await waitFor('a first report', () => hub.reports > 0);
  const password = testPassword('parked');
  const { changeId } = await sendHookChange(notifier.hookPath, { domain: 'corp.example', samAccountName: 'bob' }, Secret.adopt(Buffer.from(password)), 5000);
  const parked = await waitFor('event 6988', () => log.events(6988)[0]);
  assert.equal(parked.changeId, changeId);
  assert.equal(parked.keyId, hub.keyId);
  const reported = await waitFor('the parked change in a report', () => hub.lastReport?.pending.find((p) => p.account?.samAccountName === 'bob' && /parked/.test(p.held)));
  assert.match(reported.held, /refused it as sealed for key/);
  // Refused again after each release while the hub still refuses it: parked again each time, not lost.
  await waitFor('a second refusal', () => (log.events(6988).length >= 2 ? true : undefined));
  hub.refuseOwnKey = false;
  const got = await waitFor('the parked change at the hub', () => hub.received.find((r) => r.changeId === changeId));
  assert.ok(got.password.equals(password));
  assert.equal(log.events(6946).length, 0, 'never dropped as rejected');
});
