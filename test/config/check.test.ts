import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { MAX_CONFIG_BYTES } from '../../config/load.ts';
import { generateRecipientKeys } from '../../core/keys.ts';
import { generateTlsMaterial, type TlsMaterial } from '../../core/tls-gen.ts';
import { HUB_HEAD, NOTIFIER_HEAD, csvConnector, issuesOf, target, tempDir, write, runConfigCheck as run } from './helpers.ts';

/**
 * `pwsync config check` finds what the hub refuses at start, and cannot be hung or made to write
 * raw control characters to the terminal. The hub head's files exist (mode 0600) so that files
 * are checked as by default; connectors start at line 12 (see helpers.ts).
 */
const { dir, cleanup } = tempDir();
after(cleanup);

let tls: TlsMaterial;
before(async () => {
  tls = await generateTlsMaterial({ hosts: ['hub1.corp.example.com'] });
  write(dir, 'tls.crt', tls.certPem);
  write(dir, 'tls.key', tls.keyPem);
  write(dir, 'k1.pem', generateRecipientKeys().privatePem);
});

/** Checks a YAML written to a fresh file in the test folder. */
async function checkYaml(yaml: string, ...args: string[]): Promise<{ file: string; out: string[]; err: string[]; code: number }> {
  const file = write(dir, `c-${Math.random().toString(36).slice(2)}.yaml`, yaml);
  return { file, ...await run(file, ...args) };
}

/** Asserts the check refused the file with a line at LINE:COL matching `re`. */
function refusedAt(r: { file: string; err: string[]; code: number }, line: number, column: number, re: RegExp): void {
  assert.equal(r.code, 1, r.err.join('\n'));
  const prefix = `${r.file}:${line}:${column}: `;
  assert.ok(r.err.some((l) => l.startsWith(prefix) && re.test(l)), `no line ${prefix}… matching ${re}; got:\n${r.err.join('\n')}`);
}

