import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { DOMAIN, Lab, spawnPwsync, until, type Service } from '../../cli/lab.ts';
import { PEOPLE, sampleConnectors } from '../../cli/samples.ts';
import { decodeWire, encodeWire, operationBinding, PROTOCOL, workerSubject, type SetReply, type SetRequest } from '../../connectors/remote/protocol.ts';
import { recipientFromPem, seal } from '../../core/envelope.ts';
import { generateRecipientKeys } from '../../core/keys.ts';
import { operationId } from '../../core/operation-id.ts';
import { Secret } from '../../core/secret.ts';
import { verifyPassword } from '../../extensions/builtin/password-hash.ts';
import { sendHookChange } from '../../notifier/hook-client.ts';
import { testDir } from '../lib/dirs.ts';
import { startNatsCluster, type NatsCluster } from '../lib/nats.ts';
import { testPassword } from '../lib/passwords.ts';
import { createWorkerDir, natsAuthConf, type WorkerDir } from '../lib/worker.ts';

/**
 * A remote connector end to end on one NATS server with per-connector users: hook → notifier →
 * hub → NATS → `pwsync worker` → its CSV target, the worker only connecting out. Then what a
 * worker must refuse: another connector's NATS credentials, another connector's operation, a
 * password sealed for another worker's key, and a second worker for its connector.
 */
let nats: NatsCluster;
let lab: Lab;
let worker: WorkerDir;
let workerProc: Service | undefined;
const secrets = new Map<string, string>();
const natsPassword = (user: string): Secret => Secret.adopt(Buffer.from(secrets.get(user)!));
const USERS = Array.from({ length: 10 }, (_, i) => `user${String(i).padStart(2, '0')}`);
const people = [...PEOPLE, ...USERS.map((sam) => ({ sam, name: `User ${sam}`, mail: `${sam}@example.test` }))];

before(async () => {
  for (const u of ['hub', 'worker-dmz', 'worker-other']) secrets.set(u, randomBytes(16).toString('hex'));
  const files = testDir('worker-files');
  const authConf = path.join(files, 'auth.conf');
  writeFileSync(authConf, natsAuthConf({ user: 'hub', password: secrets.get('hub')! }, [
    { user: 'worker-dmz', password: secrets.get('worker-dmz')!, connector: 'dmz-csv' },
    { user: 'worker-other', password: secrets.get('worker-other')!, connector: 'other-csv' },
  ]), { mode: 0o600 });
  nats = await startNatsCluster({ nodes: 1, authConf });
  const root = testDir('worker-lab');
  worker = createWorkerDir({ dir: path.join(root, 'dmz'), connector: 'dmz-csv', people, servers: nats.urls, ca: nats.ca, user: 'worker-dmz', password: natsPassword('worker-dmz') });
  writeFileSync(path.join(files, 'hub-nats.pw'), secrets.get('hub')!, { mode: 0o600 });
  writeFileSync(path.join(files, 'nats-ca.pem'), nats.ca);
  lab = await Lab.create({
    root,
    connectors: sampleConnectors(people).filter((c) => c.name === 'hr-csv'),
    hubConnectors: [{
      name: 'dmz-csv', kind: 'remote', connection: { publicKey: worker.publicKey },
      join: [{ target: 'login', source: 'sAMAccountName' }], retry: { count: 2, interval: '1s' }, timeout: '10s', concurrency: 2,
    }],
    broker: { kind: 'nats', servers: nats.urls, tls: { ca: path.join(files, 'nats-ca.pem') }, user: 'hub', credentials: { fromFile: path.join(files, 'hub-nats.pw') }, replicas: 1 },
  });
});

after(async () => {
  await lab?.stop(workerProc);
  await lab?.stopAll();
  await nats?.stop();
});

async function change(sam: string, label: string): Promise<Buffer> {
  const pw = testPassword(`${sam}-${label}`);
  await sendHookChange(lab.hookSocket, { domain: DOMAIN, samAccountName: sam }, Secret.adopt(Buffer.from(pw)), 10_000);
  return pw;
}

async function arrivedAtWorker(expected: Map<string, Buffer>, timeoutMs: number): Promise<void> {
  await until('every latest password in the worker\'s target', timeoutMs, async () => {
    const hashes = await worker.hashes([...expected.keys()]);
    for (const [sam, pw] of expected) {
      const h = hashes.get(sam);
      if (!h || !await verifyPassword(h, pw)) return undefined;
    }
    return true;
  }, lab.hub);
}

