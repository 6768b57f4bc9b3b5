import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { UsageError } from '../core/errors.ts';
import { writeKeyFile } from '../core/keys.ts';
import { generateTlsMaterial } from '../core/tls-gen.ts';

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Through commander's output, so whoever embeds the program (main, a test) decides where it goes. */
function print(cmd: Command, text: string): void {
  (cmd.configureOutput().writeOut ?? ((s: string) => process.stdout.write(s)))(text);
}

/** `pwsync tls`: TLS material for a hub's gRPC listener, signed by a private CA made on the spot. */
export function register(program: Command): void {
  const tls = program.command('tls').description('TLS material for the hub\'s gRPC listener.');

  tls.command('generate')
    .description('Write ca.pem, hub.crt and hub.key (mode 0600): a new private CA and a hub certificate it signed.')
    .requiredOption('--out <dir>', 'the folder to write into (created when missing)')
    .requiredOption('--host <host>', 'a DNS name or IP address notifiers use to reach the hub (repeat for more)', collect)
    .option('--days <n>', 'how long the certificates are valid', '825')
    .option('--force', 'replace existing files', false)
    .action(async (opts: { out: string; host: string[]; days: string; force: boolean }, cmd: Command) => {
      const days = Number(opts.days);
      if (!Number.isInteger(days) || days < 1) throw new UsageError(`--days must be a positive whole number, not "${opts.days}"`);
      const material = await generateTlsMaterial({ hosts: opts.host, days });
      mkdirSync(opts.out, { recursive: true, mode: 0o700 });
      const ca = join(opts.out, 'ca.pem');
      const cert = join(opts.out, 'hub.crt');
      const key = join(opts.out, 'hub.key');
      // The key first: if it exists and --force is absent, nothing is written at all.
      writeKeyFile(key, material.keyPem, { mode: 0o600, force: opts.force });
      writeKeyFile(cert, material.certPem, { mode: 0o644, force: true });
      writeKeyFile(ca, material.caCertPem, { mode: 0o644, force: true });
      print(cmd, [
        `hub certificate for ${opts.host.join(', ')}, valid ${days} days`,
        `  ${cert} and ${key}: hub.tls.cert and hub.tls.key in the hub YAML`,
        `  ${ca}: targets[].tls.ca in each notifier's YAML (the CA key was not kept; generate again to reissue)`,
        '',
      ].join('\n'));
    });
}
