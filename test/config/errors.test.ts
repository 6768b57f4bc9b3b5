import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { HUB_HEAD, NOTIFIER_HEAD, csvConnector, expectIssue, issuesOf, target, tempDir, write } from './helpers.ts';

/**
 * Bad configuration files: each is refused with the exact file, line and column, a message that
 * names what is wrong, and a fix. HUB_HEAD is 11 lines; a connector written after it starts at 12.
 */
const { dir, cleanup } = tempDir();
after(cleanup);

const FIXED_WIDTH = (connection: string) => `${HUB_HEAD}  - name: fw
    kind: fixed-width
    connection:
${connection}    join:
      - target: id
        source: sAMAccountName
`;

test('an unclosed quote points at the opening quote', async () => {
  const r = await issuesOf(dir, 'hub:\n  id: "hub1\n  dataDir: data\n');
  expectIssue(r, { line: 2, column: 7, message: /quoted value is never closed/, fix: /close the quote/ });
});

test('a line indented less than its siblings', async () => {
  const r = await issuesOf(dir, 'hub:\n  id: hub1\n dataDir: data\n');
  expectIssue(r, { line: 3, column: 2, message: /YAML syntax: all mapping items must start at the same column/, fix: /same number of spaces/ });
});

test('a line indented deeper than its siblings', async () => {
  const r = await issuesOf(dir, 'hub:\n  id: hub1\n   dataDir: data\n');
  expectIssue(r, { line: 3, column: 4, message: /YAML syntax/, fix: /indented deeper than the setting above it/ });
  assert.equal(r.issues.length, 1, r.message);
});

test('a tab used for indentation', async () => {
  const r = await issuesOf(dir, 'hub:\n\tid: hub1\n');
  expectIssue(r, { line: 2, column: 1, message: /tabs are not allowed as indentation/i, fix: /indent with spaces/ });
});

test('the same key twice in a mapping', async () => {
  const r = await issuesOf(dir, 'hub:\n  id: a\n  id: b\n');
  expectIssue(r, { line: 3, column: 3, message: /map keys must be unique/, fix: /remove one of the two/ });
});

test('a wrong type at a known line: count: ten', async () => {
  const r = await issuesOf(dir, `${HUB_HEAD}${csvConnector('hr')}    retry:\n      count: ten\n`);
  expectIssue(r, {
    line: 20, column: 14, path: 'connectors[0].retry.count',
    message: /expected a whole number from 0 to 1000, found the text `ten`/, fix: /write a whole number from 0 to 1000/,
  });
});

test('an unknown connector kind lists the known kinds', async () => {
  const r = await issuesOf(dir, HUB_HEAD + csvConnector('hr').replace('delimited', 'sql-server'));
  expectIssue(r, {
    line: 13, column: 11, path: 'connectors[0].kind',
    message: /unknown connector kind `sql-server`/, fix: /`delimited`, `fixed-width`, `avp`, `ldif`, `dsml`, `ldap`, `ad`, `postgresql`, `mariadb`, `mssql`, `oracle`, `db2` or `remote`/,
  });
});

test('an unknown setting suggests the closest known one', async () => {
  const r = await issuesOf(dir, `${HUB_HEAD}${csvConnector('hr')}    retries: 3\n`);
  expectIssue(r, { line: 19, column: 5, path: 'connectors[0].retries', message: /unknown setting `retries`/, fix: /did you mean `retry`\?/ });
});

test('a missing required section points at its parent: hub.tls', async () => {
  const yaml = HUB_HEAD.replace('  tls:\n    cert: tls.crt\n    key: tls.key\n', '') + csvConnector('hr');
  const r = await issuesOf(dir, yaml);
  expectIssue(r, { line: 1, column: 1, path: 'hub.tls', message: /missing required setting `tls`/, fix: /add `tls:` under `hub:` with `cert` and `key`/ });
  assert.equal(r.issues.length, 1, r.message);
});

test('a duration without a valid unit: interval: 60 seconds', async () => {
  const r = await issuesOf(dir, `${HUB_HEAD}${csvConnector('hr')}    retry:\n      interval: 60 seconds\n`);
  expectIssue(r, {
    line: 20, column: 17, path: 'connectors[0].retry.interval',
    message: /`60 seconds` is not a duration/, fix: /ms, s, m, h or d \(such as 500ms, 60s, 5m, 72h\)/,
  });
});