test('a change reaches the target behind a connector worker that only connects out to NATS', async () => {
  const init = spawnPwsync(['broker', 'init', '--config', lab.hubConfig]);
  assert.equal(await init.exited, 0, init.stderr());
  assert.match(init.stdout(), /created kv bucket pwsync_workers/);
  workerProc = await worker.startReady();
  await lab.startHub();
  await lab.startNotifier();
  const expected = new Map<string, Buffer>();
  for (const sam of ['alice', 'bob']) expected.set(sam, await change(sam, 'first'));
  await arrivedAtWorker(expected, 60_000);
  const status = spawnPwsync(['status', '--config', lab.hubConfig, '--workers']);
  assert.equal(await status.exited, 0, status.stderr());
  assert.match(status.stdout(), /dmz-csv\s+dmz-csv-worker\s+connected/);
  const json = spawnPwsync(['status', '--config', lab.hubConfig, '--workers', '--json']);
  assert.equal(await json.exited, 0, json.stderr());
  const view = (JSON.parse(json.stdout()) as { workers: Array<{ connected: boolean; state: { applied: number; inFlight: number; lastRequestAt: number } }> }).workers[0]!;
  assert.equal(view.connected, true);
  assert.ok(view.state.applied >= 2 && view.state.lastRequestAt > 0, JSON.stringify(view));
  const ping = spawnPwsync(['connector', 'test', '--config', lab.hubConfig, 'dmz-csv']);
  assert.equal(await ping.exited, 0, ping.stderr());
  assert.match(ping.stdout(), /connector dmz-csv \(remote\): ok: worker dmz-csv-worker on .* is connected/);
  const sync = spawnPwsync(['status', '--config', lab.hubConfig, '--account', 'alice']);
  assert.equal(await sync.exited, 0, sync.stderr());
  assert.match(sync.stdout(), /alice\s+dmz-csv\s+in-sync/);
});

test('SIGHUP reopens the worker\'s log file (logrotate); the worker keeps applying set-operations', async () => {
  const rotated = `${worker.log}.1`;
  renameSync(worker.log, rotated);
  workerProc!.proc.kill('SIGHUP');
  await until('a new worker log after SIGHUP', 30_000, () => (existsSync(worker.log) && readFileSync(worker.log, 'utf8').includes('"msg":"log file reopened (SIGHUP)"') ? true : undefined), workerProc);
  await arrivedAtWorker(new Map([['carol', await change('carol', 'after-hup')]]), 60_000);
  assert.equal(workerProc!.proc.exitCode, null);
  assert.doesNotMatch(readFileSync(rotated, 'utf8'), /log file reopened/);
});

test('while the worker is down the hub keeps the set-operations beyond the connector\'s retries; once it is back they arrive', async () => {
  await lab.kill(workerProc);
  const expected = new Map<string, Buffer>();
  for (const sam of USERS.slice(0, 4)) expected.set(sam, await change(sam, 'while-down'));
  const down = spawnPwsync(['status', '--config', lab.hubConfig, '--workers']);
  assert.equal(await down.exited, 0, down.stderr());
  assert.match(down.stdout(), /dmz-csv\s+dmz-csv-worker\s+not connected \(6972\)/);
  const ping = spawnPwsync(['connector', 'test', '--config', lab.hubConfig, 'dmz-csv']);
  assert.equal(await ping.exited, 1);
  assert.match(ping.stderr(), /event 6972: no connector worker listens on pwsync\.worker\.dmz-csv\.ping/);
  await until('the hub to log that no worker answers', 30_000, () => (/"eventId":6940[^\n]*no connector worker listens/.test(readFileSync(lab.hubLog, 'utf8')) ? true : undefined));
  // retry.count is 2 at 1s: the worker stays away for longer, and nothing may fail for it.
  await new Promise((r) => setTimeout(r, 5000));
  workerProc = await worker.startReady();
  await arrivedAtWorker(expected, 60_000);
  const json = spawnPwsync(['status', '--config', lab.hubConfig, '--connector', 'dmz-csv', '--operations', '--json']);
  assert.equal(await json.exited, 0, json.stderr());
  const ops = (JSON.parse(json.stdout()) as { operations: Array<{ account: { samAccountName: string }; state: string; attempts: number; eventId?: number }> }).operations
    .filter((o) => USERS.slice(0, 4).includes(o.account.samAccountName));
  assert.equal(ops.length, 4);
  for (const o of ops) assert.deepEqual([o.state, o.attempts], ['successful', 1], `${o.account.samAccountName}: applied at the first attempt that reached a worker (${JSON.stringify(o)})`);
  assert.doesNotMatch(readFileSync(lab.hubLog, 'utf8'), /"eventId":6941/);
});

