import { Command, CommanderError } from 'commander';
import { UsageError } from '../core/errors.ts';

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

export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command('pwsync')
    .description('Password synchronization: a password changed on a domain controller, set in every joined account.')
    .exitOverride()
    .showHelpAfterError('(run `pwsync --help` for the commands)');
  for (const load of COMMANDS) (await load()).register(program);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof UsageError) {
      process.stderr.write(`pwsync: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`pwsync: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}
