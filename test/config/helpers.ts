import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { register } from '../../cli/config.ts';
import { ConfigError, type ConfigIssue } from '../../config/issues.ts';
import { loadHubConfig, loadNotifierConfig, type LoadOptions } from '../../config/load.ts';

/** A fresh folder under the test root; removed when `cleanup` runs (it may hold secret fixtures). */
export function tempDir(): { dir: string; cleanup(): void } {
  const root = process.env['PWSYNC_TEST_ROOT'] ?? os.tmpdir();
  fs.mkdirSync(root, { recursive: true });
  const dir = fs.mkdtempSync(path.join(root, 'config-'));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export function write(dir: string, name: string, text: string, mode = 0o600): string {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text, { mode });
  fs.chmodSync(file, mode);
  return file;
}

/** The issues a configuration file is refused with (fails the test if it loads). */
export async function issuesOf(dir: string, yaml: string, kind: 'hub' | 'notifier' = 'hub', opts: LoadOptions = { checkFiles: false }): Promise<{ file: string; issues: readonly ConfigIssue[]; message: string }> {
  const file = write(dir, `${kind}-${Math.random().toString(36).slice(2)}.yaml`, yaml);
  const load = kind === 'hub' ? loadHubConfig : loadNotifierConfig;
  try {
    await load(file, opts);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
    return { file, issues: e.issues, message: e.message };
  }
  assert.fail(`${file} loaded, but should have been refused`);
}

/** Asserts that exactly this place is reported, saying what is wrong and how to fix it. */
export function expectIssue(
  found: { file: string; issues: readonly ConfigIssue[]; message: string },
  want: { line: number; column: number; path?: string; message: RegExp; fix: RegExp },
): ConfigIssue {
  const at = found.issues.filter((i) => i.line === want.line && i.column === want.column);
  assert.ok(at.length > 0, `no issue at ${want.line}:${want.column}; got:\n${found.message}`);
  const issue = at.find((i) => want.message.test(i.message)) ?? at[0]!;
  assert.equal(issue.file, found.file);
  if (want.path !== undefined) assert.equal(issue.path, want.path);
  assert.match(issue.message, want.message);
  assert.match(issue.fix, want.fix);
  const line = `${found.file}:${want.line}:${want.column}: ${issue.path}: ${issue.message} — ${issue.fix}`;
  assert.ok(found.message.split('\n').includes(line), `the error message lacks the line:\n${line}\n---\n${found.message}`);
  return issue;
}

/** A valid hub head; connectors follow from line 12. */
export const HUB_HEAD = `hub:
  id: hub1
  tls:
    cert: tls.crt
    key: tls.key
  keys:
    - k1.pem
  dataDir: data
domains:
  - name: corp.example.com
connectors:
`;

/** A valid delimited connector: name on its first line, kind +1, connection +2, path +3, join +4, target +5, source +6. */
export function csvConnector(name: string, file = `${name}.csv`): string {
  return `  - name: ${name}
    kind: delimited
    connection:
      path: ${file}
    join:
      - target: login
        source: sAMAccountName
`;
}

/** A valid notifier head; targets follow from line 8. */
export const NOTIFIER_HEAD = `notifier:
  domain: corp.example.com
  host: dc01.corp.example.com
  dataDir: data
  hook:
    socket: hook.sock
targets:
`;

/** A valid target: name on its first line, address +1, tls +2, ca +3, publicKey +4. */
export function target(name: string): string {
  return `  - name: ${name}
    address: hub1.corp.example.com:7443
    tls:
      ca: ca.crt
    publicKey: hub1.pub
`;
}

/** Runs `pwsync config check ARGS…` in-process; returns what it wrote and the exit code it set. */
export async function runConfigCheck(...args: string[]): Promise<{ out: string[]; err: string[]; code: number }> {
  const out: string[] = [];
  const err: string[] = [];
  const program = new Command('pwsync').exitOverride();
  register(program, { out: (l) => out.push(l), err: (l) => err.push(l) });
  const before = process.exitCode;
  try {
    await program.parseAsync(['config', 'check', ...args], { from: 'user' });
    return { out, err, code: typeof process.exitCode === 'number' ? process.exitCode : 0 };
  } finally {
    process.exitCode = before;
  }
}
