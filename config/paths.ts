import fs from 'node:fs';
import path from 'node:path';
import type { ConfigIssue, ConfigPath } from './issues.ts';
import type { YamlSource } from './source.ts';

/**
 * Paths in the YAML are relative to the YAML file's folder, so a configuration means the same
 * thing whatever the service's working directory. Files that must already exist (keys,
 * certificates, CA, public keys, secret files) can be checked up front; data folders, log files and
 * connector files are not (the service creates them, or the connector checks them when it opens).
 */

type Obj = Record<string, unknown>;

/** A path setting: where it is in the YAML and whether the file must exist and stay private. */
interface FileSetting {
  readonly at: ConfigPath;
  readonly file: string;
  readonly mustExist: boolean;
  readonly secret: boolean;
  /** The path was written relative (so a wrong base folder is a likely mistake). */
  readonly relative?: boolean;
}

/** A Windows named pipe (`\\.\pipe\NAME`) is not a file path. */
export function isWindowsPipe(p: string): boolean {
  return /^\\\\[.?]\\pipe\\/i.test(p);
}

/** An extension named by path (`./x.ts`, `/opt/x.ts`) rather than by package name. */
export function isModulePath(m: string): boolean {
  return m.startsWith('.') || m.startsWith('/') || path.isAbsolute(m);
}

/** Rewrites every path setting of a decoded hub configuration to an absolute path; returns them. */
export function resolveHubPaths(config: Obj, baseDir: string): FileSetting[] {
  const settings: FileSetting[] = [];
  const abs = (obj: Obj | undefined, key: string, at: ConfigPath, mustExist: boolean, secret: boolean): void => {
    const v = obj?.[key];
    if (typeof v !== 'string') return;
    obj![key] = path.resolve(baseDir, v);
    settings.push({ at, file: obj![key] as string, mustExist, secret, relative: !path.isAbsolute(v) });
  };
  const hub = obj(config['hub']);
  const tls = obj(hub?.['tls']);
  abs(tls, 'cert', ['hub', 'tls', 'cert'], true, false);
  abs(tls, 'key', ['hub', 'tls', 'key'], true, true);
  abs(tls, 'clientCa', ['hub', 'tls', 'clientCa'], true, false);
  settings.push(...privateKeys(hub, 'hub', baseDir));
  abs(hub, 'dataDir', ['hub', 'dataDir'], false, false);
  abs(obj(hub?.['log']), 'file', ['hub', 'log', 'file'], false, false);
  const kerberos = obj(hub?.['kerberos']);
  abs(kerberos, 'keytab', ['hub', 'kerberos', 'keytab'], true, true);
  abs(kerberos, 'replayCache', ['hub', 'kerberos', 'replayCache'], false, false);
  abs(kerberos, 'krb5Config', ['hub', 'kerberos', 'krb5Config'], true, false);
  const domains = config['domains'];
  if (Array.isArray(domains)) {
    domains.forEach((d, i) => {
      const directory = obj(obj(d)?.['directory']);
      abs(directory, 'ca', ['domains', i, 'directory', 'ca'], true, false);
      settings.push(...secretFiles(directory, ['domains', i, 'directory'], baseDir));
    });
  }
  const broker = obj(config['broker']);
  const brokerTls = obj(broker?.['tls']);
  abs(brokerTls, 'ca', ['broker', 'tls', 'ca'], true, false);
  abs(brokerTls, 'cert', ['broker', 'tls', 'cert'], true, false);
  abs(brokerTls, 'key', ['broker', 'tls', 'key'], true, true);
  if (broker) settings.push(...secretFiles({ credentials: broker['credentials'] }, ['broker'], baseDir));
  const connectors = config['connectors'];
  if (Array.isArray(connectors)) {
    connectors.forEach((c, i) => {
      const connection = obj(obj(c)?.['connection']);
      abs(connection, 'path', ['connectors', i, 'connection', 'path'], false, false);
      if (obj(c)?.['kind'] === 'remote') abs(connection, 'publicKey', ['connectors', i, 'connection', 'publicKey'], true, false);
      settings.push(...secretFiles(connection, ['connectors', i, 'connection'], baseDir));
      const extension = obj(obj(c)?.['extension']);
      if (typeof extension?.['module'] === 'string' && isModulePath(extension['module'])) {
        abs(extension, 'module', ['connectors', i, 'extension', 'module'], false, false);
      }
      settings.push(...secretFiles(obj(extension?.['settings']), ['connectors', i, 'extension', 'settings'], baseDir));
    });
  }
  return settings;
}

/** `<section>.keys`: private keys, each made absolute; they must exist and stay private. */
function privateKeys(section: Obj | undefined, name: string, baseDir: string): FileSetting[] {
  const keys = section?.['keys'];
  if (!Array.isArray(keys)) return [];
  const out: FileSetting[] = [];
  keys.forEach((k, i) => {
    if (typeof k !== 'string') return;
    keys[i] = path.resolve(baseDir, k);
    out.push({ at: [name, 'keys', i], file: keys[i] as string, mustExist: true, secret: true, relative: !path.isAbsolute(k) });
  });
  return out;
}

