import type { Command } from 'commander';
import { STD_IO, type CommandIO } from './io.ts';
import { UsageError } from '../core/errors.ts';
import { printable, printableLines } from '../core/text.ts';
import { formatIssue, ConfigError, type ConfigIssue } from '../config/issues.ts';
import { loadConfig, type LoadedConfig } from '../config/load.ts';
import { preflightIssues } from '../hub/preflight.ts';
import { notifierPreflightIssues } from '../notifier/preflight.ts';

/** Where the command writes; the tests hand in their own. */
export type ConfigCommandIO = CommandIO;

/** `pwsync config check FILE`: every problem of a hub or notifier YAML, one per line, or `ok`. */
export function register(program: Command, io: ConfigCommandIO = STD_IO): void {
  const config = program.command('config').description('Work with pwsync configuration files.');
  config.command('check')
    .description('Check a hub, notifier or connector worker YAML file and report every problem as FILE:LINE:COL: what the service would refuse at start, without contacting any server (`pwsync connector test NAME` does that).')
    .argument('<file>', 'the YAML file (hub, notifier or worker, told apart by its top-level key)')
    .option('--no-check-files', 'do not look at the files the configuration names: keys, certificates, CA and secret files (exist, private), extension modules, connector files (join attributes)')
    .option('--load-extensions', 'also load each password extension and run its init() with its settings, as the hub does at start (this runs the extension\'s code)')
    .action(async (file: string, opts: CheckOptions) => {
      process.exitCode = await check(file, opts, io);
    });
}

export interface CheckOptions {
  readonly checkFiles: boolean;
  readonly loadExtensions?: boolean;
}

/** Checks one file; returns the exit code (0 ok, 1 problems found). */
export async function check(file: string, opts: CheckOptions, io: ConfigCommandIO = STD_IO): Promise<number> {
  try {
    const { loaded, issues } = await loadCollecting(file, opts.checkFiles);
    if (loaded.kind !== 'notifier') issues.push(...await preflightIssues(loaded.config, { checkFiles: opts.checkFiles, loadExtensions: opts.loadExtensions ?? false }));
    else if (opts.checkFiles) issues.push(...notifierPreflightIssues(loaded.config));
    if (issues.length > 0) throw new ConfigError(issues);
    io.out(printable(`${file}: ok (${summary(loaded)})`));
    return 0;
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const issue of e.issues) io.err(formatIssue(issue));
      io.err(printable(`${file}: ${e.issues.length} problem${e.issues.length === 1 ? '' : 's'}`));
      return 1;
    }
    if (e instanceof UsageError) {
      io.err(printableLines(e.message));
      return 1;
    }
    throw e;
  }
}

/**
 * The configuration, and the problems of the files it names: those stop the loader, but need
 * not stop the check, which goes on with the configuration loaded without them.
 */
async function loadCollecting(file: string, checkFiles: boolean): Promise<{ loaded: LoadedConfig; issues: ConfigIssue[] }> {
  try {
    return { loaded: await loadConfig(file, { checkFiles }), issues: [] };
  } catch (e) {
    if (!(e instanceof ConfigError) || !checkFiles) throw e;
    const loaded = await loadConfig(file, { checkFiles: false }).catch(() => undefined);
    if (!loaded) throw e;
    return { loaded, issues: [...e.issues] };
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
