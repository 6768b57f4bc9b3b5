import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { AuditTrail, localActor } from '../../hub/audit.ts';
import { testDir } from '../lib/dirs.ts';

test('the audit trail keeps every entry in time order, survives a reopen, and lists from a time', async () => {
  const file = path.join(testDir('audit'), 'hub.db');
  let broker = openSqliteBroker({ file });
  const { actor, from } = localActor();
  assert.ok(actor.length > 0 && from.length > 0);
  try {
    const trail = await AuditTrail.open(broker);
    await trail.record({ at: 2_000, actor, from, action: 'retry', subject: 'op-b', result: 'ok' });
    await trail.record({ at: 1_000, actor, from, action: 'retry', subject: 'op-a', result: 'refused', detail: 'not failed' });
    await trail.record({ at: 2_000, actor, from, action: 'latest-clear', subject: 'hr-csv/alice', result: 'ok' });
  } finally {
    await broker.close();
  }
  broker = openSqliteBroker({ file });
  try {
    const trail = await AuditTrail.open(broker);
    const all = await trail.list();
    assert.deepEqual(all.map((e) => e.at), [1_000, 2_000, 2_000]);
    assert.equal(all[0]!.subject, 'op-a');
    assert.equal(all[0]!.detail, 'not failed');
    assert.deepEqual((await trail.list({ since: 1_500 })).map((e) => e.action).sort(), ['latest-clear', 'retry']);
    assert.equal((await trail.list({ limit: 1 })).length, 1);
  } finally {
    await broker.close();
  }
});
