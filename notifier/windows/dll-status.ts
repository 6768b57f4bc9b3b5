import { readFileSync } from 'node:fs';
import os from 'node:os';
import { formatTime } from '../../core/change-time.ts';

/**
 * The filter DLL's own report (iface7): `<SpoolDir>\status.txt`, written atomically at
 * InitializeChangeNotify (when LSASS loads it) and whenever it disables itself: ASCII `key=value`
 * lines `version`, `build` (prod|test), `loadedAt` (unix ms), `pid`, `state` (ok|disabled),
 * `reason`, `targets` (enabled targets).
 */
export interface DllStatus {
  version: string;
  build: string;
  loadedAt: number;
  pid: number;
  state: string;
  reason: string;
  targets: number;
  /** Changes not captured since load (a seal or write failure: the change itself went through). */
  failed: number;
  /** `<unix ms> stage=… error=… <reason>` of the last one; never a password. */
  lastFailure: string;
}

export function parseDllStatus(text: string): DllStatus {
  const kv = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf('=');
    if (i > 0) kv.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  const num = (k: string): number => {
    const v = Number(kv.get(k));
    return Number.isFinite(v) ? v : 0;
  };
  return {
    version: kv.get('version') ?? '', build: kv.get('build') ?? '', loadedAt: num('loadedAt'), pid: num('pid'),
    state: kv.get('state') ?? '', reason: kv.get('reason') ?? '', targets: num('targets'),
    failed: num('failed'), lastFailure: kv.get('lastFailure') ?? '',
  };
}

/** A status read from a file; `missing` when there is none. */
export function readDllStatus(file: string): DllStatus | 'missing' {
  try {
    return parseDllStatus(readFileSync(file, 'latin1'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw e;
  }
}

/**
 * Why capture is not working according to the status file, or undefined when it says the DLL is
 * loaded and enabled. "Old" means written before this machine's last boot: LSASS loads the DLL at
 * every boot, so a status older than the boot says it was not loaded this time.
 */
export function statusProblem(status: DllStatus | 'missing', file: string, now = Date.now(), bootTime = now - os.uptime() * 1000): string | undefined {
  if (status === 'missing') {
    return `the filter DLL has not written ${file}: LSASS has not loaded it (after \`pwsync notifier install\` the DC must be rebooted), or the spool folder differs from the DLL's SpoolDir`;
  }
  if (status.state === 'disabled') return `the filter DLL disabled itself: ${status.reason || 'no reason given'} (it captures nothing until LSASS loads it again, at the next reboot)`;
  if (status.state !== 'ok') return `the filter DLL's status file ${file} has state "${status.state}", neither ok nor disabled`;
  // A minute of slack: the boot time is computed from uptime and the clock.
  if (status.loadedAt < bootTime - 60_000) {
    return `the filter DLL's status is from ${formatTime(status.loadedAt)}, before this boot (${formatTime(bootTime)}): LSASS did not load it this time (check Notification Packages and that ${'the DLL'} is in System32)`;
  }
  if (status.targets === 0) return `the filter DLL has no enabled target: HKLM\\SOFTWARE\\pwsync\\Targets holds none it can use${status.reason ? ` (${status.reason})` : ''}`;
  return undefined;
}
