import { createPublicKey } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { NotifierConfig } from '../../config/schema.ts';
import { recipientFromPem, testRecipientFromPem } from '../../core/envelope.ts';
import { UsageError } from '../../core/errors.ts';
import { LSA_KEY, listsPackage, NOTIFICATION_PACKAGES, notificationPackages, PWSYNC_KEY, type CommandRunner } from './registry.ts';

/**
 * `pwsync notifier install` / `uninstall` on a Windows DC, with the tools every Windows has
 * (reg.exe, sc.exe, schtasks.exe, icacls.exe): the spool folder with a DACL for SYSTEM and
 * Administrators only, the filter DLL copied to System32, its settings under HKLM\SOFTWARE\pwsync
 * (iface7), the DLL appended to `Notification Packages` (existing entries kept), the pipe server
 * pwsync-pipe.exe copied beside the DLL and registered as the auto-start LocalSystem service
 * `pwsync-pipe` (restarted on failure; it serves PipeName with a SYSTEM-only DACL and writes what
 * it receives into the spool folder), and the notifier started at boot as SYSTEM (it drains the
 * spool folder). Both are idempotent. LSASS reads `Notification Packages` only at boot: a reboot
 * is needed after either.
 *
 * Why a scheduled task rather than `sc.exe create`: the service control manager starts only
 * programs that answer it (StartServiceCtrlDispatcher), which node.exe does not without a native
 * module or a wrapper; started by sc.exe it fails with error 1053 and is stopped. A task at boot
 * running as SYSTEM, restarted on failure, runs the same notifier with the same rights. To run it
 * under the service manager instead, wrap the printed command with a service wrapper (WinSW, NSSM).
 */
export interface InstallHost {
  run: CommandRunner;
  /** Where the DLL goes, as a path this process can write (normally %SystemRoot%\System32). */
  system32: string;
  /** A path as Windows programs see it (identity on Windows; Wine's Z: in tests). */
  toWindows(p: string): string;
  /** Prints each step; with dryRun, prints what it would do and changes nothing. */
  say(line: string): void;
  dryRun?: boolean;
}

export interface InstallOptions {
  config: NotifierConfig & { sourceFile?: string };
  /** The filter DLL to copy (build/windows/pwsyncfilter.dll, or an MSVC build). */
  dll: string;
  /** The pipe server to copy beside it; default: pwsync-pipe.exe in the DLL's folder. */
  pipeExe?: string;
  /** The notifier's command line for the boot task. */
  node: string;
  pwsyncBin: string;
  configFile: string;
  taskName?: string;
}

export const TASK_NAME = 'pwsync-notifier';
export const PIPE_SERVICE = 'pwsync-pipe';
export const PIPE_EXE = 'pwsync-pipe.exe';
/** sc.exe failure: restart after 5 s, 5 s, then every 60 s; the count resets after a day. */
const PIPE_FAILURE = ['reset=', '86400', 'actions=', 'restart/5000/restart/5000/restart/60000'];
const SPOOL_DACL = ['/inheritance:r', '/grant:r', '*S-1-5-18:(OI)(CI)F', '*S-1-5-32-544:(OI)(CI)F'];

/** One target's registry values (iface7): the 65-byte point and key id; an RSA key only in test mode. */
export function targetValues(t: NotifierConfig['targets'][number]): { publicKey: Buffer; keyId: Buffer; suite: number; enabled: number } {
  const pem = readFileSync(t.publicKey);
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType === 'rsa') {
    const r = testRecipientFromPem(pem); // refused unless PWSYNC_TEST_ONLY_SUITES=1
    const jwk = key.export({ format: 'jwk' });
    const e = Buffer.from(jwk.e!, 'base64url');
    const n = Buffer.from(jwk.n!, 'base64url');
    const head = Buffer.alloc(24);
    head.writeUInt32LE(0x31415352, 0); // BCRYPT_RSAPUBLIC_MAGIC
    head.writeUInt32LE(n.length * 8, 4);
    head.writeUInt32LE(e.length, 8);
    head.writeUInt32LE(n.length, 12);
    return { publicKey: Buffer.concat([head, e, n]), keyId: r.keyId, suite: 0xf1, enabled: t.enabled ? 1 : 0 };
  }
  const r = recipientFromPem(pem);
  return { publicKey: r.publicPoint, keyId: r.keyId, suite: 1, enabled: t.enabled ? 1 : 0 };
}

