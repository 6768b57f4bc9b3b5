import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { storedHashes } from '../../cli/demo.ts';
import { DOMAIN, Lab, until } from '../../cli/lab.ts';
import type { LabConnector } from '../../cli/lab.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { Secret } from '../../core/secret.ts';
import { verifyPassword } from '../../extensions/examples/scrypt-hash/verify.ts';
import { HubState } from '../../hub/state.ts';
import { sendHookChange } from '../../notifier/hook-client.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * kill -9 under load: 1,000 changes for 100 accounts stream in while the hub (or the notifier)
 * is killed and restarted. Afterwards every account's latest password is the one in every target,
 * and every change the hook saw acknowledged reached the hub.
 */
const ACCOUNTS = 100;
const CHANGES = 1000;
const sam = (i: number): string => `u${String(i % ACCOUNTS).padStart(3, '0')}`;

function connectors(): LabConnector[] {
  const ids = Array.from({ length: ACCOUNTS }, (_, i) => sam(i));
  return [
    { name: 'csv', kind: 'delimited', file: 'people.csv', content: `id,login,pwdHash\n${ids.map((s, i) => `${i},${s},`).join('\n')}\n`, join: [{ target: 'login', source: 'sAMAccountName' }], retry: { count: 100, interval: '500ms' }, batchSize: 50 },
    {
      name: 'dsml', kind: 'dsml', file: 'people.dsml',
      content: `<?xml version="1.0" encoding="UTF-8"?>\n<batchResponse xmlns="urn:oasis:names:tc:DSML:2:0:core"><searchResponse>\n${ids.map((s) => `<searchResultEntry dn="uid=${s},o=x"><attr name="uid"><value>${s}</value></attr></searchResultEntry>`).join('\n')}\n</searchResponse></batchResponse>\n`,
      join: [{ target: 'uid', source: 'sAMAccountName' }], retry: { count: 100, interval: '500ms' }, batchSize: 50,
    },
  ];
}

interface Run {
  lab: Lab;
  acked: Map<number, string>;
  base: number;
}

/** Streams CHANGES changes with `inFlight` hook calls at once; `at(n)` runs after the n-th ack. */
async function stream(run: Run, inFlight: number, at: Map<number, () => Promise<void>>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < CHANGES) {
      const i = next++;
      const pw = Secret.adopt(testPassword(`crash-${i}`));
      try {
        const { changeId } = await sendHookChange(run.lab.hookSocket, { domain: DOMAIN, samAccountName: sam(i), changeTime: run.base + i }, pw, 5000);
        run.acked.set(i, changeId);
        const hook = at.get(run.acked.size);
        if (hook) { at.delete(run.acked.size); await hook(); }
      } catch {
        // Not acknowledged (the notifier was down): the DC side would hand it over again.
      } finally {
        pw.dispose();
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

/** Re-sends, after the notifier is back, each account's last change if it was never acknowledged. */
async function resendUnacked(run: Run): Promise<void> {
  for (let a = 0; a < ACCOUNTS; a++) {
    const last = CHANGES - ACCOUNTS + a;
    if (run.acked.has(last)) continue;
    const pw = Secret.adopt(testPassword(`crash-${last}`));
    const { changeId } = await sendHookChange(run.lab.hookSocket, { domain: DOMAIN, samAccountName: sam(last), changeTime: run.base + last }, pw, 10_000);
    pw.dispose();
    run.acked.set(last, changeId);
  }
}

async function verifyEnd(run: Run): Promise<void> {
  const broker = openSqliteBroker({ file: path.join(run.lab.root, 'hub-data', 'hub.db') });
  try {
    const state = await HubState.open(broker);
    const latest = Array.from({ length: ACCOUNTS }, (_, a) => CHANGES - ACCOUNTS + a);
    await until('every account\'s latest change applied in both targets', 240_000, async () => {
      const ops = await state.listOperations();
      const ok = new Set(ops.filter((o) => o.state === 'successful').map((o) => `${o.changeId}/${o.connector}`));
      return latest.every((i) => ok.has(`${run.acked.get(i)}/csv`) && ok.has(`${run.acked.get(i)}/dsml`)) ? true : undefined;
    });
    const ops = await state.listOperations();
    const seen = new Set(ops.map((o) => `${o.changeId}/${o.connector}`));
    const lost = [...run.acked.values()].filter((id) => !seen.has(`${id}/csv`) || !seen.has(`${id}/dsml`));
    assert.deepEqual(lost, [], 'every acknowledged change reached the hub and both connectors');
    const unsettled = ops.filter((o) => o.state !== 'successful' && o.state !== 'superseded');
    assert.deepEqual(unsettled.map((o) => [o.state, o.eventId, o.reason]), [], 'every operation either landed or was superseded (6919)');
  } finally {
    await broker.close();
  }
  const accounts = Array.from({ length: ACCOUNTS }, (_, a) => sam(a));
  for (const c of ['csv', 'dsml']) {
    const hashes = await storedHashes(run.lab.hubConfig, c, accounts);
    for (let a = 0; a < ACCOUNTS; a++) {
      const hash = hashes.get(sam(a));
      assert.ok(hash, `${c} has a hash for ${sam(a)}`);
      assert.equal(await verifyPassword(hash!, testPassword(`crash-${CHANGES - ACCOUNTS + a}`)), true, `${c}: ${sam(a)} holds its latest password`);
    }
  }
  const leftovers = readdirSync(path.join(run.lab.root, 'targets')).filter((f) => !['people.csv', 'people.dsml'].includes(f));
  assert.deepEqual(leftovers, [], 'no temporary or torn files next to the targets');
}

async function newRun(label: string): Promise<Run> {
  const lab = await Lab.create({ root: testDir(label), connectors: connectors(), logLevel: 'warn' });
  await lab.startHub();
  await lab.startNotifier();
  return { lab, acked: new Map(), base: Date.now() - 10 * CHANGES };
}

test('kill -9 of the hub while 1,000 changes stream in loses nothing', { timeout: 420_000 }, async () => {
  const run = await newRun('crash-hub');
  try {
    await stream(run, 8, new Map([
      [300, async () => { await run.lab.kill(run.lab.hub); }],
      [600, async () => { await run.lab.startHub(); }],
    ]));
    await verifyEnd(run);
  } finally {
    await run.lab.stopAll();
  }
});

test('kill -9 of the notifier while changes stream in loses no acknowledged change', { timeout: 420_000 }, async () => {
  const run = await newRun('crash-notifier');
  try {
    await stream(run, 8, new Map([
      [300, async () => { await run.lab.kill(run.lab.notifier); await run.lab.startNotifier(); }],
    ]));
    await resendUnacked(run);
    await verifyEnd(run);
  } finally {
    await run.lab.stopAll();
  }
});

test('kill -9 of the hub during target writes leaves no torn file', { timeout: 420_000 }, async () => {
  const run = await newRun('crash-write');
  try {
    const bounce = async (): Promise<void> => {
      await new Promise((r) => setTimeout(r, 150 + Math.floor(Math.random() * 250)));
      await run.lab.kill(run.lab.hub);
      await run.lab.startHub();
    };
    await stream(run, 8, new Map([[200, bounce], [450, bounce], [700, bounce], [950, bounce]]));
    await verifyEnd(run);
  } finally {
    await run.lab.stopAll();
  }
});
