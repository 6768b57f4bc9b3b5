import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DOMAIN, Lab, spawnPwsync, until } from '../../cli/lab.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { queryStatus } from '../../hub/admin.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';
import { startSlapd, type Slapd } from './slapd.ts';

/**
 * An ldap connector whose service account password is wrong (a real slapd answers the bind with
 * invalidCredentials): the person's row says 6942 with the directory's refusal, the event is
 * logged once (not a 6940 every few seconds), and the change waits at the hub, so that once the
 * password is fixed it arrives.
 */
const CONNECTOR = 'openldap';

let slapd: Slapd;
let lab: Lab;
let passwordFile: string;

before(async () => {
  slapd = await startSlapd(testDir('ldap-refused-slapd'), 0);
  const root = testDir('ldap-refused');
  passwordFile = path.join(root, 'service.password');
  writeFileSync(passwordFile, 'not-the-service-password\n', { mode: 0o600 });
  const e = slapd.env;
  lab = await Lab.create({
    root, connectors: [],
    hubConnectors: [{
      name: CONNECTOR, kind: 'ldap', enabled: true,
      connection: { url: e.SLAPD_LDAPS_URL, ca: e.SLAPD_CA, bindDn: e.SLAPD_SERVICE_DN, password: { fromFile: passwordFile }, baseDn: e.SLAPD_PEOPLE, timeout: '3s', poolSize: 1 },
      join: [{ target: 'uid', source: 'sAMAccountName' }],
      retry: { count: 3, interval: '1s' }, concurrency: 1, batchSize: 10, timeout: '15s',
    }],
  });
  await lab.startHub();
  await lab.startNotifier();
});

after(async () => {
  await lab?.stopAll();
  await slapd?.stop();
});

/** The hub log's lines with an event id for the connector. */
function logged(eventId: number): string[] {
  return readFileSync(lab.hubLog, 'utf8').split('\n').filter((l) => l.includes(`"eventId":${eventId}`) && l.includes(`"connector":"${CONNECTOR}"`));
}

test('a refused service account: 6942 on the person\'s row, logged once; fixed, the waiting change arrives', async () => {
  const pw = testPassword('refused-then-fixed');
  const hook = spawnPwsync(['hook', '--socket', lab.hookSocket, '--domain', DOMAIN, '--sam', 'alice'], { stdin: Buffer.concat([pw, Buffer.from('\n')]) });
  assert.equal(await hook.exited, 0, hook.stderr());

  const broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
  try {
    const state = await HubState.open(broker);
    const row = await until('alice\'s row to show the refusal', 30_000, async () => (await state.getSync({ domain: DOMAIN, samAccountName: 'alice' }, CONNECTOR)));
    assert.equal(row.state, 'out-of-sync');
    assert.equal(row.eventId, 6942);
    assert.match(row.reason!, new RegExp(`the directory refused the bind as ${slapd.env.SLAPD_SERVICE_DN!.replace(/[=,]/g, '\\$&')} \\(invalid credentials\\)`));
    assert.match(row.reason!, /the change waits at the hub and is joined again every 5s/);
    assert.deepEqual((await queryStatus(state, { account: { samAccountName: 'alice' } })).operations, [], 'no set-operation: the account could not be joined');
  } finally {
    await broker.close();
  }
  const status = spawnPwsync(['status', '--config', lab.hubConfig, '--account', `${DOMAIN}\\alice`]);
  assert.equal(await status.exited, 3, `a row out of sync: exit 3; ${status.stderr()}`);
  assert.match(status.stdout(), /corp\.example\.com\\alice\s+openldap\s+out-of-sync\s+\S+\s+6942\s+connector openldap \(ldaps:\/\/127\.0\.0\.1:\d+\): cannot list objects .*invalid credentials/);

  // Two more joins are tried (every 5 s): the refusal is logged once, and never as a retryable 6940.
  await new Promise((r) => setTimeout(r, 11_000));
  assert.equal(logged(6942).length, 1, logged(6942).join('\n'));
  assert.deepEqual(logged(6940), [], 'a refusal is not retried as 6940');

  // The admin puts the right password in the file and restarts the hub: the change was kept.
  assert.equal(await lab.stop(lab.hub), 0);
  copyFileSync(slapd.env.SLAPD_SERVICE_PASSWORD_FILE!, passwordFile);
  await lab.startHub();
  await until('alice\'s password to bind in slapd', 60_000, async () => (await slapd.bindsAs('alice', Buffer.from(pw)) ? true : undefined));
  const fixed = spawnPwsync(['status', '--config', lab.hubConfig, '--account', 'alice']);
  assert.equal(await fixed.exited, 0, fixed.stderr());
  assert.match(fixed.stdout(), /alice\s+openldap\s+in-sync/);
});
