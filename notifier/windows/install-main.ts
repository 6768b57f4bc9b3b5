import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadNotifierConfig } from '../../config/load.ts';
import { UsageError } from '../../core/errors.ts';
import { install, uninstall, type InstallHost } from './install.ts';
import type { CommandRunner } from './registry.ts';

/**
 * `install` / `uninstall` as a plain program for Windows Node, with no native module and no
 * dependency on the CLI: bundled into one .mjs it runs under any node.exe on the DC (the tests run
 * it under Windows node.exe in Wine). Usage:
 *   node install.mjs install   --config NOTIFIER.yaml --dll pwsyncfilter.dll [--pipe-exe pwsync-pipe.exe]
 *                              [--pwsync-bin bin\pwsync.mjs] [--node node.exe] [--system32 DIR] [--dry-run]
 *   node install.mjs uninstall --config NOTIFIER.yaml [--system32 DIR] [--dry-run]
 * Exit 0 done, 2 a usage or configuration error, 1 a step failed.
 */

/**
 * Runs reg.exe, sc.exe, schtasks.exe, icacls.exe with their output in files, read after they exit:
 * sc.exe may start services.exe (on first use under Wine), which inherits the handles it was given
 * and holds them open, so a reader of a pipe would wait for it. Each command is bounded.
 */
export function fileRunner(dir: string, timeoutMs = 60_000): CommandRunner {
  let n = 0;
  return (cmd, args) => new Promise((resolve) => {
    const out = path.join(dir, `${++n}.out`);
    const err = path.join(dir, `${n}.err`);
    const fo = openSync(out, 'w');
    const fe = openSync(err, 'w');
    let p;
    try {
      p = spawn(cmd, [...args], { stdio: ['ignore', fo, fe], windowsHide: true });
    } finally {
      closeSync(fo);
      closeSync(fe);
    }
    let done = false;
    const finish = (code: number, note = ''): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const read = (f: string): string => {
        try {
          return readFileSync(f, 'utf8');
        } catch {
          return '';
        }
      };
      resolve({ code, stdout: read(out), stderr: read(err) + note });
      rmSync(out, { force: true });
      rmSync(err, { force: true });
    };
    const timer = setTimeout(() => {
      p.kill();
      finish(1, `${cmd} did not finish within ${timeoutMs} ms`);
    }, timeoutMs);
    p.on('error', (e) => finish(1, e.message));
    p.on('exit', (code) => finish(code ?? 1));
  });
}

export function windowsHost(run: CommandRunner, opts: { system32?: string; dryRun?: boolean; say?: (line: string) => void } = {}): InstallHost {
  return {
    run,
    dryRun: opts.dryRun === true,
    system32: opts.system32 ?? path.join(process.env.SystemRoot ?? 'C:\\Windows', 'System32'),
    toWindows: (p) => p,
    say: opts.say ?? ((line) => process.stdout.write(`${line}\n`)),
  };
}

/** The program: parses argv (without node and the script), returns the exit code. */
export async function installMain(argv: string[]): Promise<number> {
  let tmp: string | undefined;
  try {
    const { positionals, values } = parseArgs({
      args: argv, allowPositionals: true, strict: true,
      options: {
        config: { type: 'string', short: 'c' }, dll: { type: 'string' }, 'pipe-exe': { type: 'string' },
        'pwsync-bin': { type: 'string' }, node: { type: 'string' }, system32: { type: 'string' }, 'dry-run': { type: 'boolean' },
      },
    });
    const verb = positionals[0];
    if ((verb !== 'install' && verb !== 'uninstall') || positionals.length !== 1) throw new UsageError('usage: install|uninstall --config NOTIFIER.yaml [--dll FILE] [--pipe-exe FILE] [--pwsync-bin FILE] [--node EXE] [--system32 DIR] [--dry-run]');
    if (!values.config) throw new UsageError('--config NOTIFIER.yaml is required');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'pwsync-install-'));
    const host = windowsHost(fileRunner(tmp), { ...(values.system32 ? { system32: path.resolve(values.system32) } : {}), dryRun: values['dry-run'] === true });
    if (verb === 'install') {
      if (!values.dll) throw new UsageError('--dll FILE (the filter DLL to install) is required');
      const config = await loadNotifierConfig(values.config, { checkFiles: true });
      await install({
        config, dll: path.resolve(values.dll), ...(values['pipe-exe'] ? { pipeExe: path.resolve(values['pipe-exe']) } : {}),
        node: values.node ?? process.execPath, pwsyncBin: path.resolve(values['pwsync-bin'] ?? path.join('bin', 'pwsync.mjs')), configFile: path.resolve(values.config),
      }, host);
    } else {
      await uninstall({ config: await loadNotifierConfig(values.config, { checkFiles: false }) }, host);
    }
    return 0;
  } catch (e) {
    const usage = e instanceof UsageError || String((e as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`${(e as Error).message}\n`);
    return usage ? 2 : 1;
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}
