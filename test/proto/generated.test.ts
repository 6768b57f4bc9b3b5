import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../../', import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

test('proto/generated is what `npm run gen:proto` makes from proto/pwsync.proto', () => {
  const script: string = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).scripts['gen:proto'];
  const [command, ...args] = script.split(/\s+/);
  assert.equal(command, 'proto-loader-gen-types');
  const out = mkdtempSync(join(process.env.PWSYNC_TEST_ROOT ?? tmpdir(), 'gen-proto-'));
  const argv = args.map((a) => (a.startsWith('--outDir=') ? `--outDir=${out}` : a));
  assert.ok(argv.includes(`--outDir=${out}`), 'the script names an --outDir');
  const run = spawnSync(join(repo, 'node_modules', '.bin', 'proto-loader-gen-types'), argv, { cwd: repo, encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 0, run.stderr);
  const committed = join(repo, 'proto', 'generated');
  const expected = files(out).map((f) => relative(out, f)).sort();
  assert.deepEqual(files(committed).map((f) => relative(committed, f)).sort(), expected);
  for (const f of expected) {
    assert.equal(readFileSync(join(committed, f), 'utf8'), readFileSync(join(out, f), 'utf8'),
      `proto/generated/${f} is stale: run \`npm run gen:proto\` and commit the result`);
  }
});