/** Rewrites every path setting of a decoded connector worker's configuration to an absolute path; returns them. */
export function resolveWorkerPaths(config: Obj, baseDir: string): FileSetting[] {
  // broker: and connectors: are written as in a hub's file.
  const settings = resolveHubPaths(config, baseDir);
  const worker = obj(config['worker']);
  settings.push(...privateKeys(worker, 'worker', baseDir));
  const log = obj(worker?.['log']);
  if (typeof log?.['file'] === 'string') {
    const v = log['file'];
    log['file'] = path.resolve(baseDir, v);
    settings.push({ at: ['worker', 'log', 'file'], file: log['file'] as string, mustExist: false, secret: false, relative: !path.isAbsolute(v) });
  }
  return settings;
}

/** Rewrites every path setting of a decoded notifier configuration to an absolute path; returns them. */
export function resolveNotifierPaths(config: Obj, baseDir: string): FileSetting[] {
  const settings: FileSetting[] = [];
  const abs = (o: Obj | undefined, key: string, at: ConfigPath, mustExist: boolean, secret = false): void => {
    const v = o?.[key];
    if (typeof v !== 'string') return;
    o![key] = path.resolve(baseDir, v);
    settings.push({ at, file: o![key] as string, mustExist, secret, relative: !path.isAbsolute(v) });
  };
  const notifier = obj(config['notifier']);
  abs(notifier, 'dataDir', ['notifier', 'dataDir'], false);
  abs(obj(notifier?.['log']), 'file', ['notifier', 'log', 'file'], false);
  const kerberos = obj(notifier?.['kerberos']);
  abs(kerberos, 'keytab', ['notifier', 'kerberos', 'keytab'], true, true);
  abs(kerberos, 'krb5Config', ['notifier', 'kerberos', 'krb5Config'], true);
  const samba = obj(obj(notifier?.['capture'])?.['samba']);
  abs(samba, 'smbConf', ['notifier', 'capture', 'samba', 'smbConf'], true);
  abs(samba, 'gnupgHome', ['notifier', 'capture', 'samba', 'gnupgHome'], false);
  abs(obj(obj(notifier?.['capture'])?.['windows']), 'spoolDir', ['notifier', 'capture', 'windows', 'spoolDir'], false);
  const directory = obj(notifier?.['directory']);
  abs(directory, 'ca', ['notifier', 'directory', 'ca'], true);
  settings.push(...secretFiles(directory, ['notifier', 'directory'], baseDir));
  const hook = obj(notifier?.['hook']);
  if (typeof hook?.['socket'] === 'string' && !isWindowsPipe(hook['socket'])) abs(hook, 'socket', ['notifier', 'hook', 'socket'], false);
  const targets = config['targets'];
  if (Array.isArray(targets)) {
    targets.forEach((t, i) => {
      const tls = obj(obj(t)?.['tls']);
      abs(tls, 'ca', ['targets', i, 'tls', 'ca'], true);
      abs(tls, 'cert', ['targets', i, 'tls', 'cert'], true);
      abs(tls, 'key', ['targets', i, 'tls', 'key'], true, true);
      abs(obj(t), 'publicKey', ['targets', i, 'publicKey'], true);
    });
  }
  return settings;
}

/** `{fromFile: PATH}` references anywhere in free-form settings; left as written (resolveSecret resolves them). */
function secretFiles(settings: Obj | undefined, at: ConfigPath, baseDir: string): FileSetting[] {
  if (!settings) return [];
  const found: FileSetting[] = [];
  for (const [key, value] of Object.entries(settings)) {
    const v = obj(value);
    if (!v) continue;
    const keys = Object.keys(v);
    if (keys.length === 1 && typeof v['fromFile'] === 'string') {
      found.push({ at: [...at, key, 'fromFile'], file: path.resolve(baseDir, v['fromFile']), mustExist: true, secret: true, relative: !path.isAbsolute(v['fromFile']) });
    } else {
      found.push(...secretFiles(v, [...at, key], baseDir));
    }
  }
  return found;
}

/** Checks that the files that must exist do, can be read, and (keys, secrets) are private. */
export function fileIssues(src: YamlSource, settings: readonly FileSetting[]): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const s of settings) {
    if (!s.mustExist) continue;
    const problem = checkFile(s.file, s.secret, s.relative ?? false);
    if (problem) issues.push(src.issue(src.valueAt(s.at), s.at, problem.message, problem.fix));
  }
  return issues;
}

/** What is wrong with a file that must exist and be readable (and private, for a secret), if anything. */
export function checkFile(file: string, secret: boolean, wasRelative = false): { message: string; fix: string } | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      const hint = !wasRelative ? '' : ' (a relative path is relative to the YAML file\'s folder)';
      return { message: `the file ${file} does not exist`, fix: `create it, or correct the path${hint}` };
    }
    return { message: `the file ${file} cannot be checked (${code ?? 'error'})`, fix: 'check the path and the permissions of its folders' };
  }
  if (!st.isFile()) return { message: `${file} is not a regular file`, fix: 'point the setting at a file' };
  try {
    fs.accessSync(file, fs.constants.R_OK);
  } catch {
    return { message: `the file ${file} cannot be read by this process`, fix: 'give the service account read access to it' };
  }
  if (secret && process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    return {
      message: `the file ${file} is readable by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')})`,
      fix: `run \`chmod 600 ${file}\` so that only the service account can read it`,
    };
  }
  return undefined;
}

function obj(v: unknown): Obj | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Obj : undefined;
}