function passed(r: { err: string[]; out: string[]; code: number }): void {
  assert.equal(r.code, 0, r.err.join('\n'));
  assert.match(r.out[0]!, /: ok \(/);
}

/** Bounds a check that must not block (a FIFO): fails instead of hanging the run. */
async function bounded<T>(p: Promise<T>, ms = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms: the check blocked`)), ms); });
  try {
    return await Promise.race([p, limit]);
  } finally {
    clearTimeout(timer);
  }
}

const RAW_CONTROL = /[\x00-\x1F\x7F-\x9F]/;

// --- what is read at all ----------------------------------------------------------------------

test('a FIFO as the configuration path is refused at once, not read', async () => {
  const fifo = path.join(dir, 'config.fifo');
  execFileSync('mkfifo', [fifo]);
  const r = await bounded(run(fifo));
  assert.equal(r.code, 1);
  assert.match(r.err[0]!, /cannot read configuration file .*config\.fifo: it is not a regular file \(a named pipe\) — give the path of the YAML file itself/);
});

test('a folder and a device are refused, naming what they are', async () => {
  const folder = await run(dir);
  assert.equal(folder.code, 1);
  assert.match(folder.err[0]!, /cannot read configuration file .*: it is a folder — give the YAML file inside it/);
  const device = await bounded(run('/dev/zero'));
  assert.equal(device.code, 1);
  assert.match(device.err[0]!, /cannot read configuration file \/dev\/zero: it is not a regular file \(a device\)/);
});

test('a file over 1 MiB is refused before it is parsed, saying the limit', async () => {
  // 2 MB of distinct keys: parsed, it would report thousands of unknown settings instead.
  let yaml = 'hub:\n';
  for (let i = 0; yaml.length < 2_000_000; i++) yaml += `  key${i}: ${i}\n`;
  const r = await checkYaml(yaml);
  assert.equal(r.code, 1);
  assert.deepEqual(r.err, [`cannot read configuration file ${r.file}: it is ${Buffer.byteLength(yaml)} bytes, more than the ${MAX_CONFIG_BYTES} bytes (1 MiB) a configuration may have — check that this is the configuration file; split a very large one between hubs or workers`]);
});

test('a file just under the limit with thousands of keys is answered, listing at most 100 problems', async () => {
  let yaml = `${HUB_HEAD}  - name: a\n`;
  for (let i = 0; yaml.length < 200_000; i++) yaml += `    key${i}: ${i}\n`;
  const r = await checkYaml(yaml, '--no-check-files');
  assert.equal(r.code, 1);
  assert.ok(r.err.length <= 103, `${r.err.length} lines`);
  assert.ok(r.err.some((l) => /more than 100 settings are wrong; the first 100 are listed/.test(l)), r.err.slice(-3).join('\n'));
});

test('a key written twice is found, with the line of the first, in a map of thousands of keys', async () => {
  let keys = '';
  for (let i = 0; i < 20_000; i++) keys += `    k${i}: 1\n`;
  const r = await checkYaml(`hub:\n  id: hub1\n  x:\n${keys}  id: hub2\n`);
  refusedAt(r, 20_004, 3, /YAML syntax: map keys must be unique; `id` is set already on line 2 — remove one of the two/);
});

test('brackets nested deeper than 64 are refused before parsing', async () => {
  const r = await checkYaml(`hub:\n  id: ${'['.repeat(5000)}\n`);
  refusedAt(r, 2, 7 + 64, /YAML syntax: brackets nest more than 64 deep/);
  assert.equal(r.err.length, 2, r.err.join('\n'));
  // Nested within the limit, brackets are parsed: the answer is about the value, not the nesting.
  const shallow = await checkYaml(`hub:\n  id: ${'['.repeat(64)}${']'.repeat(64)}\n`);
  assert.ok(shallow.err.some((l) => /hub\.id: expected text, found a list/.test(l)), shallow.err.join('\n'));
  assert.ok(!shallow.err.some((l) => /nest more than/.test(l)), shallow.err.join('\n'));
});

test('aliases that expand without end (a billion laughs) are refused, not expanded', async () => {
  let yaml = 'x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n';
  for (let i = 1; i <= 9; i++) yaml += `x${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]\n`;
  const r = await checkYaml(`hub:\n  id: hub1\n${yaml.replace(/^/gm, '  ').trimEnd()}\n`, '--no-check-files');
  refusedAt(r, 1, 1, /\(top level\): the YAML cannot be read: .*alias.* — remove excessive aliases/i);
  assert.equal(r.err.length, 2, r.err.join('\n'));
});

// --- what reaches the terminal ------------------------------------------------------------------

test('control characters from the file reach the terminal only as escapes', async () => {
  // ESC sequences (colour, window title), BEL, a raw C1 CSI, DEL and a bidi override in keys and values.
  const yaml = `hub:\n  id: "\\e[31mred\\a"\n  "x\\e]0;owned\\a": 1\n  "y\u009B2J\u007F\u202E": 2\n  listen: "\\e[2J"\n`;
  const r = await checkYaml(yaml, '--no-check-files');
  assert.equal(r.code, 1);
  for (const line of r.err) assert.doesNotMatch(line, RAW_CONTROL, `a raw control character in: ${JSON.stringify(line)}`);
  for (const line of r.err) assert.doesNotMatch(line, /\u202E/);
  assert.ok(r.err.some((l) => l.includes(':2:7: hub.id: `\\x1B[31mred\\x07` is not a valid `id`')), r.err.join('\n'));
  assert.ok(r.err.some((l) => l.includes('unknown setting `x\\x1B]0;owned\\x07`')), r.err.join('\n'));
  assert.ok(r.err.some((l) => l.includes('unknown setting `y\\x9B2J\\x7F\\u202E`')), r.err.join('\n'));
});

test('a configuration path with control characters is escaped in the answer too', async () => {
  const r = await run(path.join(dir, 'absent\x1b[31m.yaml'));
  assert.equal(r.code, 1);
  assert.match(r.err[0]!, /absent\\x1B\[31m\.yaml: no such file/);
  assert.doesNotMatch(r.err[0]!, RAW_CONTROL);
});

test('the hub refusing such a file at start writes its problems one per line, escaped', () => {
  const file = write(dir, 'hub-escape.yaml', 'hub:\n  id: "\\e]0;owned\\a"\n  "\\e[2J": 1\n');
  const bin = new URL('../../bin/pwsync.mjs', import.meta.url).pathname;
  const r = spawnSync(process.execPath, [bin, 'hub', '--config', file], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 2, r.stderr);
  const lines = r.stderr.trimEnd().split('\n');
  assert.ok(lines.length >= 3, r.stderr);
  for (const line of lines) assert.doesNotMatch(line, RAW_CONTROL, JSON.stringify(line));
  assert.ok(lines.some((l) => l.includes(':2:7: hub.id: `\\x1B]0;owned\\x07` is not a valid `id`')), r.stderr);
  assert.ok(lines.some((l) => l.includes(':3:3: hub.\\x1B[2J: unknown setting')), r.stderr);
});

// --- the hook socket --------------------------------------------------------------------------

const notifierWithMode = (mode: string): string => NOTIFIER_HEAD.replace('    socket: hook.sock\n', `    socket: hook.sock\n    mode: '${mode}'\n`) + target('hub1');

test('a hook socket mode with a bit for others is refused, saying why', async () => {
  for (const mode of ['0777', '0666', '0606', '0602', '777']) {
    const r = await checkYaml(notifierWithMode(mode), '--no-check-files');
    refusedAt(r, 7, 11, new RegExp(`notifier\\.hook\\.mode: hook\\.mode ${mode} lets every local user write to the hook socket, and so queue password changes for any account — use '0600'`));
  }
  // The notifier loads its file with the same loader, so it refuses to start with it too.
  const loaded = await issuesOf(dir, notifierWithMode('0777'), 'notifier');
  assert.ok(loaded.issues.some((i) => i.path === 'notifier.hook.mode'), loaded.message);
});

test('hook socket modes for the owner and its group pass', async () => {
  for (const mode of ['0600', '0660', '0640', '600']) passed(await checkYaml(notifierWithMode(mode), '--no-check-files'));
});

// --- LDAP URLs ----------------------------------------------------------------------------------

const ldapConnector = (url: string, extra = ''): string => `${HUB_HEAD}  - name: dir
    kind: ldap
    connection:
      url: ${url}
      ca: tls.crt
      bindDn: cn=pwsync,dc=example,dc=com
      password: {fromEnv: PWSYNC_TEST_UNSET}
      baseDn: dc=example,dc=com
${extra}    join:
      - target: uid
        source: sAMAccountName
`;

test('ldap:// without StartTLS where a secure connection is required (the default) is refused at the URL', async () => {
  const r = await checkYaml(ldapConnector('ldap://dir.example.com:389'), '--no-check-files');
  refusedAt(r, 15, 12, /connectors\[0\]\.connection\.url: ldap:\/\/dir\.example\.com:389 is a plain connection: .*requireSecureConnection is true \(the default\), so the connector is refused at start with event 6951 — use ldaps:\/\/ or StartTLS/);
  const explicit = await checkYaml(ldapConnector('ldap://dir.example.com', '').replace('    join:', '    requireSecureConnection: true\n    join:'), '--no-check-files');
  refusedAt(explicit, 15, 12, /is a plain connection/);
  const ad = await checkYaml(ldapConnector('ldap://dc1.corp.example.com').replace('kind: ldap', 'kind: ad'), '--no-check-files');
  refusedAt(ad, 15, 12, /ldap:\/\/dc1\.corp\.example\.com is a plain connection/);
});

test('ldap:// with StartTLS, ldaps://, or plain with requireSecureConnection false pass', async () => {
  passed(await checkYaml(ldapConnector('ldap://dir.example.com:389', '      startTls: true\n'), '--no-check-files'));
  passed(await checkYaml(ldapConnector('ldaps://dir.example.com:636'), '--no-check-files'));
  passed(await checkYaml(ldapConnector('ldap://dir.example.com:389').replace('    join:', '    requireSecureConnection: false\n    join:'), '--no-check-files'));
});

test('startTls on ldaps://, and a plain domain directory, are refused', async () => {
  const tls = await checkYaml(ldapConnector('ldaps://dir.example.com:636', '      startTls: true\n'), '--no-check-files');
  refusedAt(tls, 20, 17, /startTls is for ldap:\/\/ URLs/);
  const domain = `${HUB_HEAD.replace('  - name: corp.example.com\n', `  - name: corp.example.com
    directory:
      url: ldap://dc1.corp.example.com
      ca: tls.crt
      bindDn: pwsync@corp.example.com
      password: {fromEnv: PWSYNC_TEST_UNSET}
`)}${csvConnector('hr')}`;
  refusedAt(await checkYaml(domain, '--no-check-files'), 12, 12, /domains\[0\]\.directory\.url: ldap:\/\/dc1\.corp\.example\.com is a plain LDAP connection: .*a directory is always reached over an encrypted connection/);
});

test('connection settings the connector itself refuses are found (an LDAP filter without parentheses)', async () => {
  const r = await checkYaml(ldapConnector('ldaps://dir.example.com', '      filter: objectClass=person\n'), '--no-check-files');
  refusedAt(r, 14, 5, /connectors\[0\]\.connection: connector dir: connection\.filter "objectClass=person" is not an LDAP filter/);
});

// --- extensions --------------------------------------------------------------------------------

const withExtension = (module: string, settings = '', csv = 'hr.csv'): string =>
  `${HUB_HEAD}${csvConnector('hr', csv)}    extension:\n      module: ${module}\n${settings ? `      settings:\n${settings}` : ''}`;

test('an extension path that does not exist, a folder, or no module is refused at extension.module', async () => {
  fs.mkdirSync(path.join(dir, 'ext-folder.ts'), { recursive: true });
  write(dir, 'notes.txt', 'export default 1\n');
  write(dir, 'noext', 'export default () => ({})\n');
  refusedAt(await checkYaml(withExtension('./absent.ts')), 20, 15, /extension\.module: the extension .*absent\.ts does not exist — correct `extension\.module`/);
  refusedAt(await checkYaml(withExtension('./ext-folder.ts')), 20, 15, /the extension .*ext-folder\.ts is not a regular file/);
  refusedAt(await checkYaml(withExtension('./notes.txt')), 20, 15, /the extension .*notes\.txt is not a module: \.txt is not a JavaScript or TypeScript file/);
  refusedAt(await checkYaml(withExtension('./noext')), 20, 15, /is not a module: its name has no extension/);
});

test('an extension with a syntax error or without a default export is found by parsing, and its code is not run', async () => {
  const marker = path.join(dir, 'ran.marker');
  const run = `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(marker)}, 'ran');\n`;
  write(dir, 'broken.ts', `${run}export default function (: number {\n`);
  write(dir, 'named.ts', `${run}export const setPassword = () => undefined;\n`);
  write(dir, 'good.ts', `${run}export default () => ({ setPassword() {} });\n`);
  write(dir, 'legacy.cjs', 'module.exports = () => ({ setPassword() {} });\n');
  refusedAt(await checkYaml(withExtension('./broken.ts')), 20, 15, /the extension .*broken\.ts is not a module that can be loaded: .* at line 3, column \d+ — fix the module's syntax/);
  refusedAt(await checkYaml(withExtension('./named.ts')), 20, 15, /the extension .*named\.ts has no default export — write export default defineExtension/);
  passed(await checkYaml(withExtension('./good.ts')));
  passed(await checkYaml(withExtension('./legacy.cjs')));
  assert.equal(fs.existsSync(marker), false, 'config check ran the extension\'s code');
});

test('an unknown built-in, or a package that is not installed, is refused', async () => {
  refusedAt(await checkYaml(withExtension('builtin:sql-logon')), 20, 15, /no built-in password extension builtin:sql-logon — use one of builtin:sql-login, builtin:sql-table/);
  refusedAt(await checkYaml(withExtension('pwsync-no-such-extension')), 20, 15, /no package pwsync-no-such-extension can be found \(ERR_MODULE_NOT_FOUND\) — install it next to pwsync/);
});

test('a built-in extension\'s bad settings are found without a database', async () => {
  refusedAt(await checkYaml(withExtension('builtin:sql-login', '        logn: id\n')), 21, 7,
    /extension\.settings: builtin:sql-login: unknown setting logn; the settings are login, options — correct extension\.settings/);
  refusedAt(await checkYaml(withExtension('builtin:sql-table', '        statement: DELETE FROM users\n        hash: {scheme: argon2id}\n')), 21, 7,
    /builtin:sql-table: statement must be an UPDATE/);
  refusedAt(await checkYaml(withExtension('builtin:sql-table', '        statement: UPDATE u SET h = :hash WHERE login = :login\n        params: {login: id}\n        hash: {scheme: md5}\n')), 21, 7,
    /builtin:sql-table: hash\.scheme "md5" is not known/);
  passed(await checkYaml(withExtension('builtin:sql-table', '        statement: UPDATE u SET h = :hash WHERE login = :login\n        params: {login: id}\n        hash: {scheme: scrypt}\n')));
});

test('--load-extensions runs init() as the hub does: bad settings of a path extension are found only then', async () => {
  write(dir, 'strict.ts', `export default () => ({
  init(settings: Record<string, unknown>) { if (settings.attribute !== 'pwdHash') throw new Error('attribute must be pwdHash'); },
  setPassword() {},
});\n`);
  const yaml = withExtension('./strict.ts', '        attribute: pwHash\n');
  passed(await checkYaml(yaml));
  const r = await checkYaml(yaml, '--load-extensions');
  refusedAt(r, 19, 5, /connectors\[0\]\.extension: connector hr: password extension .*strict\.ts: init failed: attribute must be pwdHash/);
});

// --- join attributes ---------------------------------------------------------------------------

test('a join target the CSV header lacks is refused at the rule; a header that has it passes', async () => {
  write(dir, 'people.csv', 'id,mail\n1,a@example.com\n');
  const r = await checkYaml(`${HUB_HEAD}${csvConnector('hr', 'people.csv')}`);
  refusedAt(r, 17, 17, /connectors\[0\]\.join\[0\]\.target: join target `login` is not an attribute of .*people\.csv \(it has: id, mail\) — use one of its attributes, or add a `login` column/);
  write(dir, 'people2.csv', 'id,LOGIN\n1,alice\n');
  passed(await checkYaml(`${HUB_HEAD}${csvConnector('hr', 'people2.csv')}`));
});

test('a connector file that is missing passes (the hub starts and waits for it); a FIFO is refused at once', async () => {
  passed(await checkYaml(`${HUB_HEAD}${csvConnector('hr', 'not-yet.csv')}`));
  const fifo = path.join(dir, 'people.fifo');
  execFileSync('mkfifo', [fifo]);
  const r = await bounded(checkYaml(`${HUB_HEAD}${csvConnector('hr', 'people.fifo')}`));
  refusedAt(r, 15, 13, /connection\.path: .*people\.fifo is not a regular file: the connector would wait on it for ever/);
});

test('files that are missing and what the hub would refuse at start are listed together', async () => {
  write(dir, 'people4.csv', 'id,mail\n1,a@example.com\n');
  const r = await checkYaml(`${HUB_HEAD.replace('    - k1.pem', '    - k-missing.pem')}${csvConnector('hr', 'people4.csv')}`);
  refusedAt(r, 7, 7, /hub\.keys\[0\]: the file .*k-missing\.pem does not exist/);
  refusedAt(r, 17, 17, /join target `login` is not an attribute of .*people4\.csv/);
  assert.equal(r.err.at(-1), `${r.file}: 2 problems`);
});

test('--no-check-files reads neither connector files nor extension modules', async () => {
  write(dir, 'people3.csv', 'id,mail\n1,a@example.com\n');
  passed(await checkYaml(`${HUB_HEAD}${csvConnector('hr', 'people3.csv')}`, '--no-check-files'));
  passed(await checkYaml(withExtension('./absent.ts'), '--no-check-files'));
});

// --- keys and TLS ------------------------------------------------------------------------------

test('a key file that is not a P-256 private key, and a certificate with another key, are refused as the hub would', async () => {
  write(dir, 'k-garbage.pem', 'not a key\n');
  write(dir, 'other.key', (await generateTlsMaterial({ hosts: ['other.example.com'] })).keyPem);
  const r = await checkYaml(`${HUB_HEAD.replace('    - k1.pem', '    - k1.pem\n    - k-garbage.pem').replace('key: tls.key', 'key: other.key')}${csvConnector('hr')}`);
  refusedAt(r, 8, 7, /hub\.keys\[1\]: .*k-garbage\.pem is not a private key that opens sealed passwords \(a P-256 key in PEM\) — create one with `pwsync keys generate`/);
  refusedAt(r, 4, 11, /hub\.tls\.cert: the certificate .*tls\.crt and the key .*other\.key cannot be used together: .* — give the PEM certificate and its own private key/);
  assert.equal(r.err.length, 3, r.err.join('\n'));
});

test('a notifier target\'s publicKey that is not a P-256 public key is refused, as the notifier would at start', async () => {
  write(dir, 'ca.crt', tls.caCertPem);
  write(dir, 'hub1.pub', 'not a key\n');
  const r = await checkYaml(NOTIFIER_HEAD + target('hub1'));
  refusedAt(r, 12, 16, /targets\[0\]\.publicKey: target hub1: publicKey .*hub1\.pub is not a P-256 public key in PEM: .* — give the hub's public key/);
  write(dir, 'hub1.pub', generateRecipientKeys().publicPem);
  passed(await checkYaml(NOTIFIER_HEAD + target('hub1')));
});

// --- pwsync --version ----------------------------------------------------------------------------

test('pwsync --version and -V print the version of package.json', () => {
  const bin = new URL('../../bin/pwsync.mjs', import.meta.url).pathname;
  const { version } = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.match(version, /^\d+\.\d+\.\d+/);
  for (const flag of ['--version', '-V']) {
    assert.equal(execFileSync(process.execPath, [bin, flag], { encoding: 'utf8', timeout: 60_000 }), `${version}\n`);
  }
});
