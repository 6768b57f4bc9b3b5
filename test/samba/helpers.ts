import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Attribute, Change, Client } from 'ldapts';
import { storedHash } from '../../cli/demo.ts';
import { Lab, until, type LabConnector, type LabOptions } from '../../cli/lab.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { verifyPassword } from '../../extensions/examples/scrypt-hash/verify.ts';
import { queryStatus } from '../../hub/admin.ts';
import { SETTLED_STATES, type OperationStatus } from '../../hub/records.ts';
import { HubState } from '../../hub/state.ts';
import { sambaChangeId } from '../../notifier/samba/capture-script.ts';
import { testDir } from '../lib/dirs.ts';
import { startSambaDc, type SambaDc, type SambaUser } from '../lib/samba.ts';

/**
 * A Samba DC, a hub and a notifier capturing through syncpasswords, all in the test's network
 * namespace; and the ways a person changes a password on the DC: kpasswd, `smbpasswd -r`, an
 * LDAPS reset by an admin. Passwords go to the tools through stdin only.
 */
export const CONNECTOR = 'people-csv';
const PEOPLE: SambaUser[] = ['alice', 'bob', 'carol', 'dave', 'erin'];

export interface SambaLab {
  dc: SambaDc;
  lab: Lab;
  state: HubState;
  close(): Promise<void>;
}

/** `more` adds lab options that need the DC's facts (Kerberos, directory, scope). */
export async function startSambaLab(label: string, more?: (dc: SambaDc, root: string) => Partial<LabOptions>): Promise<SambaLab> {
  const dc = await startSambaDc();
  const root = testDir(label);
  const connector: LabConnector = {
    name: CONNECTOR, kind: 'delimited', file: 'people.csv',
    content: `id,login,pwdHash\n${PEOPLE.map((p, i) => `${i + 1},${p},`).join('\n')}\n`,
    connection: { anchor: 'id' }, join: [{ target: 'login', source: 'sAMAccountName' }],
  };
  const lab = await Lab.create({
    root, connectors: [connector], domain: dc.facts.domain,
    samba: { smbConf: dc.facts.smbConf, gnupgHome: dc.facts.gnupgHome, restartMin: '500ms', restartMax: '2s' },
    ...(more ? more(dc, root) : {}),
  });
  await lab.startHub();
  await lab.startNotifier();
  await notifierLogged(lab, 'baseline recorded', 60_000);
  const broker = openSqliteBroker({ file: path.join(lab.root, 'hub-data', 'hub.db') });
  const state = await HubState.open(broker);
  return {
    dc, lab, state,
    close: async () => {
      await broker.close();
      await lab.stopAll();
      await dc.stop();
    },
  };
}

/** Resolves with the log's lines that contain `text` once there are at least `count` of them. */
export function notifierLogged(lab: Lab, text: string, timeoutMs = 30_000, count = 1): Promise<string[]> {
  return until(`the notifier log to show "${text}" ${count} time(s)`, timeoutMs, () => {
    const found = logLines(lab.notifierLog).filter((l) => l.includes(text));
    return found.length >= count ? found : undefined;
  });
}

export function logLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split('\n');
  } catch {
    return [];
  }
}

export function queuedFor(lab: Lab, sam: string): string[] {
  return logLines(lab.notifierLog).filter((l) => l.includes('"password change queued"') && l.includes(`"account":"${sam}"`));
}

export async function operations(s: SambaLab, sam: string): Promise<OperationStatus[]> {
  return (await queryStatus(s.state, { account: { samAccountName: sam }, connector: CONNECTOR })).operations;
}

/** Waits for the `count`-th operation for the account to be settled (the hub's Samba poll makes this up to ~5 s). */
export async function settled(s: SambaLab, sam: string, count: number, timeoutMs = 60_000): Promise<OperationStatus[]> {
  return until(`${count} settled operation(s) for ${sam}`, timeoutMs, async () => {
    const ops = await operations(s, sam);
    return ops.length >= count && ops.every((o) => SETTLED_STATES.has(o.state)) ? ops : undefined;
  });
}

/** True when the target file holds a hash of exactly this password for the account. */
export async function targetHas(s: SambaLab, sam: string, password: Buffer): Promise<boolean> {
  const hash = await storedHash(s.lab.hubConfig, CONNECTOR, sam);
  return hash !== undefined && (await verifyPassword(hash, password));
}

interface Ran {
  code: number | null;
  output: string;
}

/** Runs a client tool in the test's namespace; `input` (passwords) goes through stdin, then is zero-filled. */
function runTool(cmd: string, args: string[], env: Record<string, string>, input: Buffer, timeoutMs = 30_000): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output: output.trim() });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input, () => input.fill(0));
  });
}

const lines = (...pws: Buffer[]): Buffer => Buffer.concat(pws.flatMap((p) => [p, Buffer.from('\n')]));

/** The user changes their own password over Kerberos (kpasswd reads old, new, new). */
export function kpasswd(dc: SambaDc, sam: string, oldPw: Buffer, newPw: Buffer): Promise<Ran> {
  return runTool('kpasswd', [`${sam}@${dc.facts.realm}`], { ...dc.env, KRB5CCNAME: 'MEMORY:' }, lines(oldPw, newPw, newPw));
}

/** The user changes their own password over SAMR (`smbpasswd -r`; -s reads old, new, new from stdin). */
export function smbpasswd(dc: SambaDc, sam: string, oldPw: Buffer, newPw: Buffer): Promise<Ran> {
  return runTool('smbpasswd', ['-s', '-r', '127.0.0.1', '-U', sam], dc.env, lines(oldPw, newPw, newPw));
}

async function ldaps<T>(dc: SambaDc, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({
    url: dc.facts.ldapsUrl, timeout: 10_000, connectTimeout: 10_000,
    tlsOptions: { ca: readFileSync(dc.facts.caPem), servername: dc.facts.dcHost },
  });
  try {
    await client.bind(dc.facts.admin.bindDn, dc.adminPassword().toString('utf8'));
    return await fn(client);
  } finally {
    await client.unbind();
  }
}

/** An admin resets the account's password over LDAPS: unicodePwd is the quoted password in UTF-16LE. */
export async function ldapsReset(dc: SambaDc, dn: string, newPw: Buffer): Promise<void> {
  const value = Buffer.from(`"${newPw.toString('utf8')}"`, 'utf16le');
  try {
    await ldaps(dc, (c) => c.modify(dn, new Change({ operation: 'replace', modification: new Attribute({ type: 'unicodePwd', values: [value] }) })));
  } finally {
    value.fill(0);
  }
}

/** The account's current msDS-KeyVersionNumber: which password version the DC holds. */
export async function kvno(dc: SambaDc, dn: string): Promise<number> {
  return ldaps(dc, async (c) => {
    const { searchEntries } = await c.search(dn, { scope: 'base', attributes: ['msDS-KeyVersionNumber'] });
    return Number(searchEntries[0]?.['msDS-KeyVersionNumber']);
  });
}

/** The change id the capture script derives for the account's current password version. */
export async function expectedChangeId(dc: SambaDc, sam: SambaUser): Promise<string> {
  const u = dc.users[sam];
  return sambaChangeId(u.objectGuid, await kvno(dc, u.dn)).toString('hex');
}
