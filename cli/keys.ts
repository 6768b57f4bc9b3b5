import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { recipientFromPem } from '../core/envelope.ts';
import { describeError, UsageError } from '../core/errors.ts';
import { writeKeyPair } from '../core/keys.ts';

/** Through commander's output, so whoever embeds the program (main, a test) decides where it goes. */
function print(cmd: Command, text: string): void {
  (cmd.configureOutput().writeOut ?? ((s: string) => process.stdout.write(s)))(text);
}

/** `pwsync keys`: the P-256 recipient keys that sealed passwords are opened with. */
export function register(program: Command): void {
  const keys = program.command('keys').description('Recipient keys: the hub opens sealed passwords with them.');

  keys.command('generate')
    .description('Write a new P-256 key pair: NAME.key (private, mode 0600) and NAME.pub (public).')
    .requiredOption('--out <dir>', 'the folder to write into (created when missing)')
    .requiredOption('--name <name>', 'the file name stem, e.g. the hub id')
    .option('--force', 'replace an existing NAME.key (envelopes sealed for the old key can no longer be opened)', false)
    .action((opts: { out: string; name: string; force: boolean }, cmd: Command) => {
      const written = writeKeyPair(opts.out, opts.name, { force: opts.force });
      print(cmd, [
        `key id ${written.keyId}`,
        `  private key: ${written.privatePath} (mode 0600; list it under hub.keys, keep it on the hub only)`,
        `  public key:  ${written.publicPath} (give it to every notifier as targets[].publicKey)`,
        '',
      ].join('\n'));
    });

  keys.command('id')
    .description('Print the key id of a public or private key file (what envelopes and errors name).')
    .argument('<file>', 'a PEM file written by `pwsync keys generate`')
    .action((file: string, _opts: unknown, cmd: Command) => {
      let pem: Buffer;
      try {
        pem = readFileSync(file);
      } catch (e) {
        throw new UsageError(`cannot read ${file}: ${describeError(e)}`);
      }
      try {
        print(cmd, `${recipientFromPem(pem).keyId.toString('hex')}\n`);
      } catch (e) {
        throw new UsageError(`${file} holds no usable P-256 key: ${describeError(e)}`);
      } finally {
        pem.fill(0);
      }
    });
}
