import type { Command } from 'commander';
import { STD_IO, type CommandIO } from './io.ts';
import { UsageError } from '../core/errors.ts';
import { formatIssue, ConfigError } from '../config/issues.ts';
import { loadConfig, type LoadedConfig } from '../config/load.ts';

/** Where the command writes; the tests hand in their own. */
export type ConfigCommandIO = CommandIO;

/** `pwsync config check FILE`: every problem of a hub or notifier YAML, one per line, or `ok`. */
export function register(program: Command, io: ConfigCommandIO = STD_IO): void {
  const config = program.command('config').description('Work with pwsync configuration files.');
  config.command('check')
    .description('Check a hub, notifier or connector worker YAML file and report every problem as FILE:LINE:COL.')
    .argument('<file>', 'the YAML file (hub, notifier or worker, told apart by its top-level key)')
    .option('--no-check-files', 'do not check that keys, certificates, CA and secret files exist and are private')
    .action(async (file: string, opts: { checkFiles: boolean }) => {
      process.exitCode = await check(file, opts.checkFiles, io);
    });
}

/** Checks one file; returns the exit code (0 ok, 1 problems found). */
export async function check(file: string, checkFiles: boolean, io: ConfigCommandIO = STD_IO): Promise<number> {
  try {
    io.out(`${file}: ok (${summary(await loadConfig(file, { checkFiles }))})`);
    return 0;
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const issue of e.issues) io.err(formatIssue(issue));
      io.err(`${file}: ${e.issues.length} problem${e.issues.length === 1 ? '' : 's'}`);
      return 1;
    }
    if (e instanceof UsageError) {
      io.err(e.message);
      return 1;
    }
    throw e;
  }
}

function summary(loaded: LoadedConfig): string {
  if (loaded.kind === 'hub') {
    const { connectors, domains } = loaded.config;
    return `hub: ${count(connectors.length, 'connector')}, ${count(domains.length, 'domain')}`;
  }
  if (loaded.kind === 'worker') {
    return `connector worker: ${count(loaded.config.connectors.length, 'connector')} (${loaded.config.connectors.map((c) => c.name).join(', ')})`;
  }
  const { targets } = loaded.config;
  return `notifier: ${count(targets.length, 'target')}`;
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
