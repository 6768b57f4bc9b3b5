import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { spawnPwsync } from '../../cli/lab.ts';
import { testDir } from '../lib/dirs.ts';

/**
 * `pwsync samba setup`: the GnuPG key Samba encrypts new passwords with, and the smb.conf setting
 * that names it. Real gpg; an smb.conf shaped like the one `samba-tool domain provision` writes.
 */
const dir = testDir('samba-setup');
const conf = path.join(dir, 'smb.conf');
const home = path.join(dir, 'gnupg');
const homes: string[] = [];

const provisioned = `# Global parameters
[global]
\tnetbios name = DC1
\trealm = PWSYNC.TEST
\tserver role = active directory domain controller
\tworkgroup = PWSYNC

[sysvol]
\tpath = /var/lib/samba/sysvol
\tread only = No
`;

after(() => {
  // setup stops the agent it started; this catches one left by a failed assertion.
  for (const h of homes) spawnSync('gpgconf', ['--kill', 'gpg-agent'], { env: { ...process.env, GNUPGHOME: h } });
});

async function setup(smbConf: string, gnupgHome: string): Promise<{ code: number | null; out: string; err: string }> {
  homes.push(gnupgHome);
  const p = spawnPwsync(['samba', 'setup', '--smb-conf', smbConf, '--gnupg-home', gnupgHome]);
  const code = await p.exited;
  return { code, out: p.stdout(), err: p.stderr() };
}

function secretKeys(gnupgHome: string): string[] {
  const r = spawnSync('gpg', ['--batch', '--with-colons', '--list-secret-keys'], { env: { ...process.env, GNUPGHOME: gnupgHome }, encoding: 'utf8' });
  spawnSync('gpgconf', ['--kill', 'gpg-agent'], { env: { ...process.env, GNUPGHOME: gnupgHome } });
  return r.stdout.split('\n').filter((l) => l.startsWith('fpr:')).map((l) => l.split(':')[9]!);
}

const gpgLine = (text: string): string[] => text.split('\n').filter((l) => /password hash gpg key ids/i.test(l));

test('setup creates the key in a 0700 folder and sets "password hash gpg key ids" in [global]', async () => {
  writeFileSync(conf, provisioned, { mode: 0o640 });
  const r = await setup(conf, home);
  assert.equal(r.code, 0, r.err);
  assert.equal(statSync(home).mode & 0o777, 0o700);
  const [fpr] = secretKeys(home);
  assert.match(fpr!, /^[0-9A-F]{40}$/);
  const text = readFileSync(conf, 'utf8');
  assert.deepEqual(gpgLine(text), [`\tpassword hash gpg key ids = ${fpr}`]);
  assert.ok(text.indexOf('password hash gpg key ids') < text.indexOf('[sysvol]'), 'in [global]');
  assert.equal(text.replace(/\tpassword hash gpg key ids = .*\n/, ''), provisioned, 'nothing else changed');
  assert.equal(statSync(conf).mode & 0o777, 0o640, 'the file keeps its mode');
  assert.match(r.out, new RegExp(`created GnuPG key ${fpr}`));
  assert.match(r.out, new RegExp(`GNUPGHOME=${home.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), 'says every password writer needs GNUPGHOME');
  assert.match(r.out, /Restart samba/);
});

test('a second run changes nothing and says so', async () => {
  const before = readFileSync(conf);
  const keys = secretKeys(home);
  const r = await setup(conf, home);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(readFileSync(conf), before);
  assert.deepEqual(secretKeys(home), keys, 'no second key');
  assert.match(r.out, /already exists; kept/);
  assert.match(r.out, /nothing changed/);
  assert.match(r.out, /no restart needed/);
});

test('another key id in smb.conf is replaced, with a warning about passwords set before', async () => {
  writeFileSync(conf, provisioned.replace('\trealm', '\tPassword Hash GPG Key IDs = 0123456789ABCDEF\n\trealm'));
  const r = await setup(conf, home);
  assert.equal(r.code, 0, r.err);
  const [fpr] = secretKeys(home);
  assert.deepEqual(gpgLine(readFileSync(conf, 'utf8')), [`\tpassword hash gpg key ids = ${fpr}`]);
  assert.match(r.out, /was 0123456789ABCDEF, now [0-9A-F]{40}; passwords set before stay encrypted for the old key/);
});

test('a GnuPG folder open to others is narrowed to 0700', async () => {
  const wide = path.join(dir, 'wide');
  mkdirSync(wide);
  chmodSync(wide, 0o755);
  const r = await setup(conf, wide);
  assert.equal(r.code, 0, r.err);
  assert.equal(statSync(wide).mode & 0o777, 0o700);
  assert.match(r.out, /mode was 0755, now 0700/);
});

test('an smb.conf that is not a provisioned DC\'s is refused with what to do', async () => {
  const bare = path.join(dir, 'bare.conf');
  writeFileSync(bare, '[global]\n\tworkgroup = X\n');
  const r = await setup(bare, path.join(dir, 'unused'));
  assert.equal(r.code, 2);
  assert.match(r.err, /has no "realm =" in \[global\]: is it the smb\.conf of a provisioned Samba AD DC\?/);
  const missing = await setup(path.join(dir, 'nope.conf'), path.join(dir, 'unused'));
  assert.equal(missing.code, 2);
  assert.match(missing.err, /cannot read .*nope\.conf.*--smb-conf/);
});
