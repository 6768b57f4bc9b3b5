import type { Command } from 'commander';
import { UsageError } from '../core/errors.ts';
import { Secret } from '../core/secret.ts';
import { sendHookChange } from '../notifier/hook-client.ts';
import { MAX_PASSWORD_BYTES } from '../notifier/hook-protocol.ts';

/**
 * `pwsync hook`: hands one password change to the local notifier, as a DC's password hook does
 * (Samba's `check password script`-style hooks, scripts, tests). The password comes only from
 * standard input, as bytes: never from argv or the environment, which other users can read.
 */
export function register(program: Command): void {
  program.command('hook')
    .description('Queue one password change with the local notifier; the new password is read from standard input.')
    .requiredOption('--socket <path>', 'the notifier\'s hook socket (hook.socket in its YAML)')
    .requiredOption('--domain <dns>', 'the account\'s DNS domain name')
    .requiredOption('--sam <name>', 'the account\'s sAMAccountName')
    .option('--guid <guid>', 'the account\'s objectGUID')
    .option('--sid <sid>', 'the account\'s objectSid (S-1-5-21-…)')
    .option('--upn <upn>', 'the account\'s userPrincipalName')
    .option('--dn <dn>', 'the account\'s distinguishedName')
    .option('--time <ms>', 'when the change was committed, ms since the epoch (default: now)')
    .option('--timeout <ms>', 'how long to wait for the notifier', '10000')
    .action(async (opts: { socket: string; domain: string; sam: string; guid?: string; sid?: string; upn?: string; dn?: string; time?: string; timeout: string }) => {
      const changeTime = opts.time === undefined ? undefined : wholeNumber('--time', opts.time);
      const timeoutMs = wholeNumber('--timeout', opts.timeout);
      const password = await readPassword();
      try {
        const { changeId } = await sendHookChange(opts.socket, {
          domain: opts.domain, samAccountName: opts.sam, objectGuid: opts.guid, objectSid: opts.sid, upn: opts.upn, dn: opts.dn,
          ...(changeTime === undefined ? {} : { changeTime }),
        }, password, timeoutMs);
        process.stdout.write(`queued ${changeId}\n`);
      } finally {
        password.dispose();
      }
    });
}

function wholeNumber(option: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new UsageError(`${option} must be a whole number of milliseconds, not ${JSON.stringify(value)}`);
  return n;
}

/** Standard input as bytes, one trailing newline (\n or \r\n) dropped. */
async function readPassword(): Promise<Secret> {
  if (process.stdin.isTTY) {
    throw new UsageError('the password is read from standard input, and a terminal would show it: pipe it in from the program that holds it');
  }
  const limit = MAX_PASSWORD_BYTES + 2;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      size += chunk.length;
      if (size > limit) throw new UsageError(`the password on standard input is longer than ${MAX_PASSWORD_BYTES} bytes`);
    }
    const bytes = Buffer.allocUnsafeSlow(size);
    let at = 0;
    for (const c of chunks) at += c.copy(bytes, at);
    let end = size;
    if (end > 0 && bytes[end - 1] === 0x0a) end--;
    if (end > 0 && end < size && bytes[end - 1] === 0x0d) end--;
    if (end === 0) {
      bytes.fill(0);
      throw new UsageError('no password on standard input: pipe the new password in (one line, UTF-8)');
    }
    const password = Buffer.allocUnsafeSlow(end);
    bytes.copy(password, 0, 0, end);
    bytes.fill(0);
    return Secret.adopt(password);
  } finally {
    for (const c of chunks) c.fill(0);
  }
}
