import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Every test writes under the run's root, so that the secrecy scan sees all of it. */
export function testDir(label: string): string {
  const root = process.env.PWSYNC_TEST_ROOT ?? path.join(os.tmpdir(), 'pwsync-test');
  mkdirSync(root, { recursive: true });
  return mkdtempSync(path.join(root, `${label}-`));
}
