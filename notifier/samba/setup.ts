import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { UsageError } from '../../core/errors.ts';

/**
 * What `pwsync samba setup` does on a Samba AD DC: a GnuPG key that Samba encrypts every new
 * password with (`password hash gpg key ids`), so that `samba-tool user syncpasswords
 * --decrypt-samba-gpg` can hand the cleartext to pwsync's capture script after the commit. Both
 * steps are idempotent: a second run finds the key and the setting and changes nothing.
 */

export const GPG_KEY_IDS_PARAM = 'password hash gpg key ids';
const UID_NAME = 'pwsync DC capture';

export interface SetupResult {
  fingerprint: string;
  keyCreated: boolean;
  /** What happened to smb.conf: the setting was already there, added, or replaced an old value. */
  smbConf: { change: 'unchanged' } | { change: 'added' } | { change: 'replaced'; previous: string };
  /** Set when the GnuPG home's mode was wider than 0700 and was narrowed. */
  narrowedMode?: string;
}

export interface SetupOptions {
  smbConf: string;
  gnupgHome: string;
  gpg?: string;
}

export function sambaSetup(opts: SetupOptions): SetupResult {
  const conf = readConf(opts.smbConf);
  const realm = globalParam(conf, 'realm');
  if (!realm) throw new UsageError(`${opts.smbConf} has no "realm =" in [global]: is it the smb.conf of a provisioned Samba AD DC?`);
  const narrowedMode = prepareHome(opts.gnupgHome);
  const gpg = opts.gpg ?? 'gpg';
  let fingerprint = findKey(gpg, opts.gnupgHome);
  const keyCreated = fingerprint === undefined;
  if (fingerprint === undefined) fingerprint = createKey(gpg, opts.gnupgHome, realm.toLowerCase());
  // gpg started an agent for this home; setup is a one-shot command, so it leaves none behind
  // (gpgme starts one again when Samba or syncpasswords needs it).
  spawnSync('gpgconf', ['--kill', 'gpg-agent'], { env: { ...process.env, GNUPGHOME: opts.gnupgHome }, timeout: 10_000 });
  const smbConf = setGlobalParam(opts.smbConf, conf, GPG_KEY_IDS_PARAM, fingerprint);
  return { fingerprint, keyCreated, smbConf, ...(narrowedMode ? { narrowedMode } : {}) };
}

function readConf(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message} (give the DC's smb.conf with --smb-conf)`);
  }
}

function prepareHome(home: string): string | undefined {
  if (!existsSync(home)) {
    mkdirSync(home, { recursive: true, mode: 0o700 });
    chmodSync(home, 0o700);
    return undefined;
  }
  const st = statSync(home);
  if (!st.isDirectory()) throw new UsageError(`--gnupg-home ${home} exists and is not a folder`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    throw new UsageError(`--gnupg-home ${home} belongs to uid ${st.uid}, not to this user (${process.getuid()}): run setup as the user Samba runs as, or choose another folder`);
  }
  const mode = st.mode & 0o777;
  if (mode === 0o700) return undefined;
  chmodSync(home, 0o700);
  return mode.toString(8).padStart(4, '0');
}

function runGpg(gpg: string, home: string, args: string[]): string {
  const r = spawnSync(gpg, ['--batch', '--no-tty', ...args], {
    env: { ...process.env, GNUPGHOME: home }, encoding: 'utf8', timeout: 60_000,
  });
  if (r.error) {
    const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(missing ? `${gpg} was not found: install gnupg (apt-get install gnupg python3-gpg)` : `${gpg} failed: ${r.error.message}`);
  }
  if (r.status !== 0) throw new Error(`${gpg} ${args[0]} failed (exit ${r.status}): ${lastLine(r.stderr)}`);
  return r.stdout;
}

function lastLine(text: string): string {
  return text.trim().split('\n').pop() ?? '';
}

/** The fingerprint of an earlier run's key (a secret key with our user id), if any. */
function findKey(gpg: string, home: string): string | undefined {
  const out = runGpg(gpg, home, ['--with-colons', '--list-secret-keys']);
  let current: string | undefined;
  let wantFpr = false;
  const found: string[] = [];
  for (const line of out.split('\n')) {
    const f = line.split(':');
    if (f[0] === 'sec') {
      wantFpr = true;
      current = undefined;
    } else if (f[0] === 'fpr' && wantFpr) {
      current = f[9];
      wantFpr = false;
    } else if (f[0] === 'uid' && current && (f[9] ?? '').startsWith(`${UID_NAME} <`)) {
      found.push(current);
    }
  }
  return found[0];
}

function createKey(gpg: string, home: string, dnsDomain: string): string {
  // No passphrase: syncpasswords decrypts unattended. The folder's mode 0700 is the protection.
  runGpg(gpg, home, ['--pinentry-mode', 'loopback', '--passphrase', '', '--quick-generate-key',
    `${UID_NAME} <pwsync-capture@${dnsDomain}>`, 'rsa2048', 'encrypt', 'never']);
  const fpr = findKey(gpg, home);
  if (!fpr) throw new Error(`gpg created no key with user id "${UID_NAME}" in ${home}`);
  return fpr;
}

/** Samba ignores case and blanks in parameter names. */
const paramKey = (name: string): string => name.toLowerCase().replace(/[\s_]/g, '');

interface Line {
  section: string;
  key?: string;
  value?: string;
}

function parseLines(conf: string): Line[] {
  let section = '';
  return conf.split('\n').map((raw) => {
    const line = raw.trim();
    const s = /^\[([^\]]+)\]/.exec(line);
    if (s) {
      section = s[1]!.trim().toLowerCase();
      return { section };
    }
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return { section };
    const eq = line.indexOf('=');
    if (eq === -1) return { section };
    return { section, key: paramKey(line.slice(0, eq)), value: line.slice(eq + 1).trim() };
  });
}

export function globalParam(conf: string, name: string): string | undefined {
  const key = paramKey(name);
  return parseLines(conf).find((l) => l.section === 'global' && l.key === key)?.value;
}

function setGlobalParam(file: string, conf: string, name: string, value: string): SetupResult['smbConf'] {
  const lines = conf.split('\n');
  const parsed = parseLines(conf);
  const key = paramKey(name);
  const at = parsed.findIndex((l) => l.section === 'global' && l.key === key);
  let result: SetupResult['smbConf'];
  if (at !== -1) {
    const previous = parsed[at]!.value ?? '';
    if (previous === value) return { change: 'unchanged' };
    lines[at] = `\t${name} = ${value}`;
    result = { change: 'replaced', previous };
  } else {
    const header = parsed.findIndex((l, i) => l.section === 'global' && /^\s*\[/.test(lines[i]!));
    if (header === -1) throw new UsageError(`${file} has no [global] section`);
    lines.splice(header + 1, 0, `\t${name} = ${value}`);
    result = { change: 'added' };
  }
  const mode = statSync(file).mode & 0o7777;
  const tmp = join(dirname(file), `.${Date.now()}.pwsync-setup.tmp`);
  writeFileSync(tmp, lines.join('\n'), { mode });
  renameSync(tmp, file);
  return result;
}