test('a duration written as a bare number', async () => {
  const r = await issuesOf(dir, `${HUB_HEAD}${csvConnector('hr')}    timeout: 30\n`);
  expectIssue(r, { line: 19, column: 14, message: /expected a duration, found the number 30/, fix: /`30s`/ });
});

test('an integer out of range', async () => {
  const r = await issuesOf(dir, `${HUB_HEAD}${csvConnector('hr')}    concurrency: 100\n`);
  expectIssue(r, { line: 19, column: 18, path: 'connectors[0].concurrency', message: /100 is out of range for `concurrency`/, fix: /from 1 to 64/ });
});

test('two connectors with the same name (case-insensitive)', async () => {
  const r = await issuesOf(dir, HUB_HEAD + csvConnector('hr') + csvConnector('HR', 'other.csv'));
  expectIssue(r, { line: 19, column: 11, path: 'connectors[1].name', message: /connector `HR` is defined twice \(first at line 12\)/, fix: /rename or remove one/ });
});

test('two connectors writing the same file', async () => {
  const r = await issuesOf(dir, HUB_HEAD + csvConnector('hr', 'people.csv') + csvConnector('payroll', './people.csv'));
  expectIssue(r, { line: 22, column: 13, path: 'connectors[1].connection.path', message: /connector `hr` uses the same file/, fix: /its own file/ });
});

test('a join rule with an unknown source attribute', async () => {
  const r = await issuesOf(dir, HUB_HEAD + csvConnector('hr').replace('source: sAMAccountName', 'source: samaccountname'));
  expectIssue(r, {
    line: 18, column: 17, path: 'connectors[0].join[0].source',
    message: /unknown source attribute `samaccountname`/, fix: /did you mean `sAMAccountName`\?.*`userPrincipalName`/,
  });
});

test('a join rule repeated', async () => {
  const r = await issuesOf(dir, `${HUB_HEAD}${csvConnector('hr')}      - target: LOGIN\n        source: sAMAccountName\n`);
  expectIssue(r, { line: 19, column: 9, path: 'connectors[0].join[1]', message: /repeats rule 1 \(line 17\)/, fix: /remove the repeated rule/ });
});

test('no join rule at all', async () => {
  const r = await issuesOf(dir, `${HUB_HEAD}  - name: hr\n    kind: delimited\n    connection:\n      path: hr.csv\n    join: []\n`);
  expectIssue(r, { line: 16, column: 11, path: 'connectors[0].join', message: /`join` needs at least 1 item/, fix: /add an item/ });
});

test('a connection setting of the wrong type for the kind: fields: 5 (fixed-width)', async () => {
  const r = await issuesOf(dir, FIXED_WIDTH('      path: fw.txt\n      fields: 5\n'));
  expectIssue(r, { line: 16, column: 15, path: 'connectors[0].connection.fields', message: /expected a list, found the number 5/, fix: /on its own line, starting with `- `/ });
});

test('a connection setting of another kind is unknown for this kind', async () => {
  const r = await issuesOf(dir, FIXED_WIDTH('      path: fw.txt\n      delimiter: ";"\n      fields:\n        - {name: id, width: 8}\n'));
  expectIssue(r, { line: 16, column: 7, path: 'connectors[0].connection.delimiter', message: /unknown setting `delimiter`/, fix: /`path`, `encoding`, `fields` or `anchor`/ });
});

test('a fixed-width anchor that is not one of the fields', async () => {
  const r = await issuesOf(dir, FIXED_WIDTH('      path: fw.txt\n      fields:\n        - {name: uid, width: 8}\n'));
  expectIssue(r, { line: 16, column: 7, path: 'connectors[0].connection.fields', message: /the anchor `id` is not one of the fields/, fix: /uid/ });
  expectIssue(r, { line: 19, column: 17, path: 'connectors[0].join[0].target', message: /join target `id` is not one of the fields/, fix: /uid/ });
});

test('a missing connection.path points at `connection:`', async () => {
  const r = await issuesOf(dir, `${HUB_HEAD}  - name: hr\n    kind: delimited\n    connection:\n      anchor: id\n    join:\n      - {target: login, source: sAMAccountName}\n`);
  expectIssue(r, { line: 14, column: 5, path: 'connectors[0].connection.path', message: /missing required setting `path`/, fix: /add `path:` under `connection:`/ });
});

