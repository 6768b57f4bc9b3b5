import type { Command } from 'commander';
import { sambaSetup } from '../notifier/samba/setup.ts';

function print(cmd: Command, text: string): void {
  (cmd.configureOutput().writeOut ?? ((s: string) => process.stdout.write(s)))(text);
}

/** `pwsync samba`: preparing a Samba AD DC for capture through `samba-tool user syncpasswords`. */
export function register(program: Command): void {
  const samba = program.command('samba').description('Capture on a Samba AD DC.');

  samba.command('setup')
    .description('Create the GnuPG key Samba encrypts new passwords with and set "password hash gpg key ids" in smb.conf (idempotent).')
    .option('--smb-conf <file>', 'the DC\'s smb.conf', '/etc/samba/smb.conf')
    .requiredOption('--gnupg-home <dir>', 'the GnuPG home for the key (created with mode 0700); notifier.capture.samba.gnupgHome')
    .action((opts: { smbConf: string; gnupgHome: string }, cmd: Command) => {
      const r = sambaSetup({ smbConf: opts.smbConf, gnupgHome: opts.gnupgHome });
      const out: string[] = [];
      if (r.narrowedMode) out.push(`${opts.gnupgHome}: mode was ${r.narrowedMode}, now 0700`);
      out.push(r.keyCreated
        ? `created GnuPG key ${r.fingerprint} in ${opts.gnupgHome} (no passphrase: the folder's mode 0700 protects it)`
        : `GnuPG key ${r.fingerprint} in ${opts.gnupgHome} already exists; kept`);
      switch (r.smbConf.change) {
        case 'unchanged':
          out.push(`${opts.smbConf} already has "password hash gpg key ids = ${r.fingerprint}"; nothing changed`);
          break;
        case 'added':
          out.push(`${opts.smbConf}: set "password hash gpg key ids = ${r.fingerprint}" in [global]`);
          break;
        case 'replaced':
          out.push(`${opts.smbConf}: "password hash gpg key ids" was ${r.smbConf.previous}, now ${r.fingerprint}; passwords set before stay encrypted for the old key until they change`);
          break;
      }
      const changed = r.keyCreated || r.smbConf.change !== 'unchanged';
      out.push(
        '',
        'IMPORTANT: samba, and every samba-tool that writes passwords on this DC, must run with',
        `  GNUPGHOME=${opts.gnupgHome}`,
        'in its environment. A process that writes a password without the key in its keyring makes that',
        'password change FAIL (password_hash.c: "Public Key ID [...] not found in keyring").',
        changed ? 'Restart samba now (with GNUPGHOME set) so that it reads the new setting.' : 'Nothing changed: no restart needed.',
        '',
        'Then give the notifier:',
        '  notifier:',
        '    capture:',
        '      samba:',
        `        smbConf: ${opts.smbConf}`,
        `        gnupgHome: ${opts.gnupgHome}`,
        '',
      );
      print(cmd, out.join('\n'));
    });
}
