import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { spawnPwsync, until } from '../../cli/lab.ts';
import { testDir } from '../lib/dirs.ts';

/**
 * `pwsync demo` stops the hub and notifier it started however it ends (issue 15, part 5): its
 * output closed early (`pwsync demo | head -1`) or a signal to the demo alone.
 */

/** PIDs of the processes whose command line names a file in `dir` (the demo's hub and notifier). */
function processesUsing(dir: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir)) out.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Starts the demo in `dir` (kept, so its logs prove what ran) and waits until its hub has started. */
async function demoWithHub(dir: string) {
  const demo = spawnPwsync(['demo', '--dir', dir, '--keep']);
  await until('the demo\'s hub started', 60_000, () => (/hub started/.test(demo.stdout()) ? true : undefined), demo);
  assert.ok(processesUsing(dir).length > 0, 'the demo started processes in its folder');
  return demo;
}

test('`pwsync demo | head -1`: output closed early, the demo stops its hub and notifier before it exits', async () => {
  const dir = testDir('demo-epipe');
  const demo = spawnPwsync(['demo', '--dir', dir, '--keep']);
  // Like `head -1`: read until the first line, then close the pipe.
  await until('the demo\'s first line', 60_000, () => (demo.stdout().includes('\n') ? true : undefined), demo);
  demo.proc.stdout!.destroy();
  const code = await until('the demo to exit', 120_000, () => demo.proc.exitCode ?? undefined);
  assert.notEqual(code, 0);
  assert.match(demo.stderr(), /standard output was closed: stopping the hub and notifier it started/);
  assert.ok(existsSync(path.join(dir, 'logs', 'hub.log')), 'the demo had started its hub');
  assert.deepEqual(processesUsing(dir), []);
});

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  test(`${signal} to the demo: its hub and notifier are stopped before it exits`, async () => {
    const dir = testDir(`demo-${signal.toLowerCase()}`);
    const demo = await demoWithHub(dir);
    demo.proc.kill(signal);
    const code = await demo.exited;
    assert.ok(code !== null && code > 128, `exit ${code}`);
    assert.match(demo.stderr(), new RegExp(`${signal}: stopping the hub and notifier it started`));
    assert.deepEqual(processesUsing(dir), []);
  });
}
