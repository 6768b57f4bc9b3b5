import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { isObjectSource } from '../connectors/contract.ts';
import { createConnector } from '../connectors/registry.ts';
import { openSqliteBroker } from '../core/broker-sqlite.ts';
import { silentLogger } from '../core/log.ts';
import { loadHubConfig } from '../config/load.ts';
import { verifyPassword } from '../extensions/examples/scrypt-hash/verify.ts';
import { queryStatus } from '../hub/admin.ts';
import { HubState } from '../hub/state.ts';
import { renderSync } from './status.ts';
import { DOMAIN, Lab, spawnPwsync, until } from './lab.ts';
import { sampleConnectors } from './samples.ts';

/** False once standard output was closed (`pwsync demo | head -1`): nothing more is written. */
let output = true;
const say = (s: string): void => { if (output) process.stdout.write(`${s}\n`); };

/** A random printable password with non-ASCII characters, made as bytes, never as a string. */
function demoPassword(): Buffer {
  const alphabet = Buffer.from('abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789!#%+=', 'ascii');
  const picks = randomBytes(14);
  const body = Buffer.alloc(picks.length);
  for (let i = 0; i < picks.length; i++) body[i] = alphabet[picks[i]! % alphabet.length]!;
  picks.fill(0);
  return Buffer.concat([body, Buffer.from('é€', 'utf8')]);
}

/** Reads one connector's file once, the way the hub does, and returns the stored hash of each
 *  account's object (joined by the connector's first rule); undefined where there is none. */
export async function storedHashes(hubConfig: string, connectorName: string, sams: readonly string[]): Promise<Map<string, string | undefined>> {
  const config = await loadHubConfig(hubConfig);
  const spec = config.connectors.find((c) => c.name === connectorName)!;
  const connector = createConnector(spec.name, spec.kind, spec.connection, { log: silentLogger(), resolvePath: (p) => path.resolve(config.baseDir, p) });
  await connector.open();
  try {
    if (!isObjectSource(connector)) throw new Error(`connector ${connectorName} cannot list its objects`);
    const rule = spec.join[0]!;
    const attribute = String(spec.extension?.settings.attribute ?? 'pwdHash');
    const out = new Map<string, string | undefined>();
    for (const sam of sams) {
      const [object] = await connector.find(rule.target, sam, rule.ignoreCase);
      out.set(sam, object?.attributes[attribute] || undefined);
    }
    return out;
  } finally {
    await connector.close();
  }
}

export async function storedHash(hubConfig: string, connectorName: string, sam: string): Promise<string | undefined> {
  return (await storedHashes(hubConfig, connectorName, [sam])).get(sam);
}

/** Thrown between the demo's steps once it was interrupted: it starts nothing more. */
class Interrupted extends Error {}

