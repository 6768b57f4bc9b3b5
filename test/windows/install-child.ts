import { execFile } from 'node:child_process';
import path from 'node:path';
import { loadNotifierConfig } from '../../config/load.ts';
import { install, uninstall } from '../../notifier/windows/install.ts';
import type { CommandRunner } from '../../notifier/windows/registry.ts';

/**
 * `pwsync notifier install|uninstall` against a Wine prefix, for notifier-install.test.ts: the
 * real reg.exe, schtasks.exe and icacls.exe of Wine (the last two are stubs there), System32 of
 * the prefix. Run as a child so that it can be started with PWSYNC_TEST_ONLY_SUITES=1 (an RSA
 * target). Usage: tsx install-child.ts install|uninstall CONFIG DLL
 */
const [verb, configFile, dll] = process.argv.slice(2) as [string, string, string];
const prefix = process.env.WINEPREFIX!;
const run: CommandRunner = (cmd, args) => new Promise((resolve) => {
  execFile('wine', [cmd, ...args], { env: process.env, timeout: 60_000 }, (err, stdout, stderr) => {
    resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) });
  });
});
const host = {
  run, system32: path.join(prefix, 'drive_c', 'windows', 'system32'),
  toWindows: (p: string) => `Z:${path.resolve(p).replaceAll('/', '\\')}`,
  say: (line: string) => process.stdout.write(`${line}\n`),
};
const config = await loadNotifierConfig(configFile, { checkFiles: false });
if (verb === 'install') await install({ config, dll, node: 'C:\\Program Files\\nodejs\\node.exe', pwsyncBin: 'C:\\pwsync\\bin\\pwsync.mjs', configFile: 'C:\\pwsync\\notifier.yaml' }, host);
else await uninstall({ config }, host);