async function step(host: InstallHost, what: string, cmd: string, args: string[], opts: { mayFail?: boolean } = {}): Promise<boolean> {
  const shown = `${cmd} ${args.map((a) => (/[\s"]/.test(a) || a === '' ? `"${a.replaceAll('"', '\\"')}"` : a)).join(' ')}`;
  if (host.dryRun) {
    host.say(`would run: ${shown}`);
    return true;
  }
  const r = await host.run(cmd, args);
  if (r.code !== 0 && !opts.mayFail) throw new Error(`${what} failed: ${shown} exited with ${r.code}: ${(r.stderr || r.stdout).trim()}`);
  host.say(`${r.code === 0 ? 'done' : 'skipped'}: ${what}`);
  return r.code === 0;
}

function windowsSettings(config: NotifierConfig): NonNullable<NonNullable<NotifierConfig['notifier']['capture']>['windows']> {
  const w = config.notifier.capture?.windows;
  if (!w) throw new UsageError('notifier.capture.windows is not set in the notifier YAML: set at least its spoolDir (and pipe) before `pwsync notifier install`');
  return w;
}

export async function install(opts: InstallOptions, host: InstallHost): Promise<void> {
  const { config } = opts;
  const w = windowsSettings(config);
  if (!existsSync(opts.dll)) throw new UsageError(`the filter DLL ${opts.dll} does not exist: build it (\`npm run build:windows\`, or MSVC) and pass --dll`);
  const pipeExe = opts.pipeExe ?? path.join(path.dirname(opts.dll), PIPE_EXE);
  if (w.pipe && !existsSync(pipeExe)) throw new UsageError(`the pipe server ${pipeExe} does not exist: build it (\`npm run build:windows\`, or MSVC) and pass --pipe-exe`);
  const targets = config.targets.map((t) => ({ name: t.name, ...targetValues(t) }));
  if (!targets.some((t) => t.enabled)) throw new UsageError('no target is enabled in the notifier YAML: the DLL would capture nothing');
  const spool = host.toWindows(w.spoolDir);

  if (!host.dryRun) mkdirSync(w.spoolDir, { recursive: true });
  await step(host, `spool folder ${spool}: SYSTEM and Administrators only`, 'icacls.exe', [spool, ...SPOOL_DACL]);

  const dllDest = path.join(host.system32, `${w.dllName}.dll`);
  if (host.dryRun) host.say(`would copy ${opts.dll} to ${dllDest}`);
  else {
    try {
      copyFileSync(opts.dll, dllDest);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new Error(code === 'EBUSY' || code === 'EPERM'
        ? `cannot replace ${dllDest}: LSASS has it loaded. Run \`pwsync notifier uninstall\`, reboot, then install again`
        : `cannot copy the DLL to ${dllDest}: ${(e as Error).message}`);
    }
    host.say(`done: copied ${path.basename(opts.dll)} to ${dllDest}`);
  }

  // The settings are replaced as a whole, so a target removed from the YAML leaves no key behind.
  await step(host, `remove old settings ${PWSYNC_KEY}`, 'reg.exe', ['delete', PWSYNC_KEY, '/f'], { mayFail: true });
  const add = (key: string, name: string, type: string, data: string): Promise<boolean> =>
    step(host, `${key}\\${name}`, 'reg.exe', ['add', key, '/v', name, '/t', type, '/d', data, '/f']);
  await add(PWSYNC_KEY, 'PipeName', 'REG_SZ', w.pipe ?? '');
  await add(PWSYNC_KEY, 'SpoolDir', 'REG_SZ', spool);
  await add(PWSYNC_KEY, 'TimeBudgetMs', 'REG_DWORD', String(Math.min(2000, Math.max(50, w.timeBudget))));
  await add(PWSYNC_KEY, 'Domain', 'REG_SZ', config.notifier.domain);
  for (const t of targets) {
    const key = `${PWSYNC_KEY}\\Targets\\${t.name}`;
    await add(key, 'PublicKey', 'REG_BINARY', t.publicKey.toString('hex'));
    await add(key, 'KeyId', 'REG_BINARY', t.keyId.toString('hex'));
    await add(key, 'Suite', 'REG_DWORD', String(t.suite));
    await add(key, 'Enabled', 'REG_DWORD', String(t.enabled));
  }

  const current = await readPackages(host);
  if (listsPackage(current, w.dllName)) host.say(`done: ${NOTIFICATION_PACKAGES} already lists ${w.dllName}`);
  else await step(host, `${NOTIFICATION_PACKAGES}: append ${w.dllName}`, 'reg.exe', ['add', LSA_KEY, '/v', NOTIFICATION_PACKAGES, '/t', 'REG_MULTI_SZ', '/d', [...current, w.dllName].join('\\0'), '/f']);

  if (w.pipe) await installPipeService(host, pipeExe);
  else {
    host.say(`notifier.capture.windows.pipe is not set: the DLL spools every change; the ${PIPE_SERVICE} service is not installed`);
    await removePipeService(host);
  }

  const taskName = opts.taskName ?? TASK_NAME;
  const xml = taskXml(opts.node, [opts.pwsyncBin, 'notifier', '--config', opts.configFile], path.dirname(path.dirname(opts.pwsyncBin)));
  const xmlFile = path.join(w.spoolDir, `${taskName}.task.xml`);
  if (!host.dryRun) writeFileSync(xmlFile, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(xml, 'utf16le')]));
  await step(host, `scheduled task ${taskName}: the notifier as SYSTEM at boot, restarted on failure`, 'schtasks.exe', ['/Create', '/TN', taskName, '/XML', host.toWindows(xmlFile), '/F']);
  if (!host.dryRun) rmSync(xmlFile, { force: true });
  await step(host, `start ${taskName} now`, 'schtasks.exe', ['/Run', '/TN', taskName], { mayFail: true });

  host.say('');
  host.say(`Reboot this DC: LSASS loads ${w.dllName}.dll from ${NOTIFICATION_PACKAGES} only at boot.`);
  host.say('With LSA protection (RunAsPPL) on, LSASS loads only DLLs signed by Microsoft: the filter DLL is then not loaded (the notifier reports "not-registered").');
  host.say(`After the reboot: ${host.toWindows(path.join(w.spoolDir, 'status.txt'))} says state=ok, and \`pwsync status --dcs\` on the hub lists "windows: running" for this DC.`);
  if (w.pipe) host.say(`\`sc.exe query ${PIPE_SERVICE}\` shows STATE 4 RUNNING; its log is ${host.toWindows(path.join(w.spoolDir, 'pwsync-pipe.log'))}.`);
}

