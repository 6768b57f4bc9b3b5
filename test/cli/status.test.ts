import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { DOMAIN, Lab, spawnPwsync, until } from '../../cli/lab.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { queryStatus } from '../../hub/admin.ts';
import { SETTLED_STATES, type OperationStatus } from '../../hub/records.ts';
import { HubState } from '../../hub/state.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * `pwsync status` tells the truth, asked of the real CLI against the store of a real hub run:
 * an unknown account or connector is named as such, a superseded change is not a failure, the
 * exit code says whether a row shown failed, a closed pipe ends the output quietly, and a store
 * that is not there names its path and setting.
 */
const csvOf = (rows: string[]): string => `id,login,pwdHash\n${rows.map((r, i) => `${i + 1},${r},`).join('\n')}\n`;

let lab: Lab;
let broker: ReturnType<typeof openSqliteBroker>;
let state: HubState;

async function hook(sam: string, password: Buffer, changeTime?: number): Promise<void> {
  const p = spawnPwsync(['hook', '--socket', lab.hookSocket, '--domain', DOMAIN, '--sam', sam, ...(changeTime ? ['--time', String(changeTime)] : [])], { stdin: Buffer.concat([password, Buffer.from('\n')]) });
  assert.equal(await p.exited, 0, `pwsync hook failed: ${p.stderr()}`);
}

async function status(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const p = spawnPwsync(['status', '--config', lab.hubConfig, ...args]);
  const code = await p.exited;
  return { code, out: p.stdout(), err: p.stderr() };
}

async function settled(sam: string, connector: string, count: number): Promise<OperationStatus[]> {
  return until(`${count} settled operation(s) for ${sam} on ${connector}`, 30_000, async () => {
    const o = (await queryStatus(state, { account: { samAccountName: sam }, connector })).operations;
    return o.length >= count && o.every((x) => SETTLED_STATES.has(x.state)) ? o.sort((a, b) => a.changeTime - b.changeTime) : undefined;
  });
}

before(async () => {
  lab = await Lab.create({
    root: testDir('cli-status'),
    connectors: [
      { name: 'hr', kind: 'delimited', file: 'hr.csv', content: csvOf(['alice', 'bob']), join: [{ target: 'login', source: 'sAMAccountName' }] },
      // pwsync's own policy refuses dave's short password: a failure (6927) to show.
      { name: 'policed', kind: 'delimited', file: 'policed.csv', content: csvOf(['dave']), join: [{ target: 'login', source: 'sAMAccountName' }], policy: { minLength: 40 } },
    ],
  });
  await lab.startHub();
  await lab.startNotifier();
  broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
  state = await HubState.open(broker);
});

after(async () => {
  await broker?.close();
  await lab?.stopAll();
});

test('an empty store says so; an unknown account or connector is named, with exit 2', async () => {
  const empty = await status();
  assert.equal(empty.code, 0, empty.err);
  assert.equal(empty.out.trim(), 'no accounts recorded yet: no change has reached this hub');
  const bob = await status('--account', `${DOMAIN}\\bob`);
  assert.equal(bob.code, 2, bob.out);
  assert.equal(bob.err.trim(), `pwsync: no such account: ${DOMAIN}\\bob (no change for it has reached this hub; check the name, or \`pwsync status --dcs\` for the domain controllers that report here)`);
  const connector = await status('--connector', 'payroll');
  assert.equal(connector.code, 2, connector.out);
  assert.equal(connector.err.trim(), 'pwsync: no such connector payroll: the hub YAML has hr, policed');
});

test('exit 0 when every row shown is fine, 3 when one failed; --failed on a person with no failure says so', async () => {
  await hook('alice', testPassword('alice-1'));
  await hook('dave', testPassword('short'));
  assert.equal((await settled('alice', 'hr', 1))[0]!.state, 'successful');
  const [dave] = await settled('dave', 'policed', 1);
  assert.equal(dave!.state, 'failed');
  assert.equal(dave!.eventId, 6927);

  const alice = await status('--account', 'alice');
  assert.equal(alice.code, 0, alice.err);
  assert.match(alice.out, /corp\.example\.com\\alice\s+hr\s+in-sync/);
  const aliceFailed = await status('--account', 'alice', '--failed');
  assert.equal(aliceFailed.code, 0, aliceFailed.err);
  assert.equal(aliceFailed.out.trim(), 'nothing failed for alice');
  const onPoliced = await status('--account', 'alice', '--connector', 'policed');
  assert.equal(onPoliced.code, 0, onPoliced.err);
  assert.match(onPoliced.out, /alice\s+policed\s+not-joined\s+.*6948/, 'alice is known to policed as not joined');

  const daveRow = await status('--account', `${DOMAIN}\\dave`);
  assert.equal(daveRow.code, 3, `a person out of sync: exit 3; ${daveRow.err}`);
  assert.match(daveRow.out, /dave\s+policed\s+out-of-sync\s+\S+\s+6927\s+password refused by policy: too short/);
  assert.match(daveRow.out, new RegExp(`${dave!.opId}\\s+.*policed.*failed\\s+1\\s+-\\s+6927`));
  const json = await status('--account', 'dave', '--json');
  assert.equal(json.code, 3, json.err);
  assert.equal((JSON.parse(json.out) as { sync: Array<{ connector: string; state: string }> }).sync.find((r) => r.connector === 'policed')?.state, 'out-of-sync');
  const everyone = await status();
  assert.equal(everyone.code, 3, 'one person out of sync among all shown');
  const hrOnly = await status('--connector', 'hr');
  assert.equal(hrOnly.code, 0, `only hr's rows are shown, and none failed: ${hrOnly.out}`);
});

