import assert from 'node:assert/strict';
import { readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { storedHash } from '../../cli/demo.ts';
import { DOMAIN, Lab, spawnPwsync, until } from '../../cli/lab.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { verifyPassword } from '../../extensions/examples/scrypt-hash/verify.ts';
import { AuditTrail } from '../../hub/audit.ts';
import type { OperationStatus } from '../../hub/records.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * After a target comes back, it catches up (issue 15, part 4): with retry.failedWhenReachable the
 * hub probes a target whose operations ran out of retries and re-queues them once it answers; a
 * connector without it keeps its failures for an admin.
 */
const csvOf = (rows: string[]): string => `id,login,pwdHash\n${rows.map((r, i) => `${i + 1},${r},`).join('\n')}\n`;

let lab: Lab;

async function hook(sam: string, password: Buffer): Promise<void> {
  const p = spawnPwsync(['hook', '--socket', lab.hookSocket, '--domain', DOMAIN, '--sam', sam], { stdin: Buffer.concat([password, Buffer.from('\n')]) });
  assert.equal(await p.exited, 0, `pwsync hook failed: ${p.stderr()}`);
}

async function withState<T>(fn: (s: HubState, b: ReturnType<typeof openSqliteBroker>) => Promise<T>): Promise<T> {
  const broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
  try {
    return await fn(await HubState.open(broker), broker);
  } finally {
    await broker.close();
  }
}

const opWith = (what: string, connector: string, pick: (o: OperationStatus) => boolean): Promise<OperationStatus> =>
  until(what, 30_000, () => withState(async (s) => (await s.listOperations()).find((o) => o.connector === connector && pick(o))));

before(async () => {
  const connector = { kind: 'delimited' as const, content: csvOf(['dave']), join: [{ target: 'login', source: 'sAMAccountName' }] };
  lab = await Lab.create({
    root: testDir('catch-up'),
    connectors: [
      { ...connector, name: 'auto', file: 'auto.csv', retry: { count: 1, interval: '200ms', failedWhenReachable: true, probeEvery: '1s' } },
      { ...connector, name: 'manual', file: 'manual.csv', retry: { count: 1, interval: '200ms' } },
    ],
  });
  await lab.startHub();
  await lab.startNotifier();
});

after(async () => {
  await lab?.stopAll();
});

test('operations that ran out of retries while the target was away are applied once it answers again, with no admin action', async () => {
  await hook('dave', testPassword('dave-1'));
  for (const c of ['auto', 'manual']) await opWith(`dave's first change on ${c}`, c, (o) => o.state === 'successful');
  for (const c of ['auto', 'manual']) renameSync(lab.targetFile(c), `${lab.targetFile(c)}.away`);
  const pw = testPassword('dave-2 €');
  await hook('dave', pw);
  const failed = new Map<string, OperationStatus>();
  for (const c of ['auto', 'manual']) {
    const o = await opWith(`dave's second change failed on ${c}`, c, (x) => x.state === 'failed');
    assert.equal(o.eventId, 6941, o.reason);
    failed.set(c, o);
  }
  // While the target is away, the probes fail and the operation stays failed.
  await new Promise((r) => setTimeout(r, 3000)); // three probes (probeEvery: 1s)
  assert.equal((await withState((s) => s.getOperation(failed.get('auto')!.opId)))!.state, 'failed', 'not re-queued while the target does not answer');
  for (const c of ['auto', 'manual']) renameSync(`${lab.targetFile(c)}.away`, lab.targetFile(c));
  const done = await opWith('the failed operation applied after the target came back', 'auto', (o) => o.opId === failed.get('auto')!.opId && o.state === 'successful');
  assert.equal(done.attempts, 1, 'a retried operation starts counting again');
  assert.equal(await verifyPassword((await storedHash(lab.hubConfig, 'auto', 'dave'))!, pw), true);
  const audit = await withState(async (_s, b) => (await AuditTrail.open(b)).list());
  const entry = audit.find((e) => e.subject === done.opId);
  assert.equal(entry?.actor, 'hub lab-hub');
  assert.equal(entry?.action, 'retry');
  assert.match(entry!.detail!, /connector auto answered again; was event 6941/);
  const logged = readFileSync(lab.hubLog, 'utf8').split('\n').filter((l) => l.includes('"eventId":6984'));
  assert.equal(logged.length, 1);
  assert.match(logged[0]!, new RegExp(`"opId":"${done.opId}"`));
  // The connector without failedWhenReachable waits for an admin, however long its target has been back.
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal((await withState((s) => s.getOperation(failed.get('manual')!.opId)))!.state, 'failed');
});
