import type { Command } from 'commander';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadNotifierConfig } from '../config/load.ts';
import { UsageError } from '../core/errors.ts';
import { install, uninstall, type InstallHost } from '../notifier/windows/install.ts';
import { fileRunner, windowsHost } from '../notifier/windows/install-main.ts';
import { PWSYNC_BIN, REPO } from './lab.ts';

/**
 * `pwsync notifier install` / `uninstall`: set up (or remove) capture on a Windows DC: the filter
 * DLL, its registry settings, Notification Packages, the pipe server service and the notifier at boot
 * (notifier/windows/install.ts). Windows only, except `--dry-run`, which prints the steps anywhere.
 */
async function withHost(dryRun: boolean, fn: (host: InstallHost) => Promise<void>): Promise<void> {
  if (process.platform !== 'win32' && !dryRun) {
    throw new UsageError(`\`pwsync notifier install\` and \`uninstall\` set up capture on a Windows domain controller; this is ${process.platform}. On a Samba DC use notifier.capture.samba (\`pwsync samba setup\`); to see the Windows steps here, add --dry-run`);
  }
  // The same host and runner as the bundled install program that the tests run under Windows node.exe.
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pwsync-install-'));
  try {
    await fn(windowsHost(fileRunner(tmp), { dryRun }));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
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
      await withHost(opts.dryRun === true, (host) => install({
        config, dll: path.resolve(opts.dll), ...(opts.pipeExe ? { pipeExe: path.resolve(opts.pipeExe) } : {}), node: process.execPath, pwsyncBin: PWSYNC_BIN, configFile: path.resolve(file),
      }, host));
    });
  notifier.command('uninstall')
    .description('Windows DC (with the notifier\'s -c/--config): remove the filter DLL from Notification Packages, its settings, the pwsync-pipe service and the notifier task (reboot needed).')
    .option('--dry-run', 'print the steps, change nothing')
    .action(async (opts: { dryRun?: boolean }, cmd: Command) => {
      const config = await loadNotifierConfig(configOf(cmd), { checkFiles: false });
      await withHost(opts.dryRun === true, (host) => uninstall({ config }, host));
    });
}
