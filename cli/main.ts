import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { UsageError } from '../core/errors.ts';
import { printableLines } from '../core/text.ts';

/**
 * The `pwsync` command line. Each command lives in its own module and registers itself; a
 * command's failure prints one clear line (what is wrong, how to fix it) and exits non-zero.
 */
const COMMANDS: ReadonlyArray<() => Promise<{ register(program: Command): void }>> = [
  () => import('./hub.ts'),
  () => import('./worker.ts'),
  () => import('./notifier.ts'),
  () => import('./hook.ts'),
  () => import('./status.ts'),
  () => import('./latest.ts'),
  () => import('./config.ts'),
  () => import('./connector.ts'),
  () => import('./broker.ts'),
  () => import('./keys.ts'),
  () => import('./tls.ts'),
  () => import('./demo.ts'),
  () => import('./samba.ts'),
];

/** This build's version, from package.json: what `pwsync --version` prints. */
export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command('pwsync')
    .description('Password synchronization: a password changed on a domain controller, set in every joined account.')
    .version(version(), '-V, --version', 'print pwsync\'s version')
    .exitOverride()
    .showHelpAfterError('(run `pwsync --help` for the commands)');
  for (const load of COMMANDS) (await load()).register(program);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    // A message may quote a file or an argument: nothing from them reaches the terminal raw.
    if (e instanceof UsageError) {
      process.stderr.write(`pwsync: ${printableLines(e.message)}\n`);
      return 2;
    }
    process.stderr.write(`pwsync: ${printableLines(e instanceof Error ? e.message : String(e))}\n`);
    return 1;
  }
}
