import { after, test } from 'node:test';
import { expectIssue, HUB_HEAD, issuesOf, NOTIFIER_HEAD, target, tempDir, write } from '../config/helpers.ts';

/**
 * The Kerberos settings checked at load, each at its file:line:column with its fix: a Kerberos
 * target needs the DC's credentials from exactly one source, and keytabs must exist and be private.
 */
const tmp = tempDir();
after(() => tmp.cleanup());

const kerberosTarget = `${target('hub1')}    kerberos:
      service: PWSYNC@hub1.corp.example.com
`;

test('a Kerberos target without notifier.kerberos is refused at the target', async () => {
  const found = await issuesOf(tmp.dir, `${NOTIFIER_HEAD}${kerberosTarget}`, 'notifier');
  expectIssue(found, {
    line: 13, column: 5, path: 'targets[0].kerberos',
    message: /authenticates with Kerberos, but notifier\.kerberos does not say which account/,
    fix: /add notifier\.kerberos with keytab/,
  });
});

test('notifier.kerberos needs a keytab or a ccache, not both', async () => {
  const head = (k: string): string => NOTIFIER_HEAD.replace('targets:\n', `  kerberos:\n${k}targets:\n`);
  const neither = await issuesOf(tmp.dir, `${head('    principal: DC1$@CORP.EXAMPLE.COM\n')}${kerberosTarget}`, 'notifier');
  expectIssue(neither, { line: 7, column: 3, path: 'notifier.kerberos', message: /neither a keytab nor a credential cache/, fix: /set keytab/ });
  const both = await issuesOf(tmp.dir, `${head('    keytab: dc1.keytab\n    ccache: FILE:/tmp/cc\n')}${kerberosTarget}`, 'notifier');
  expectIssue(both, { line: 9, column: 13, path: 'notifier.kerberos.ccache', message: /sets both keytab and ccache/, fix: /remove ccache/ });
});

test('a keytab must exist and be readable by the service account only', async () => {
  write(tmp.dir, 'ca.crt', '-----BEGIN CERTIFICATE-----\n');
  write(tmp.dir, 'hub1.pub', 'x');
  write(tmp.dir, 'open.keytab', '\x05\x02', 0o644);
  const notifier = NOTIFIER_HEAD.replace('targets:\n', '  kerberos:\n    keytab: open.keytab\ntargets:\n');
  const found = await issuesOf(tmp.dir, `${notifier}${kerberosTarget}`, 'notifier', { checkFiles: true });
  expectIssue(found, { line: 8, column: 13, path: 'notifier.kerberos.keytab', message: /readable by group or others \(mode 0644\)/, fix: /chmod 600/ });

  for (const f of ['tls.crt', 'tls.key', 'k1.pem']) write(tmp.dir, f, 'x');
  write(tmp.dir, 'dir-ca.crt', '-----BEGIN CERTIFICATE-----\n');
  write(tmp.dir, 'reader.pw', 'x', 0o600);
  const hub = HUB_HEAD.replace('  dataDir: data\n', '  dataDir: data\n  kerberos:\n    keytab: missing.keytab\n    service: PWSYNC@hub1.corp.example.com\n    replayCache: rcache/hub.rcache2\n')
    .replace('  - name: corp.example.com\n', '  - name: corp.example.com\n    directory:\n      url: ldaps://dc01.corp.example.com\n      ca: dir-ca.crt\n      bindDn: pwsync-reader@corp.example.com\n      password: { fromFile: reader.pw }\n');
  const missing = await issuesOf(tmp.dir, `${hub}[]\n`.replace('connectors:\n[]', 'connectors: []'), 'hub', { checkFiles: true });
  expectIssue(missing, { line: 10, column: 13, path: 'hub.kerberos.keytab', message: /missing\.keytab does not exist/, fix: /create it, or correct the path/ });
});

test('a Kerberos hub needs a directory for each domain, and a scoped target needs notifier.directory', async () => {
  const hub = HUB_HEAD.replace('  dataDir: data\n', '  dataDir: data\n  kerberos:\n    keytab: hub.keytab\n    service: PWSYNC@hub1.corp.example.com\n    replayCache: rcache/hub.rcache2\n');
  const noDirectory = await issuesOf(tmp.dir, `${hub}[]\n`.replace('connectors:\n[]', 'connectors: []'), 'hub');
  expectIssue(noDirectory, { line: 14, column: 5, path: 'domains[0]', message: /domain corp\.example\.com has no directory/, fix: /add directory:/ });
  const scoped = `${target('hub1')}    scope:\n      include: Domain Users\n`;
  const noScopeDirectory = await issuesOf(tmp.dir, `${NOTIFIER_HEAD}${scoped}`, 'notifier');
  expectIssue(noScopeDirectory, { line: 13, column: 5, path: 'targets[0].scope', message: /has a scope, but notifier\.directory is not set/, fix: /add notifier\.directory/ });
});