/** The service's state from `sc.exe query` (1 stopped … 4 running), or undefined when it does not exist. */
async function serviceState(host: InstallHost): Promise<number | undefined> {
  const r = await host.run('sc.exe', ['query', PIPE_SERVICE]);
  if (r.code !== 0) return undefined;
  const m = /STATE\s*:\s*(\d+)/.exec(r.stdout);
  return m ? Number(m[1]) : undefined;
}

/** Stops the service if it runs, waiting (bounded) until it has stopped: its exe is locked until then. */
async function stopPipeService(host: InstallHost): Promise<void> {
  const state = await serviceState(host);
  if (state === undefined || state === 1) return;
  await step(host, `stop the ${PIPE_SERVICE} service`, 'sc.exe', ['stop', PIPE_SERVICE], { mayFail: true });
  for (let i = 0; i < 40; i++) { // 40 × 250 ms
    const now = await serviceState(host);
    if (now !== 3 && now !== 4) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  host.say(`the ${PIPE_SERVICE} service did not stop within 10 s`);
}

async function installPipeService(host: InstallHost, pipeExe: string): Promise<void> {
  const dest = path.join(host.system32, PIPE_EXE);
  const exists = host.dryRun ? false : (await serviceState(host)) !== undefined;
  if (!host.dryRun) await stopPipeService(host);
  if (host.dryRun) host.say(`would copy ${pipeExe} to ${dest}`);
  else {
    try {
      copyFileSync(pipeExe, dest);
    } catch (e) {
      throw new Error(`cannot copy the pipe server to ${dest}: ${(e as Error).message}`);
    }
    host.say(`done: copied ${path.basename(pipeExe)} to ${dest}`);
  }
  const bin = host.toWindows(dest);
  const binPath = /\s/.test(bin) ? `"${bin}"` : bin;
  if (exists) await step(host, `${PIPE_SERVICE} service already registered`, 'sc.exe', ['config', PIPE_SERVICE, 'binPath=', binPath, 'start=', 'auto', 'obj=', 'LocalSystem'], { mayFail: true });
  else await step(host, `${PIPE_SERVICE} service: ${bin}, started at boot as LocalSystem`, 'sc.exe', ['create', PIPE_SERVICE, 'binPath=', binPath, 'start=', 'auto', 'obj=', 'LocalSystem', 'DisplayName=', 'pwsync pipe server']);
  await step(host, `${PIPE_SERVICE} service: restarted on failure`, 'sc.exe', ['failure', PIPE_SERVICE, ...PIPE_FAILURE]);
  await step(host, `start the ${PIPE_SERVICE} service now`, 'sc.exe', ['start', PIPE_SERVICE], { mayFail: true });
  if (host.dryRun) return;
  for (let i = 0; i < 40; i++) { // 40 × 250 ms for START_PENDING to become RUNNING
    const state = await serviceState(host);
    if (state === 4) {
      host.say(`done: the ${PIPE_SERVICE} service is running`);
      return;
    }
    if (state !== 2) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  host.say(`the ${PIPE_SERVICE} service is not running: see \`sc.exe query ${PIPE_SERVICE}\` and its log in the spool folder (pwsync-pipe.log); until it runs, the DLL spools every change`);
}

async function removePipeService(host: InstallHost): Promise<void> {
  if (!host.dryRun) {
    if ((await serviceState(host)) === undefined) {
      host.say(`done: no ${PIPE_SERVICE} service`);
    } else {
      await stopPipeService(host);
      await step(host, `remove the ${PIPE_SERVICE} service`, 'sc.exe', ['delete', PIPE_SERVICE], { mayFail: true });
    }
  } else {
    await step(host, `stop the ${PIPE_SERVICE} service`, 'sc.exe', ['stop', PIPE_SERVICE], { mayFail: true });
    await step(host, `remove the ${PIPE_SERVICE} service`, 'sc.exe', ['delete', PIPE_SERVICE], { mayFail: true });
  }
  const exe = path.join(host.system32, PIPE_EXE);
  if (host.dryRun) host.say(`would delete ${exe}`);
  else if (existsSync(exe)) {
    try {
      rmSync(exe, { force: true });
      host.say(`done: deleted ${exe}`);
    } catch {
      host.say(`cannot delete ${exe} yet (still running?): delete it after the reboot`);
    }
  }
}

export async function uninstall(opts: Pick<InstallOptions, 'config' | 'taskName'>, host: InstallHost): Promise<void> {
  const w = windowsSettings(opts.config);
  const current = await readPackages(host);
  if (listsPackage(current, w.dllName)) {
    const rest = current.filter((i) => !listsPackage([i], w.dllName));
    await step(host, `${NOTIFICATION_PACKAGES}: remove ${w.dllName}`, 'reg.exe', ['add', LSA_KEY, '/v', NOTIFICATION_PACKAGES, '/t', 'REG_MULTI_SZ', '/d', rest.join('\\0'), '/f']);
  } else host.say(`done: ${NOTIFICATION_PACKAGES} does not list ${w.dllName}`);
  await removePipeService(host);
  const taskName = opts.taskName ?? TASK_NAME;
  await step(host, `stop ${taskName}`, 'schtasks.exe', ['/End', '/TN', taskName], { mayFail: true });
  await step(host, `remove the scheduled task ${taskName}`, 'schtasks.exe', ['/Delete', '/TN', taskName, '/F'], { mayFail: true });
  await step(host, `remove ${PWSYNC_KEY}`, 'reg.exe', ['delete', PWSYNC_KEY, '/f'], { mayFail: true });
  const dll = path.join(host.system32, `${w.dllName}.dll`);
  if (host.dryRun) host.say(`would delete ${dll}`);
  else {
    try {
      rmSync(dll, { force: true });
      host.say(`done: deleted ${dll}`);
    } catch {
      host.say(`LSASS still has ${dll} loaded: delete it after the reboot`);
    }
  }
  host.say('');
  host.say(`Reboot this DC: LSASS unloads ${w.dllName}.dll only then. The spool folder ${host.toWindows(w.spoolDir)} is kept: let the notifier drain it first if it holds changes.`);
}

async function readPackages(host: InstallHost): Promise<string[]> {
  const r = await notificationPackages(host.run);
  if ('error' in r) {
    if (host.dryRun) {
      host.say(`cannot read ${NOTIFICATION_PACKAGES} (${r.error}): shown as empty`);
      return [];
    }
    throw new Error(r.error);
  }
  return r.items;
}

const esc = (s: string): string => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

/** Task Scheduler 1.2 XML: at boot, as SYSTEM (S-1-5-18), no time limit, restarted every minute on failure. */
export function taskXml(command: string, args: string[], workDir: string): string {
  const argLine = args.map((a) => `"${a}"`).join(' ');
  return `<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo><Description>pwsync notifier: password changes captured on this DC, queued sealed and sent to the hubs</Description></RegistrationInfo>
  <Triggers><BootTrigger><Enabled>true</Enabled></BootTrigger></Triggers>
  <Principals><Principal id="System"><UserId>S-1-5-18</UserId><RunLevel>HighestAvailable</RunLevel></Principal></Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <StartWhenAvailable>true</StartWhenAvailable>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <RestartOnFailure><Interval>PT1M</Interval><Count>999</Count></RestartOnFailure>
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="System"><Exec><Command>${esc(command)}</Command><Arguments>${esc(argLine)}</Arguments><WorkingDirectory>${esc(workDir)}</WorkingDirectory></Exec></Actions>
</Task>
`;
}
