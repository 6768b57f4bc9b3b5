import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { storedHash } from '../../cli/demo.ts';
import { DOMAIN, Lab, spawnPwsync, until } from '../../cli/lab.ts';
import { sampleConnectors } from '../../cli/samples.ts';
import { createPublicKey } from 'node:crypto';
import { keyIdOf } from '../../core/envelope.ts';
import { generateRecipientKeys } from '../../core/keys.ts';
import { verifyPassword } from '../../extensions/examples/scrypt-hash/verify.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';
import { editYaml } from '../lib/yaml.ts';

/**
 * A notifier given another hub's public key (issue 15, part 1): the mismatch is named at start,
 * a change is held at the notifier (not sent to be refused, not dropped), the hub's status says
 * where it waits, and once the notifier has the right key the change arrives.
 */
let lab: Lab;
let hubKeyId: string;
let otherKeyId: string;

const keyIdOfPem = (pem: string | Buffer): string => keyIdOf(createPublicKey(pem)).toString('hex');
const logLines = (file: string): Array<Record<string, unknown>> => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

async function hook(sam: string, password: Buffer): Promise<void> {
  const p = spawnPwsync(['hook', '--socket', lab.hookSocket, '--domain', DOMAIN, '--sam', sam], { stdin: Buffer.concat([password, Buffer.from('\n')]) });
  assert.equal(await p.exited, 0, `pwsync hook failed: ${p.stderr()}`);
}

async function status(account: string): Promise<string> {
  const p = spawnPwsync(['status', '--config', lab.hubConfig, '--account', account]);
  assert.equal(await p.exited, 0, p.stderr());
  return p.stdout();
}

before(async () => {
  lab = await Lab.create({
    root: testDir('key-mismatch'),
    connectors: sampleConnectors().filter((c) => c.name === 'hr-csv'),
    reportInterval: '500ms',
  });
  hubKeyId = keyIdOfPem(readFileSync(path.join(lab.root, 'keys', 'hub.pub')));
  const other = generateRecipientKeys();
  otherKeyId = other.keyId;
  writeFileSync(path.join(lab.root, 'keys', 'other-hub.pub'), other.publicPem);
  await lab.startHub();
});

after(async () => {
  await lab?.stopAll();
});

test('a notifier sealing for another hub\'s key holds the change, the hub shows it pending at the DC, and it arrives once the key is fixed', async () => {
  // alice is in sync with a first password, sent with the right key.
  await lab.startNotifier();
  const first = testPassword('alice-first');
  await hook('alice', first);
  await until('alice\'s first password in hr-csv', 30_000, async () => {
    const hash = await storedHash(lab.hubConfig, 'hr-csv', 'alice');
    return hash && await verifyPassword(hash, first) ? true : undefined;
  }, lab.notifier);
  assert.match(await status('alice'), /hr-csv\s+in-sync/);

  // The notifier is given another hub's public key.
  assert.equal(await lab.stop(lab.notifier), 0, lab.notifier!.stderr());
  editYaml(lab.notifierConfig, (doc) => { doc.targets[0].publicKey = 'keys/other-hub.pub'; });
  await lab.startNotifier();
  // At start the notifier names both keys.
  const mismatch = await until('event 6987 in the notifier log', 30_000, () => logLines(lab.notifierLog).find((l) => l.eventId === 6987), lab.notifier);
  assert.equal(mismatch.sealingKeyId, otherKeyId);
  assert.deepEqual(mismatch.hubKeyIds, [hubKeyId]);
  // Known before this run's first report: from the keys the hub named to the notifier's last run.
  assert.equal(mismatch.fromLastReport, true);

  const before = await storedHash(lab.hubConfig, 'hr-csv', 'alice');
  const password = testPassword('alice-held');
  await hook('alice', password);

  // Held, not sent: the hub never refused it (no 6946) and the target is unchanged.
  const pending = await until('alice pending at dc1 in `pwsync status`', 30_000, async () => {
    const out = await status('alice');
    return /pending at dc1\.corp\.example\.com: change of \S+ held/.test(out) ? out : undefined;
  });
  // Not shown in-sync while her newer change waits at the DC.
  assert.match(pending, /hr-csv\s+pending\s+\S+\s+-\s+pending at dc1\.corp\.example\.com/);
  assert.doesNotMatch(pending, /in-sync/);
  assert.match(pending, new RegExp(`the hub has key ${hubKeyId}`));
  assert.match(pending, new RegExp(`the notifier's key for this hub is ${otherKeyId}`));
  assert.equal(logLines(lab.hubLog).filter((l) => l.eventId === 6946).length, 0, 'the hub was not sent a change it would refuse');
  const dcs = spawnPwsync(['status', '--config', lab.hubConfig, '--dcs']);
  assert.equal(await dcs.exited, 0, dcs.stderr());
  assert.match(dcs.stdout(), new RegExp(`dc1\\.corp\\.example\\.com \\(corp\\.example\\.com\\): seals for key ${otherKeyId}, the hub has key ${hubKeyId}: its changes for this hub are held there \\(6987\\)`));
  assert.equal(await storedHash(lab.hubConfig, 'hr-csv', 'alice'), before);
  // Raised on every report too, not once.
  await until('6987 raised by reports', 30_000, () => (logLines(lab.notifierLog).filter((l) => l.eventId === 6987 && !l.fromLastReport).length >= 2 ? true : undefined));

  // The admin gives the notifier the right key and restarts it: the held change is resealed and arrives.
  assert.equal(await lab.stop(lab.notifier), 0, lab.notifier!.stderr());
  editYaml(lab.notifierConfig, (doc) => { doc.targets[0].publicKey = 'keys/hub.pub'; });
  const sinceLines = logLines(lab.notifierLog).length;
  await lab.startNotifier();
  await until('alice\'s held password in hr-csv', 30_000, async () => {
    const hash = await storedHash(lab.hubConfig, 'hr-csv', 'alice');
    return hash && hash !== before && await verifyPassword(hash, password) ? true : undefined;
  }, lab.notifier);
  assert.equal(logLines(lab.notifierLog).slice(sinceLines).filter((l) => l.eventId === 6987).length, 0);
  // The next report says nothing waits: the status is plain in-sync again.
  const settled = await until('alice in-sync with nothing pending', 30_000, async () => {
    const out = await status('alice');
    return /in-sync/.test(out) && !/pending at|queued at/.test(out) ? out : undefined;
  });
  assert.match(settled, /hr-csv/);
  assert.equal(logLines(lab.hubLog).filter((l) => l.eventId === 6946).length, 0);
});