test('an empty file', async () => {
  const r = await issuesOf(dir, '');
  expectIssue(r, { line: 1, column: 1, path: '(top level)', message: /the file is empty/, fix: /config\/examples\/hub\.yaml/ });
  const comments = await issuesOf(dir, '# nothing here yet\n');
  expectIssue(comments, { line: 1, column: 1, message: /the file is empty/, fix: /examples/ });
});

test('a top level that is a list', async () => {
  const r = await issuesOf(dir, '# a list by mistake\n- hub:\n    id: hub1\n');
  expectIssue(r, { line: 2, column: 1, path: '(top level)', message: /the top level is a list, but must be a mapping/, fix: /without `- `/ });
});

test('a file with both hub: and notifier:', async () => {
  const r = await issuesOf(dir, `${HUB_HEAD}notifier:\n  domain: corp.example.com\n`);
  expectIssue(r, { line: 12, column: 1, path: 'notifier', message: /one of a hub .*, a notifier .* or a connector worker .*, but this one has `hub:` and `notifier:`/, fix: /notifier's settings to a file of their own/ });
});

test('a notifier file loaded as a hub', async () => {
  const r = await issuesOf(dir, NOTIFIER_HEAD + target('hub1'));
  expectIssue(r, { line: 1, column: 1, message: /this file configures a notifier, not a hub/, fix: /load this one as a notifier/ });
});

test('several errors are reported at once, sorted by line', async () => {
  const yaml = HUB_HEAD.replace('id: hub1', 'id: hub 1') + csvConnector('hr').replace('delimited', 'csv') + '    retry:\n      count: ten\n    retries: 3\n';
  const r = await issuesOf(dir, yaml);
  assert.ok(r.issues.length >= 4, r.message);
  expectIssue(r, { line: 2, column: 7, path: 'hub.id', message: /`hub 1` is not a valid `id`/, fix: /letters, digits/ });
  expectIssue(r, { line: 13, column: 11, message: /unknown connector kind `csv`/, fix: /`delimited`/ });
  expectIssue(r, { line: 20, column: 14, message: /found the text `ten`/, fix: /whole number/ });
  expectIssue(r, { line: 21, column: 5, message: /unknown setting `retries`/, fix: /did you mean `retry`\?/ });
  const lines = r.message.split('\n');
  assert.equal(lines.length, r.issues.length);
  assert.deepEqual(r.issues.map((i) => i.line), [...r.issues.map((i) => i.line)].sort((a, b) => a - b));
});

test('a boolean written as yes', async () => {
  const r = await issuesOf(dir, `${HUB_HEAD}${csvConnector('hr')}    enabled: yes\n`);
  expectIssue(r, { line: 19, column: 14, message: /expected true or false, found the text `yes`/, fix: /`true` or `false`/ });
});

test('a notifier socket mode written as a number', async () => {
  const r = await issuesOf(dir, NOTIFIER_HEAD.replace('    socket: hook.sock\n', '    socket: hook.sock\n    mode: 0600\n') + target('hub1'), 'notifier');
  expectIssue(r, { line: 7, column: 11, path: 'notifier.hook.mode', message: /expected text, found the number 0600/, fix: /put the value in quotes: `mode: '0600'`/ });
});

test('a target address without a port', async () => {
  const r = await issuesOf(dir, NOTIFIER_HEAD + target('hub1').replace('hub1.corp.example.com:7443', 'hub1.corp.example.com'), 'notifier');
  expectIssue(r, { line: 9, column: 14, path: 'targets[0].address', message: /`hub1.corp.example.com` is not a valid `address`/, fix: /host:port/ });
});

test('a target whose longest retry wait is shorter than its first', async () => {
  const r = await issuesOf(dir, `${NOTIFIER_HEAD}${target('hub1')}    retryInterval: 5m\n    maxRetryInterval: 1m\n`, 'notifier');
  expectIssue(r, { line: 14, column: 23, path: 'targets[0].maxRetryInterval', message: /shorter than retryInterval/, fix: /at least as long/ });
});

test('a control character in the notifier\'s domain or host, or in a hub domain\'s name (6979)', async () => {
  const r = await issuesOf(dir, NOTIFIER_HEAD.replace('host: dc01.corp.example.com', 'host: "dc01\\0.corp.example.com"') + target('hub1'), 'notifier');
  expectIssue(r, { line: 3, column: 9, path: 'notifier.host', message: /notifier\.host holds the control character \\u0000 at position 4/, fix: /without escapes/ });
  const h = await issuesOf(dir, `${HUB_HEAD.replace('  - name: corp.example.com', '  - name: "corp\\n.example.com"')}${csvConnector('hr')}`);
  expectIssue(h, { line: 10, column: 11, path: 'domains[0].name', message: /holds the control character \\u000a/, fix: /as DNS has it/ });
});

test('a key file that does not exist (checkFiles)', async () => {
  const d = tempDir();
  try {
    write(d.dir, 'tls.crt', 'cert', 0o644);
    write(d.dir, 'tls.key', 'key', 0o600);
    const r = await issuesOf(d.dir, HUB_HEAD + csvConnector('hr'), 'hub', { checkFiles: true });
    expectIssue(r, { line: 7, column: 7, path: 'hub.keys[0]', message: /the file .*k1\.pem does not exist/, fix: /relative to the YAML file's folder/ });
    assert.equal(r.issues.length, 1, r.message);
  } finally {
    d.cleanup();
  }
});

test('a private key readable by others (checkFiles)', async () => {
  const d = tempDir();
  try {
    write(d.dir, 'tls.crt', 'cert', 0o644);
    write(d.dir, 'tls.key', 'key', 0o644);
    write(d.dir, 'k1.pem', 'key', 0o600);
    const r = await issuesOf(d.dir, HUB_HEAD + csvConnector('hr'), 'hub', { checkFiles: true });
    expectIssue(r, { line: 5, column: 10, path: 'hub.tls.key', message: /readable by group or others \(mode 0644\)/, fix: /chmod 600 .*tls\.key/ });
  } finally {
    d.cleanup();
  }
});

test('a secret file readable by others, named in extension settings (checkFiles)', async () => {
  const d = tempDir();
  try {
    write(d.dir, 'tls.crt', 'cert', 0o644);
    write(d.dir, 'tls.key', 'key', 0o600);
    write(d.dir, 'k1.pem', 'key', 0o600);
    write(d.dir, 'db.pass', 'not-a-real-secret\n', 0o604);
    const yaml = `${HUB_HEAD}${csvConnector('hr')}    extension:\n      module: ./ext.ts\n      settings:\n        passphrase: {fromFile: db.pass}\n`;
    const r = await issuesOf(d.dir, yaml, 'hub', { checkFiles: true });
    expectIssue(r, { line: 22, column: 32, path: 'connectors[0].extension.settings.passphrase.fromFile', message: /readable by group or others \(mode 0604\)/, fix: /chmod 600/ });
  } finally {
    d.cleanup();
  }
});

test('an unknown YAML tag is not silently ignored', async () => {
  const r = await issuesOf(dir, 'hub:\n  id: !secret hub1\n');
  expectIssue(r, { line: 2, column: 7, message: /YAML syntax: unresolved tag: !secret/, fix: /remove the tag/ });
});

test('settings shared with a YAML merge key load, and errors inside them are still found', async () => {
  const yaml = `${HUB_HEAD}${csvConnector('hr')}    retry: &retry\n      count: 3\n      interval: 5m\n${csvConnector('payroll')}    retry:\n      <<: *retry\n      count: -1\n`;
  const r = await issuesOf(dir, yaml);
  expectIssue(r, { line: 31, column: 14, path: 'connectors[1].retry.count', message: /-1 is out of range for `count`/, fix: /from 0 to 1000/ });
  assert.equal(r.issues.length, 1, r.message);
});

test('a password policy that cannot work: a bad character class, maxLength below minLength', async () => {
  const r = await issuesOf(dir, `${HUB_HEAD}${csvConnector('hr')}    policy:\n      minLength: 12\n      maxLength: 8\n      allowedCharacters: a-z\n`);
  expectIssue(r, { line: 21, column: 18, path: 'connectors[0].policy.maxLength', message: /policy.maxLength 8 is below policy.minLength 12/, fix: /raise maxLength or lower minLength/ });
  expectIssue(r, { line: 22, column: 26, path: 'connectors[0].policy.allowedCharacters', message: /is not a character class: write it in brackets/, fix: /one bracketed character class/ });
});
