import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { describeError, UsageError } from '../core/errors.ts';
import { writeKeyFile } from '../core/keys.ts';
import { generateTlsMaterial, issueClientCertificate, issueHubCertificate } from '../core/tls-gen.ts';

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Through commander's output, so whoever embeds the program (main, a test) decides where it goes. */
function print(cmd: Command, text: string): void {
  (cmd.configureOutput().writeOut ?? ((s: string) => process.stdout.write(s)))(text);
}

function daysOf(text: string): number {
  const days = Number(text);
  if (!Number.isInteger(days) || days < 1) throw new UsageError(`--days must be a positive whole number, not "${text}"`);
  return days;
}

function readCaFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file} (${describeError(e)}): --ca-dir must be the folder \`pwsync tls generate\` wrote (ca.pem and ca.key)`);
  }
}

/** A certificate issued by the CA in `caDir` (ca.pem and ca.key of `tls generate`); what it refuses is a usage error. */
async function issueFrom<T>(caDir: string, issue: (ca: { caCertPem: string; caKeyPem: string }) => Promise<T>): Promise<T> {
  const ca = { caCertPem: readCaFile(join(caDir, 'ca.pem')), caKeyPem: readCaFile(join(caDir, 'ca.key')) };
  try {
    return await issue(ca);
  } catch (e) {
    throw new UsageError(describeError(e), { cause: e });
  }
}

/** `pwsync tls`: TLS material for a hub's gRPC listener and its notifiers, from one private CA. */
export function register(program: Command): void {
  const tls = program.command('tls').description('TLS material for the hub\'s gRPC listener and the notifiers\' client certificates.');

  tls.command('generate')
    .description('Write ca.pem, ca.key (mode 0600), hub.crt and hub.key (mode 0600): a new private CA and a hub certificate it signed.')
    .requiredOption('--out <dir>', 'the folder to write into (created when missing)')
    .requiredOption('--host <host>', 'a DNS name or IP address notifiers use to reach the hub (repeat for more)', collect)
    .option('--days <n>', 'how long the certificates are valid', '825')
    .option('--force', 'replace existing files', false)
    .action(async (opts: { out: string; host: string[]; days: string; force: boolean }, cmd: Command) => {
      const days = daysOf(opts.days);
      const material = await generateTlsMaterial({ hosts: opts.host, days });
      mkdirSync(opts.out, { recursive: true, mode: 0o700 });
      const ca = join(opts.out, 'ca.pem');
      const caKey = join(opts.out, 'ca.key');
      const cert = join(opts.out, 'hub.crt');
      const key = join(opts.out, 'hub.key');
      // The keys first: if one exists and --force is absent, nothing is written at all.
      writeKeyFile(key, material.keyPem, { mode: 0o600, force: opts.force });
      writeKeyFile(caKey, material.caKeyPem, { mode: 0o600, force: opts.force });
      writeKeyFile(cert, material.certPem, { mode: 0o644, force: true });
      writeKeyFile(ca, material.caCertPem, { mode: 0o644, force: true });
      print(cmd, [
        `hub certificate for ${opts.host.join(', ')}, valid ${days} days`,
        `  ${cert} and ${key}: hub.tls.cert and hub.tls.key in the hub YAML`,
        `  ${ca}: targets[].tls.ca in each notifier's YAML, and hub.tls.clientCa to require DC client certificates`,
        `  ${caKey}: issues client certificates (\`pwsync tls client --ca-dir ${opts.out} --dc HOST\`); keep it off the hub, with the admin`,
        '',
      ].join('\n'));
    });

  tls.command('renew')
    .description('Write a new hub.crt and hub.key (mode 0600) issued by the existing CA of `tls generate`: notifiers keep trusting the hub through the same ca.pem.')
    .requiredOption('--ca-dir <dir>', 'the folder `pwsync tls generate` wrote (ca.pem and ca.key)')
    .requiredOption('--host <host>', 'a DNS name or IP address notifiers use to reach the hub (repeat for more)', collect)
    .requiredOption('--out <dir>', 'the folder to write hub.crt and hub.key into (the one hub.tls.cert and hub.tls.key name)')
    .option('--days <n>', 'how long the certificate is valid', '825')
    .action(async (opts: { caDir: string; host: string[]; out: string; days: string }, cmd: Command) => {
      const days = daysOf(opts.days);
      const issued = await issueFrom(opts.caDir, (ca) => issueHubCertificate({ ...ca, hosts: opts.host, days }));
      mkdirSync(opts.out, { recursive: true, mode: 0o700 });
      const cert = join(opts.out, 'hub.crt');
      const key = join(opts.out, 'hub.key');
      // A renewal replaces both; the key first, so a cert never names a key that is not there.
      writeKeyFile(key, issued.keyPem, { mode: 0o600, force: true });
      writeKeyFile(cert, issued.certPem, { mode: 0o644, force: true });
      print(cmd, [
        `hub certificate for ${opts.host.join(', ')} renewed, valid ${days} days, issued by ${join(opts.caDir, 'ca.pem')}`,
        `  ${cert} and ${key}: restart the hub to use them; notifiers need no change`,
        '',
      ].join('\n'));
    });

  tls.command('client')
    .description('Write DC.crt and DC.key (mode 0600): a domain controller\'s client certificate, issued by the CA of `tls generate`. Run again with --force to renew.')
    .requiredOption('--ca-dir <dir>', 'the folder `pwsync tls generate` wrote (ca.pem and ca.key)')
    .requiredOption('--dc <host>', 'the DC\'s DNS name (its dNSHostName), e.g. dc1.corp.example.com')
    .requiredOption('--out <dir>', 'the folder to write into (created when missing)')
    .option('--days <n>', 'how long the certificate is valid', '825')
    .option('--force', 'replace existing files (renewal)', false)
    .action(async (opts: { caDir: string; dc: string; out: string; days: string; force: boolean }, cmd: Command) => {
      const days = daysOf(opts.days);
      const issued = await issueFrom(opts.caDir, (ca) => issueClientCertificate({ ...ca, dc: opts.dc, days }));
      const dc = opts.dc.trim().toLowerCase();
      mkdirSync(opts.out, { recursive: true, mode: 0o700 });
      const cert = join(opts.out, `${dc}.crt`);
      const key = join(opts.out, `${dc}.key`);
      writeKeyFile(key, issued.keyPem, { mode: 0o600, force: opts.force });
      writeKeyFile(cert, issued.certPem, { mode: 0o644, force: true });
      print(cmd, [
        `client certificate for ${dc}, valid ${days} days`,
        `  ${cert} and ${key}: targets[].tls.cert and targets[].tls.key in ${dc}'s notifier YAML`,
        `  the hub accepts it with hub.tls.clientCa: ${join(opts.caDir, 'ca.pem')}, once ${dc} is a domain controller in the domain's directory`,
        '',
      ].join('\n'));
    });
}
