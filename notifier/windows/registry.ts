import { execFile } from 'node:child_process';

/**
 * The Windows registry through `reg.exe` (no native module): what `pwsync notifier install` writes
 * and what the notifier reads to tell whether LSASS will load the filter DLL. `run` is the
 * command runner, so that the tests drive Wine's reg.exe.
 */
export type CommandRunner = (command: string, args: readonly string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

export const runCommand: CommandRunner = (command, args) => new Promise((resolve) => {
  execFile(command, [...args], { windowsHide: true, timeout: 30_000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
    const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
    resolve({ code, stdout: String(stdout), stderr: err && !stderr ? err.message : String(stderr) });
  });
});

export const LSA_KEY = 'HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa';
export const NOTIFICATION_PACKAGES = 'Notification Packages';
export const PWSYNC_KEY = 'HKLM\\SOFTWARE\\pwsync';

export interface RegValue {
  name: string;
  type: string;
  data: string;
}

/**
 * Reads `reg.exe query KEY [/v NAME]` output: lines `    NAME    REG_TYPE    DATA` under the key
 * name. A REG_MULTI_SZ's items are shown joined by a literal `\0`.
 */
export function parseRegQuery(stdout: string): RegValue[] {
  const out: RegValue[] = [];
  for (const raw of stdout.split(/\r?\n/)) {
    const m = /^ {2,}(.*?) {4}(REG_[A-Z_]+)(?: {4}(.*))?$/.exec(raw);
    if (m) out.push({ name: m[1]!.trim(), type: m[2]!, data: m[3] ?? '' });
  }
  return out;
}

export function multiSzItems(data: string): string[] {
  return data.split('\\0').map((s) => s.trim()).filter((s) => s.length > 0);
}

/** The `Notification Packages` list; undefined when the value cannot be read. */
export async function notificationPackages(run: CommandRunner, regExe = 'reg.exe'): Promise<{ items: string[] } | { error: string }> {
  const r = await run(regExe, ['query', LSA_KEY, '/v', NOTIFICATION_PACKAGES]);
  if (r.code !== 0) return { error: `reg.exe query ${LSA_KEY} /v "${NOTIFICATION_PACKAGES}" failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}` };
  const v = parseRegQuery(r.stdout).find((x) => x.name.toLowerCase() === NOTIFICATION_PACKAGES.toLowerCase());
  return { items: v ? multiSzItems(v.data) : [] };
}

/** The DLL's entry in `Notification Packages`: its file name without `.dll`, compared ignoring case. */
export function listsPackage(items: readonly string[], dllName: string): boolean {
  const want = dllName.replace(/\.dll$/i, '').toLowerCase();
  return items.some((i) => i.replace(/\.dll$/i, '').toLowerCase() === want);
}