export async function runDemo(opts: { keep?: boolean; dir?: string }): Promise<number> {
  // Whatever ends the demo (done, an error, a signal, its output closed), the hub and notifier it
  // started are stopped by PID before it exits. An interruption is noted, and the demo stops at its
  // next step rather than at once: a step in progress (a process being spawned) then has its PID.
  let interruption: { why: string; code: number } | undefined;
  const interrupted = (why: string, code: number): void => {
    if (interruption) return;
    interruption = { why, code };
    process.stderr.write(`pwsync demo: ${why}: stopping the hub and notifier it started\n`);
  };
  const onSignal = (s: NodeJS.Signals): void => interrupted(s, 128 + (os.constants.signals[s] ?? 0));
  const onOutputError = (e: NodeJS.ErrnoException): void => {
    output = false;
    interrupted(e.code === 'EPIPE' ? 'standard output was closed' : `standard output failed (${e.code ?? e.message})`, 1);
  };
  const check = (): void => {
    if (interruption) throw new Interrupted(interruption.why);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
  for (const s of signals) process.on(s, onSignal);
  process.stdout.on('error', onOutputError);
  const root = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'pwsync-demo-'));
  let lab: Lab | undefined;
  let broker: ReturnType<typeof openSqliteBroker> | undefined;
  const password = demoPassword();
  try {
    lab = await Lab.create({ root, connectors: sampleConnectors(undefined, 16384) });
    say(`pwsync demo in ${root}`);
    say('  generated a hub key pair (keys/), a CA and a TLS certificate (tls/), hub.yaml and notifier.yaml');
    say(`  five file targets under targets/: ${lab.options.connectors.map((c) => `${c.name} (${c.kind})`).join(', ')}`);
    check();
    await lab.startHub();
    say(`hub started on 127.0.0.1:${lab.hubPort} (gRPC over TLS)`);
    check();
    await lab.startNotifier();
    say(`notifier started; its hook listens on ${lab.hookSocket}`);
    check();
    const hook = spawnPwsync(['hook', '--socket', lab.hookSocket, '--domain', DOMAIN, '--sam', 'alice', '--upn', 'alice@corp.example.com'], { stdin: Buffer.concat([password, Buffer.from('\n')]) });
    const code = await hook.exited;
    check();
    if (code !== 0) throw new Error(`pwsync hook failed: ${hook.stderr().trim()}`);
    say(`alice changed her password; \`pwsync hook\` handed it (on standard input) to the notifier, which sealed it for the hub`);
    broker = openSqliteBroker({ file: path.join(root, 'hub-data', 'hub.db') });
    const state = await HubState.open(broker);
    const joined = lab.options.connectors.filter((c) => c.name !== 'dir-ldif').map((c) => c.name);
    const sync = await until('the password to arrive in every joined target', 60_000, async () => {
      check();
      const s = (await queryStatus(state, { account: { samAccountName: 'alice' } })).sync;
      const done = joined.every((n) => s.some((x) => x.connector === n && x.state === 'in-sync'))
        && s.some((x) => x.connector === 'dir-ldif');
      return done ? s : undefined;
    });
    say('\npwsync status --account alice');
    say(renderSync(sync).split('\n').map((l) => `  ${l}`).join('\n'));
    say('');
    let ok = true;
    for (const name of joined) {
      check();
      const hash = await storedHash(lab.hubConfig, name, 'alice');
      const good = hash !== undefined && await verifyPassword(hash, password);
      ok &&= good;
      say(`  ${good ? 'verified' : 'MISMATCH'}: ${name} holds a scrypt hash of alice's new password`);
    }
    const ldifHash = await storedHash(lab.hubConfig, 'dir-ldif', 'bob');
    say(`  untouched: dir-ldif has no alice (not joined), and bob's entry ${ldifHash ? 'CHANGED' : 'is unchanged'}`);
    ok &&= ldifHash === undefined;
    say(ok ? '\nThe password arrived, sealed end to end, in every joined target.' : '\nThe demo found a mismatch: see the logs above.');
    check();
    return ok ? 0 : 1;
  } catch (e) {
    // Interrupted, a step may also fail for it (a terminal's SIGINT reaches the hub too): the interruption is the answer.
    if (interruption) return interruption.code;
    throw e;
  } finally {
    password.fill(0);
    await broker?.close().catch(() => undefined);
    if (lab) {
      const [n, h] = await Promise.all([lab.stop(lab.notifier), lab.stop(lab.hub)]);
      say(`stopped the notifier (exit ${n}) and the hub (exit ${h})`);
    }
    if (!opts.keep) rmSync(root, { recursive: true, force: true });
    else say(`kept ${root} (logs in logs/)`);
    for (const s of signals) process.off(s, onSignal);
    process.stdout.off('error', onOutputError);
  }
}

export function register(program: Command): void {
  program.command('demo')
    .description('Run hub, notifier and five file targets in a temporary folder, push one password change through, and show it arrive.')
    .option('--keep', 'keep the folder afterwards, to look at the files and logs')
    .option('--dir <dir>', 'use this (empty) folder instead of a temporary one')
    .action(async (opts: { keep?: boolean; dir?: string }) => {
      process.exitCode = await runDemo(opts);
    });
}
