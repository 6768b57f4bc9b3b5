import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { spawn } from 'node:child_process';
import { PWSYNC_BIN, spawnPwsync, until } from '../../cli/lab.ts';
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
  // A real pipeline: head exits after the first line, while the demo is still writing its next ones.
  const sh = spawn('sh', ['-c', `"${process.execPath}" "${PWSYNC_BIN}" demo --dir "${dir}" --keep 2>"${dir}.err" | head -1`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  sh.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const code = await new Promise<number | null>((resolve) => sh.once('exit', resolve));
  assert.equal(code, 0);
  assert.match(out, /^pwsync demo in /);
  assert.match(readFileSync(`${dir}.err`, 'utf8'), /standard output was closed: stopping the hub and notifier it started/);
  assert.ok(existsSync(path.join(dir, 'logs', 'hub.log')), 'the demo had started its hub');
  assert.deepEqual(processesUsing(dir), []);
});

test('output closed while the demo waits for the change: it stops its hub and notifier too', async () => {
  const dir = testDir('demo-epipe-late');
  const demo = spawnPwsync(['demo', '--dir', dir, '--keep']);
  await until('the demo\'s notifier started', 60_000, () => (/notifier started/.test(demo.stdout()) ? true : undefined), demo);
  demo.proc.stdout!.destroy();
  const code = await demo.exited;
  assert.equal(code, 1);
  assert.match(demo.stderr(), /standard output was closed: stopping the hub and notifier it started/);
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
