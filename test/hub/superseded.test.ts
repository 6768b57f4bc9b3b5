import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { storedHash } from '../../cli/demo.ts';
import { DOMAIN, Lab, until } from '../../cli/lab.ts';
import { loadHubConfig } from '../../config/load.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { recipientFromPem, seal, type Binding } from '../../core/envelope.ts';
import { silentLogger } from '../../core/log.ts';
import { operationId } from '../../core/operation-id.ts';
import { Secret } from '../../core/secret.ts';
import { verifyPassword } from '../../extensions/examples/scrypt-hash/verify.ts';
import { ConnectorWorker } from '../../hub/dispatcher.ts';
import { encode, type OperationRecord } from '../../hub/records.ts';
import { loadKeyring } from '../../hub/service.ts';
import { HubState } from '../../hub/state.ts';
import { closeTarget, openTarget } from '../../hub/targets.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * A re-queued set-operation (`pwsync retry`, recovery) leaves its older delivery behind; when that
 * one comes, the dispatcher drops it and applies only the delivery the status names.
 */
test('the delivery left behind by a re-queue is dropped; the one the status names is applied, once', async () => {
  const lab = await Lab.create({
    root: testDir('superseded'),
    connectors: [{ name: 'csv', kind: 'delimited', file: 'people.csv', content: 'id,login,pwdHash\n1,alice,\n', join: [{ target: 'login', source: 'sAMAccountName' }] }],
  });
  mkdirSync(path.join(lab.root, 'hub-data'));
  const config = await loadHubConfig(lab.hubConfig);
  const broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
  const target = await openTarget(config.connectors[0]!, config.baseDir, await broker.kv('joins'), silentLogger());
  const abort = new AbortController();
  let run: Promise<void> | undefined;
  try {
    const state = await HubState.open(broker);
    const changeId = randomBytes(16);
    const binding: Binding = { changeId, changeTime: Date.now(), domain: DOMAIN, samAccountName: 'alice', objectGuid: '', objectSid: '', upn: '', dn: '', sourceHost: 'dc1' };
    const recipient = recipientFromPem(readFileSync(path.join(lab.root, 'keys', 'hub.pub')));
    // Two envelopes of one change, told apart by their passwords: whichever lands in the file was applied.
    const sealed = (label: string): string => seal(recipient, binding, Secret.adopt(testPassword(label))).toString('base64');
    const opId = operationId(changeId.toString('hex'), 'csv', '1');
    const op = (envelope: string): OperationRecord => ({
      opId, changeId: changeId.toString('hex'), connector: 'csv', objectId: '1', changeTime: binding.changeTime, envelope,
      account: { domain: DOMAIN, samAccountName: 'alice', objectGuid: '', objectSid: '', upn: '', dn: '' },
    });
    const requeuedAs = `${opId}.requeue.1.ab`;
    const current = op(sealed('current'));
    await state.putOperation({
      opId, changeId: current.changeId, connector: 'csv', objectId: '1', account: current.account, changeTime: current.changeTime,
      state: 'queued', attempts: 0, updatedAt: Date.now(), envelope: current.envelope, delivery: requeuedAs,
    });
    // The left-behind one is older in the queue, so it comes first.
    await broker.publish('ops.csv', encode(op(sealed('left-behind'))), { msgId: opId });
    await broker.publish('ops.csv', encode(current), { msgId: requeuedAs });
    run = new ConnectorWorker(target, broker, state, loadKeyring(config.hub.keys), { clockToleranceMs: config.hub.clockTolerance }).run(abort.signal);
    await until('both deliveries settled', 30_000, async () => ((await broker.pendingMsgIds('ops-csv')).size === 0 && (await state.getOperation(opId))?.state === 'successful' ? true : undefined));
    const done = (await state.getOperation(opId))!;
    assert.equal(done.attempts, 1, 'applied once');
    const hash = await storedHash(lab.hubConfig, 'csv', 'alice');
    assert.equal(await verifyPassword(hash!, testPassword('current')), true, 'the delivery the status names was applied');
    assert.equal(await verifyPassword(hash!, testPassword('left-behind')), false, 'the one left behind was not');
  } finally {
    abort.abort();
    await run;
    await closeTarget(target);
    await broker.close();
  }
});
