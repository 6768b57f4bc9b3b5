import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { purgeOperations } from '../../hub/admin.ts';
import type { OperationStatus } from '../../hub/records.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';

const H = 3_600_000;
const op = (opId: string, state: OperationStatus['state'], ageH: number, envelope?: string): OperationStatus => ({
  opId, changeId: opId, connector: 'c', objectId: 'o', changeTime: 0, state, attempts: 1, updatedAt: Date.now() - ageH * H,
  account: { domain: 'd', samAccountName: 's', objectGuid: '', objectSid: '', upn: '', dn: '' }, ...(envelope ? { envelope } : {}),
});

test('housekeeping drops old failures\' sealed passwords and forgets old settled operations only', async () => {
  const broker = openSqliteBroker({ file: path.join(testDir('purge'), 'hub.db') });
  try {
    const state = await HubState.open(broker);
    for (const o of [
      op('old-success', 'successful', 800), op('old-failure', 'failed', 800, 'c2VhbGVk'),
      op('failure-4d', 'failed', 96, 'c2VhbGVk'), op('failure-1h', 'failed', 1, 'c2VhbGVk'),
      op('retrying-old', 'retrying', 800, 'c2VhbGVk'), op('recent', 'successful', 1),
      op('old-superseded', 'superseded', 800), op('superseded-1h', 'superseded', 1),
    ]) await state.putOperation(o);
    assert.deepEqual(await purgeOperations(state, 72 * H, 30 * 24 * H), { sealed: 1, forgotten: 3 });
    const left = new Map((await state.listOperations()).map((o) => [o.opId, o]));
    assert.deepEqual([...left.keys()].sort(), ['failure-1h', 'failure-4d', 'recent', 'retrying-old', 'superseded-1h']);
    assert.equal(left.get('failure-4d')!.envelope, undefined, 'a failure older than keepFailedFor loses its sealed password');
    assert.equal(left.get('failure-1h')!.envelope, 'c2VhbGVk', 'a recent failure can still be retried');
    assert.equal(left.get('retrying-old')!.envelope, 'c2VhbGVk', 'an operation still in flight keeps everything');
  } finally {
    await broker.close();
  }
});
