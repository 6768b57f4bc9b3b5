/**
 * `npm run bench:auth`: authenticated ingest. Changes/s from a client to a hub that stores them
 * durably (the real Ingest and embedded broker, the hub in its own process), with Kerberos on top
 * of TLS against TLS alone, in one run: the same batch size (100), the same number in flight,
 * rounds alternated so that both modes see the same machine. Prints per mode the median changes/s
 * over the rounds, p50 and p99 per call, and the ratio Kerberos/TLS.
 *
 * Kerberos: a private MIT KDC and a directory (for the hub's DC check) are started for the run
 * (test/env/kdc.sh, test/env/slapd-dc.sh); every call carries a fresh AP-REQ and is believed only
 * once the hub's AP-REP verifies.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DOMAIN, Lab } from '../cli/lab.ts';
import { recipientFromPem, seal, type RecipientKey } from '../core/envelope.ts';
import { Secret } from '../core/secret.ts';
import {
  configureKerberosProcess, createSubmitClient, kerberosClient, tlsOnlyClient, type SealedChange, type SubmitClient,
} from '../proto/channel.ts';
import { startDirectory } from '../test/lib/directory.ts';
import { startKdc } from '../test/lib/kdc.ts';

const BATCH = 100;
const PER_ROUND = Number(process.env.BENCH_CHANGES ?? 5_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 4);
const ACCOUNTS = 1000;

interface Mode {
  name: 'TLS' | 'Kerberos+TLS';
  lab: Lab;
  client: SubmitClient;
  recipient: RecipientKey;
  rates: number[];
  callMs: number[];
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const median = (xs: number[]): number => pct(xs, 50);

let serial = 0;
/** `count` changes sealed for the hub, each with its own change id (sealing is outside the timing). */
function sealedBatches(recipient: RecipientKey, count: number): SealedChange[][] {
  const batches: SealedChange[][] = [];
  for (let b = 0; b < count; b += BATCH) {
    const batch: SealedChange[] = [];
    for (let i = b; i < Math.min(count, b + BATCH); i++) {
      const n = serial++;
      const changeId = Buffer.alloc(16);
      changeId.writeUInt32BE(n, 12);
      changeId.writeUInt32BE(process.pid, 0);
      const sam = `user${String(n % ACCOUNTS).padStart(4, '0')}`;
      const changeTime = Date.now();
      const binding = { changeId, changeTime, domain: DOMAIN, samAccountName: sam, objectGuid: '', objectSid: '', upn: '', dn: '', sourceHost: 'dc1.corp.example.com' };
      const pw = Secret.adopt(Buffer.from(`bench-pw-${n}-é€`, 'utf8'));
      const sealedPassword = seal(recipient, binding, pw);
      pw.dispose();
      batch.push({
        changeId, domain: DOMAIN, sourceDc: binding.sourceHost, changeTimeMs: changeTime, sealedPassword,
        account: { samAccountName: sam, objectGuid: '', objectSid: '', userPrincipalName: '', distinguishedName: '' },
      });
    }
    batches.push(batch);
  }
  return batches;
}

/** Sends the batches with IN_FLIGHT calls at a time; returns changes/s; per-call times go to `callMs`. */
async function round(mode: Mode, batches: SealedChange[][], record: boolean): Promise<number> {
  let next = 0;
  let changes = 0;
  const started = performance.now();
  const worker = async (): Promise<void> => {
    while (next < batches.length) {
      const batch = batches[next++]!;
      const t0 = performance.now();
      const acks = await mode.client.submit({ notifierId: 'bench-dc1', changes: batch });
      if (record) mode.callMs.push(performance.now() - t0);
      const bad = acks.find((a) => a.status !== 'ACCEPTED_DURABLE');
      if (bad) throw new Error(`${mode.name}: a change was answered ${bad.status} ${bad.reason}`);
      changes += acks.length;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return changes / ((performance.now() - started) / 1000);
}

async function main(): Promise<void> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'pwsync-bench-auth-'));
  const kdc = startKdc(path.join(root, 'kdc'));
  const directory = startDirectory(path.join(root, 'directory'));
  const modes: Mode[] = [];
  try {
    const hubKeytab = path.join(root, 'hub.keytab');
    copyFileSync(kdc.hubKeytab, hubKeytab);
    configureKerberosProcess({ krb5Config: kdc.krb5Config, clientKeytab: kdc.dcKeytab });
    for (const name of ['TLS', 'Kerberos+TLS'] as const) {
      const lab = await Lab.create({
        root: path.join(root, name === 'TLS' ? 'tls' : 'krb'), connectors: [], logLevel: 'warn',
        directory: { url: directory.url, ca: directory.ca, serverName: directory.serverName, bindDn: directory.bindDn, passwordFile: directory.passwordFile },
        ...(name === 'TLS' ? {} : {
          kerberos: {
            hub: { keytab: hubKeytab, service: kdc.hubService, replayCache: path.join(root, 'rcache', 'hub.rcache2'), krb5Config: kdc.krb5Config },
            realm: kdc.realm,
          },
        }),
      });
      await lab.startHub();
      const address = `127.0.0.1:${lab.hubPort}`;
      const client = createSubmitClient({
        address, ca: readFileSync(path.join(lab.root, 'tls', 'ca.pem')), timeoutMs: 30_000,
        auth: name === 'TLS' ? tlsOnlyClient() : kerberosClient({ service: kdc.hubService, hubAddress: address, keytab: kdc.dcKeytab }),
      });
      const recipient = recipientFromPem(readFileSync(path.join(lab.root, 'keys', 'hub.pub')));
      modes.push({ name, lab, client, recipient, rates: [], callMs: [] });
    }
    process.stdout.write(`pwsync bench:auth: ${ROUNDS} rounds of ${PER_ROUND} changes per mode, batch ${BATCH}, ${IN_FLIGHT} calls in flight, hub in its own process; ${os.cpus().length} cores\n`);
    for (const m of modes) await round(m, sealedBatches(m.recipient, 1_000), false);
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate which mode goes first, so that neither always runs on a warmer or busier machine.
      for (const m of r % 2 === 0 ? modes : [...modes].reverse()) {
        const batches = sealedBatches(m.recipient, PER_ROUND);
        m.rates.push(await round(m, batches, true));
      }
    }
    process.stdout.write('\nresults\n');
    const row = (k: string, v: string): void => { process.stdout.write(`  ${k.padEnd(34)}${v}\n`); };
    for (const m of modes) {
      row(`${m.name}: changes/s (median)`, `${median(m.rates).toFixed(0)}  (rounds: ${m.rates.map((x) => x.toFixed(0)).join(', ')})`);
      row(`${m.name}: per call p50 / p99`, `${median(m.callMs).toFixed(2)} ms / ${pct(m.callMs, 99).toFixed(2)} ms`);
    }
    const [tls, krb] = modes as [Mode, Mode];
    const ratio = median(krb.rates) / median(tls.rates);
    row('ratio Kerberos+TLS / TLS', `${ratio.toFixed(2)}  (aim ≥ 0.80; Kerberos aim ≥ 3000 changes/s)`);
  } finally {
    for (const m of modes) {
      m.client.close();
      await m.lab.stop(m.lab.hub);
    }
    directory.stop();
    kdc.stop();
    if (!process.env.BENCH_KEEP) rmSync(root, { recursive: true, force: true });
  }
}

await main();