test('a second worker for the same connector refuses to start, naming the one that runs', async () => {
  const second = worker.start();
  assert.notEqual(await second.exited, 0);
  assert.match(second.stderr(), /worker dmz-csv-worker on .* already runs connector dmz-csv: run one worker per connector/);
});

test('a worker with another connector\'s NATS credentials is refused by NATS, and says so', async () => {
  const other = createWorkerDir({ dir: path.join(lab.root, 'other'), connector: 'dmz-csv', people, servers: nats.urls, ca: nats.ca, user: 'worker-other', password: natsPassword('worker-other') });
  const p = other.start();
  assert.notEqual(await p.exited, 0);
  assert.match(p.stderr(), /NATS at .* refused this worker the subjects of connector dmz-csv .*[Pp]ermissions [Vv]iolation/);
});

test('a worker opens only its own connector\'s operations sealed for its own key', async () => {
  const nc = await connect({ servers: nats.urls, tls: { ca: nats.ca }, user: 'hub', pass: secrets.get('hub')! });
  try {
    const own = recipientFromPem(readFileSync(worker.publicKey));
    const stranger = recipientFromPem(generateRecipientKeys().publicPem);
    const account = { domain: DOMAIN, samAccountName: 'carol', objectGuid: '', objectSid: '', upn: '', dn: '' };
    const objectId = '1002'; // carol's row
    const changeId = randomBytes(16).toString('hex');
    const before = (await worker.hashes(['carol'])).get('carol');
    const send = async (connector: string, recipient: typeof own, opConnector: string, label: string): Promise<SetReply> => {
      const op = { opId: operationId(changeId, opConnector, objectId), changeId, changeTime: Date.now(), objectId, account };
      const envelope = seal(recipient, operationBinding(op, opConnector, 'intruder-hub'), Secret.adopt(testPassword(`carol-${label}`))).toString('base64');
      const req: SetRequest = { v: PROTOCOL, hub: 'intruder-hub', connector, ops: [{ ...op, envelope }] };
      const m = await nc.request(workerSubject('pwsync', 'dmz-csv', 'set'), encodeWire(req), { timeout: 10_000 });
      return decodeWire<SetReply>(m.data, 'reply');
    };
    // Another connector's operation, sealed for this worker's key: refused by its binding.
    const foreignOp = await send('dmz-csv', own, 'other-csv', 'foreign-op');
    assert.equal(foreignOp.outcomes?.[0]?.ok, false);
    assert.match(JSON.stringify(foreignOp.outcomes), /"eventId":6973.*not one of connector dmz-csv's: its operation id differs/);
    // This connector's operation, sealed for another worker's key: it cannot be opened.
    const foreignKey = await send('dmz-csv', stranger, 'dmz-csv', 'foreign-key');
    assert.match(JSON.stringify(foreignKey.outcomes), /"ok":false.*"eventId":6946.*"retryable":false/);
    // A request addressed to another connector: refused whole.
    const foreignRequest = await send('other-csv', own, 'other-csv', 'foreign-request');
    assert.equal(foreignRequest.error?.eventId, 6973);
    assert.match(foreignRequest.error?.message ?? '', /operations of connector other-csv were sent to the worker of connector dmz-csv/);
    assert.equal((await worker.hashes(['carol'])).get('carol'), before, 'carol\'s stored password did not change');
    // The binding: a genuine operation passes (its hub id is not checked, any hub of the installation may seal).
    const genuine = await send('dmz-csv', own, 'dmz-csv', 'genuine');
    assert.deepEqual(genuine.outcomes, [{ opId: operationId(changeId, 'dmz-csv', objectId), ok: true }]);
    assert.ok(await verifyPassword((await worker.hashes(['carol'])).get('carol')!, testPassword('carol-genuine')));
  } finally {
    await nc.close();
  }
});

test('the hub refuses a connector of kind remote on the embedded broker, naming the setting', async () => {
  const file = path.join(lab.root, 'hub-embedded.yaml');
  const text = readFileSync(lab.hubConfig, 'utf8').replace(/\nbroker:[\s\S]*$/, '\n');
  writeFileSync(file, text);
  const p = spawnPwsync(['config', 'check', file]);
  assert.notEqual(await p.exited, 0);
  assert.match(p.stdout() + p.stderr(), /connector dmz-csv is of kind remote, but the hub's broker is not NATS/);
});
