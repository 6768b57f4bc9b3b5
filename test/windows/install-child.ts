import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { loadNotifierConfig } from '../../config/load.ts';
import { install, uninstall } from '../../notifier/windows/install.ts';
import type { CommandRunner } from '../../notifier/windows/registry.ts';
import { testDir } from '../lib/dirs.ts';

/**
 * `pwsync notifier install|uninstall` against a Wine prefix, for notifier-install.test.ts: the
 * real reg.exe, sc.exe, schtasks.exe and icacls.exe of Wine (the last two are stubs there), System32
 * of the prefix. Run as a child so that it can be started with PWSYNC_TEST_ONLY_SUITES=1 (an RSA
 * target). Usage: tsx install-child.ts install|uninstall CONFIG DLL
 *
 * Each command's output goes to a file, not a pipe: sc.exe under Wine starts services.exe, which
 * inherits a pipe and holds it open, so a reader of a pipe would wait for it (bounded here by 60 s).
 */
const [verb, configFile, dll] = process.argv.slice(2) as [string, string, string];
const prefix = process.env.WINEPREFIX!;
const outDir = testDir('install-child');
let n = 0;
const run: CommandRunner = (cmd, args) => new Promise((resolve) => {
  const out = path.join(outDir, `${++n}.out`);
  const err = path.join(outDir, `${n}.err`);
  const fo = openSync(out, 'w');
  const fe = openSync(err, 'w');
  const p = spawn('wine', [cmd, ...args], { env: process.env, stdio: ['ignore', fo, fe] });
  closeSync(fo);
  closeSync(fe);
  const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
  p.on('exit', (code) => {
    clearTimeout(timer);
    resolve({ code: code ?? 1, stdout: readFileSync(out, 'utf8'), stderr: readFileSync(err, 'utf8') });
  });
});
process.on('exit', () => rmSync(outDir, { recursive: true, force: true }));
const host = {
  run, system32: path.join(prefix, 'drive_c', 'windows', 'system32'),
  toWindows: (p: string) => `Z:${path.resolve(p).replaceAll('/', '\\')}`,
  say: (line: string) => process.stdout.write(`${line}\n`),
};
const config = await loadNotifierConfig(configFile, { checkFiles: false });
if (verb === 'install') await install({ config, dll, node: 'C:\\Program Files\\nodejs\\node.exe', pwsyncBin: 'C:\\pwsync\\bin\\pwsync.mjs', configFile: 'C:\\pwsync\\notifier.yaml' }, host);
else await uninstall({ config }, host);
