import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { testDir } from './dirs.ts';
import { testPassword } from './passwords.ts';

/**
 * A real Samba AD DC for a test file (test/env/samba-dc.sh), started in the test's own network
 * namespace: the test file must run under `bash test/env/in-netns.sh`. Everything listens on
 * 127.0.0.1 inside it: LDAP 389, LDAPS 636 (CN=DC1.pwsync.test, no SAN: give `serverName`), the KDC
 * 88 and kpasswd 464, SMB 445.
 *
 * Fixture (test/env/samba-fixture.py): users alice, bob, carol, dave, erin; groups
 * grp-inner ⊂ grp-mid ⊂ pwsync-sync (alice in grp-inner), bob, carol and erin directly in
 * pwsync-sync, carol also in pwsync-exclude, dave in none; read-only bind account pwsync-reader;
 * the hub's service account pwsync-hub with SPN PWSYNC/hub.pwsync.test (AES only); keytabs for the
 * hub's SPN, for DC1$ and for alice; minimum password age 0, complexity on, minimum length 7,
 * history 24. For the ad connector: users frank, grace, heidi, ivan, judy (with mail) in OU=People,
 * and pwsync-svc, whose only right beyond reading is "Reset Password" on the users in that OU.
 * Samba encrypts every new password for the GPG key in `gnupgHome` (`pwsync samba
 * setup`), so a process that writes passwords locally (samba-tool) needs GNUPGHOME = gnupgHome.
 */
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SCRIPT = path.join(REPO, 'test/env/samba-dc.sh');

export type SambaUser = 'alice' | 'bob' | 'carol' | 'dave' | 'erin';
/** The users in OU=People (the ad connector's targets). */
export type SambaPerson = 'frank' | 'grace' | 'heidi' | 'ivan' | 'judy';

export interface SambaAccount {
  sam: string;
  dn: string;
  upn: string;
  objectGuid: string;
  objectSid: string;
}

/** What test/env/samba-fixture.py wrote (facts.json); paths are absolute. */
export interface SambaFacts {
  base: string;
  smbConf: string;
  gnupgHome: string;
  krb5Conf: string;
  /** /etc/hosts lines resolving dc1.pwsync.test and hub.pwsync.test to 127.0.0.1. */
  hostsFile: string;
  /** The CA of the DC's LDAPS certificate. */
  caPem: string;
  samLdb: string;
  realm: string;
  /** The DNS domain name, pwsync.test. */
  domain: string;
  netbios: string;
  baseDn: string;
  /** The name in the DC's certificate, for TLS serverName. */
  dcHost: string;
  ldapsUrl: string;
  admin: { bindDn: string; passwordFile: string };
  reader: { sam: string; dn: string; bindDn: string; passwordFile: string };
  hub: { sam: string; dn: string; spn: string; service: string; keytab: string };
  dc: { sam: string; principal: string; dn: string; objectGuid: string; objectSid: string; keytab: string };
  /** A user's keytab (alice), for "a user's principal instead of a DC's". */
  userKeytab: { principal: string; keytab: string };
  groups: Record<'grp-inner' | 'grp-mid' | 'pwsync-sync' | 'pwsync-exclude', string>;
  users: Record<SambaUser, SambaAccount & { passwordLabel: string }>;
  people: { ou: string; users: Record<SambaPerson, SambaAccount & { mail: string; passwordLabel: string }> };
  /** The ad connector's service account: "Reset Password" on the users in OU=People only. */
  svc: { sam: string; dn: string; bindDn: string; passwordFile: string };
}

export interface SambaPaths {
  base: string;
  smbConf: string;
  gnupgHome: string;
  krb5Conf: string;
  hostsFile: string;
  caPem: string;
  samLdb: string;
  hubKeytab: string;
  dcKeytab: string;
  userKeytab: string;
  adminPasswordFile: string;
  readerPasswordFile: string;
  svcPasswordFile: string;
}

export interface SambaDc {
  facts: SambaFacts;
  /** The files, all absolute (the same as in `facts`). */
  paths: SambaPaths;
  /** For client tools (kpasswd, kinit, ldapsearch, samba-tool): KRB5_CONFIG, GNUPGHOME, LDAPTLS_CACERT. */
  env: Record<string, string>;
  /** Each fixture user with the password it starts with. */
  users: Record<SambaUser, SambaAccount & { password: Buffer }>;
  /** Each user in OU=People with the password it starts with. */
  people: Record<SambaPerson, SambaAccount & { mail: string; password: Buffer }>;
  /** Administrator's password (random; not a test password). */
  adminPassword(): Buffer;
  readerPassword(): Buffer;
  /** Stops samba (it can be started again with start()). */
  stop(): Promise<void>;
  start(): Promise<void>;
}

function run(args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-8000); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`samba-dc.sh ${args[0]} failed (${code ?? 'killed after ' + timeoutMs + ' ms'}): ${err.trim()}`));
    });
  });
}

/** Starts a DC of its own for this test file (a copy of the run's template; ~2 s, ~12 s for the run's first). */
export async function startSambaDc(opts: { base?: string } = {}): Promise<SambaDc> {
  if (!process.env.PWSYNC_NETNS) {
    throw new Error('the Samba DC tests run inside a private network namespace: bash test/env/in-netns.sh node --import tsx --test FILE');
  }
  const base = opts.base ?? testDir('samba');
  await run(['start', base], 400_000);
  const facts = JSON.parse(readFileSync(path.join(base, 'facts.json'), 'utf8')) as SambaFacts;
  const withPasswords = <A extends { passwordLabel: string }>(accounts: Record<string, A>): Record<string, Omit<A, 'passwordLabel'> & { password: Buffer }> =>
    Object.fromEntries(Object.entries(accounts).map(([name, u]) => {
      const { passwordLabel, ...account } = u;
      return [name, { ...account, password: testPassword(passwordLabel) }];
    }));
  const users = withPasswords(facts.users) as SambaDc['users'];
  const people = withPasswords(facts.people.users) as SambaDc['people'];
  let running = true;
  return {
    facts,
    paths: {
      base: facts.base, smbConf: facts.smbConf, gnupgHome: facts.gnupgHome, krb5Conf: facts.krb5Conf, hostsFile: facts.hostsFile,
      caPem: facts.caPem, samLdb: facts.samLdb, hubKeytab: facts.hub.keytab, dcKeytab: facts.dc.keytab, userKeytab: facts.userKeytab.keytab,
      adminPasswordFile: facts.admin.passwordFile, readerPasswordFile: facts.reader.passwordFile, svcPasswordFile: facts.svc.passwordFile,
    },
    users,
    people,
    env: { KRB5_CONFIG: facts.krb5Conf, GNUPGHOME: facts.gnupgHome, LDAPTLS_CACERT: facts.caPem },
    adminPassword: () => readFileSync(facts.admin.passwordFile),
    readerPassword: () => readFileSync(facts.reader.passwordFile),
    stop: async () => {
      if (!running) return;
      running = false;
      await run(['stop', base], 60_000);
    },
    start: async () => {
      if (running) return;
      await run(['start', base], 120_000);
      running = true;
    },
  };
}