test('a change superseded by a newer one is "superseded" (6919), not failed: --failed does not list it, exit 0, not retried', async () => {
  const now = Date.now();
  await hook('bob', testPassword('bob-newer'), now);
  await until('bob\'s newer change applied', 30_000, async () => (await settled('bob', 'hr', 1)).find((o) => o.changeTime === now && o.state === 'successful'));
  await hook('bob', testPassword('bob-older'), now - 60_000);
  const [stale] = await settled('bob', 'hr', 2);
  assert.equal(stale!.changeTime, now - 60_000);
  assert.equal(stale!.state, 'superseded');
  assert.equal(stale!.eventId, 6919);
  assert.equal(stale!.envelope, undefined, 'a superseded operation keeps no sealed password');

  const failed = await status('--account', 'bob', '--failed');
  assert.equal(failed.code, 0, failed.err);
  assert.equal(failed.out.trim(), 'nothing failed for bob');
  const plain = await status('--account', 'bob');
  assert.equal(plain.code, 0, plain.err);
  assert.match(plain.out, /bob\s+hr\s+in-sync/);
  assert.doesNotMatch(plain.out, new RegExp(stale!.opId), 'history (applied, superseded) is listed with --operations only');
  const ops = await status('--account', 'bob', '--operations');
  assert.equal(ops.code, 0, ops.err);
  assert.match(ops.out, new RegExp(`${stale!.opId}\\s+.*hr.*superseded\\s+0\\s+-\\s+6919\\s+change of .* is older than the one applied`));
  const retry = spawnPwsync(['retry', '--config', lab.hubConfig, stale!.opId]);
  assert.equal(await retry.exited, 2);
  assert.match(retry.stderr(), /was superseded by a newer change for the same object \(6919\): there is nothing to retry/);
});

test('a reader that closes the pipe (`pwsync status | head`): no stack trace, the documented exit code', async () => {
  for (const [args, expected] of [[['--operations'], 3], [['--account', 'alice'], 0]] as const) {
    const p = spawnPwsync(['status', '--config', lab.hubConfig, ...args]);
    // Closed before the command writes a byte: its first write meets EPIPE.
    p.proc.stdout!.destroy();
    const code = await p.exited;
    assert.doesNotMatch(p.stderr(), /EPIPE|Error|\n\s+at /, `status ${args.join(' ')}: quiet on a closed pipe`);
    assert.equal(code, expected, `status ${args.join(' ')}: ${p.stderr()}`);
  }
});

test('a store that is not there names its path, the setting and the fix, and is not created', async () => {
  const doc = parse(readFileSync(lab.hubConfig, 'utf8')) as { hub: { dataDir: string } };
  const missing = path.join(lab.root, 'no-such-data');
  const config = path.join(lab.root, 'wrong-data.yaml');
  writeFileSync(config, stringify({ ...doc, hub: { ...doc.hub, dataDir: missing } }));
  const p = spawnPwsync(['status', '--config', config]);
  assert.equal(await p.exited, 2, p.stdout());
  assert.equal(p.stderr().trim(), `pwsync: hub.dataDir ${missing} (in ${config}) does not exist, so there is no hub state to read: is the hub started (\`pwsync hub --config ${config}\` creates it on its first start), and is ${config} the YAML of the hub that runs?`);
  assert.equal(existsSync(missing), false, 'status created nothing');

  mkdirSync(missing);
  const noDb = spawnPwsync(['status', '--config', config, '--account', 'alice']);
  assert.equal(await noDb.exited, 2, noDb.stdout());
  assert.match(noDb.stderr(), new RegExp(`no hub state in ${path.join(missing, 'hub.db').replace(/[.\\]/g, '\\$&')}: hub\\.dataDir .* holds no hub\\.db`));
  assert.equal(existsSync(path.join(missing, 'hub.db')), false, 'status created no empty store');
});
