import type { Command } from 'commander';
import path from 'node:path';
import { loadNotifierConfig } from '../config/load.ts';
import { UsageError } from '../core/errors.ts';
import { install, uninstall, type InstallHost } from '../notifier/windows/install.ts';
import { runCommand } from '../notifier/windows/registry.ts';
import { PWSYNC_BIN, REPO } from './lab.ts';

/**
 * `pwsync notifier install` / `uninstall`: set up (or remove) capture on a Windows DC: the filter
 * DLL, its registry settings, Notification Packages, the pipe server service and the notifier at boot
 * (notifier/windows/install.ts). Windows only, except `--dry-run`, which prints the steps anywhere.
 */
function host(dryRun: boolean): InstallHost {
  if (process.platform !== 'win32' && !dryRun) {
    throw new UsageError(`\`pwsync notifier install\` and \`uninstall\` set up capture on a Windows domain controller; this is ${process.platform}. On a Samba DC use notifier.capture.samba (\`pwsync samba setup\`); to see the Windows steps here, add --dry-run`);
  }
  return {
    run: runCommand, dryRun,
    system32: path.join(process.env.SystemRoot ?? 'C:\\Windows', 'System32'),
    toWindows: (p) => p,
    say: (line) => process.stdout.write(`${line}\n`),
  };
}

/** `pwsync notifier -c FILE install`: the YAML is the notifier command's own -c/--config (given before or after). */
function configOf(cmd: Command): string {
  return (cmd.parent?.opts() as { config: string }).config;
}

export function registerWindows(notifier: Command): void {
  notifier.command('install')
    .description('Windows DC (with the notifier\'s -c/--config): install the password filter DLL, its settings, Notification Packages, the pipe server service pwsync-pipe, and the notifier at boot (reboot needed).')
    .option('--dll <file>', 'the filter DLL to install', path.join(REPO, 'build', 'windows', 'pwsyncfilter.dll'))
    .option('--pipe-exe <file>', 'the pipe server to install as the service pwsync-pipe (default: pwsync-pipe.exe beside --dll)')
    .option('--dry-run', 'print the steps, change nothing')
    .action(async (opts: { dll: string; pipeExe?: string; dryRun?: boolean }, cmd: Command) => {
      const file = configOf(cmd);
      const config = await loadNotifierConfig(file, { checkFiles: true });
      await install({
        config, dll: path.resolve(opts.dll), ...(opts.pipeExe ? { pipeExe: path.resolve(opts.pipeExe) } : {}), node: process.execPath, pwsyncBin: PWSYNC_BIN, configFile: path.resolve(file),
      }, host(opts.dryRun === true));
    });
  notifier.command('uninstall')
    .description('Windows DC (with the notifier\'s -c/--config): remove the filter DLL from Notification Packages, its settings, the pwsync-pipe service and the notifier task (reboot needed).')
    .option('--dry-run', 'print the steps, change nothing')
    .action(async (opts: { dryRun?: boolean }, cmd: Command) => {
      const config = await loadNotifierConfig(configOf(cmd), { checkFiles: false });
      await uninstall({ config }, host(opts.dryRun === true));
    });
}
