import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DOMAIN, Lab, spawnPwsync, until } from '../../cli/lab.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { queryStatus } from '../../hub/admin.ts';
import { SETTLED_STATES, type OperationStatus } from '../../hub/records.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';
import { TEST_PASSWORD_PREFIX, testPassword } from '../lib/passwords.ts';
import { startPostgres, type Postgres } from '../lib/postgres.ts';

/**
 * A PostgreSQL login end to end: `pwsync hook` → notifier → hub → join `id = sAMAccountName` on the
 * roles query → builtin:sql-login → ALTER ROLE with a SCRAM verifier over verify-full TLS → alice
 * logs in to the private PostgreSQL 15 with the new password (a real connection, not a query).
 */
const CONNECTOR = 'appdb';
let srv: Postgres;
let lab: Lab;
let broker: ReturnType<typeof openSqliteBroker>;
let state: HubState;

async function hook(sam: string, password: Buffer): Promise<void> {
  const p = spawnPwsync(['hook', '--socket', lab.hookSocket, '--domain', DOMAIN, '--sam', sam], { stdin: Buffer.concat([password, Buffer.from('\n')]) });
  assert.equal(await p.exited, 0, `pwsync hook failed: ${p.stderr()}`);
}

async function settled(sam: string, count: number): Promise<OperationStatus[]> {
  return until(`${count} settled operation(s) for ${sam}`, 60_000, async () => {
    const o = (await queryStatus(state, { account: { samAccountName: sam }, connector: CONNECTOR })).operations;
    return o.length >= count && o.every((x) => SETTLED_STATES.has(x.state)) ? o.sort((a, b) => a.changeTime - b.changeTime) : undefined;
  });
}

before(async () => {
  srv = await startPostgres(testDir('sql-pg-e2e-server'));
  lab = await Lab.create({
    root: testDir('sql-pg-e2e'), connectors: [],
    hubConnectors: [{
      name: CONNECTOR, kind: 'postgresql', enabled: true,
      connection: {
        host: '127.0.0.1', port: srv.port, database: 'postgres', user: 'pwsync', password: { fromFile: srv.pwsyncPasswordFile },
        tls: { ca: srv.caFile, serverName: 'localhost' }, poolSize: 2, timeout: '5s',
        objects: { query: `SELECT rolname AS id FROM pg_roles WHERE rolname IN ('alice', 'bob')`, anchor: 'id' },
      },
      join: [{ target: 'id', source: 'sAMAccountName' }],
      extension: { module: 'builtin:sql-login', settings: {} },
      retry: { count: 20, interval: '500ms' }, concurrency: 2, batchSize: 10, timeout: '15s',
    }],
  });
  await lab.startHub();
  await lab.startNotifier();
  broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
  state = await HubState.open(broker);
});

after(async () => {
  await broker?.close();
  await lab?.stopAll();
  await srv?.stop();
});

test('pwsync hook → PostgreSQL: alice logs in with the new password, the old one is refused, no password in the server log', async () => {
  const first = testPassword('pg-e2e-first \'q\' \\ $$').toString('utf8');
  const second = testPassword('pg-e2e-second\u00A0é€ 日本').toString('utf8');
  await hook('alice', Buffer.from(first, 'utf8'));
  const [op1] = await settled('alice', 1);
  assert.equal(op1!.state, 'successful', op1!.reason);
  assert.ok(await srv.logsIn('alice', first));
  await hook('alice', Buffer.from(second, 'utf8'));
  const [, op2] = await settled('alice', 2);
  assert.equal(op2!.state, 'successful', op2!.reason);
  assert.equal(op2!.attempts, 1);
  assert.ok(await srv.logsIn('alice', second), 'alice logs in with the new password');
  assert.ok(!(await srv.logsIn('alice', first)), 'the old password is refused');
  const log = readFileSync(srv.logFile, 'utf8');
  assert.match(log, /ALTER ROLE "alice" PASSWORD 'SCRAM-SHA-256\$/);
  assert.ok(!log.includes(TEST_PASSWORD_PREFIX), 'no test password in the PostgreSQL log');
});
