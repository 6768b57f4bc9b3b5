import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

/**
 * Bundles the filter DLL's pipe endpoint (notifier/windows/pipe-main.ts) into one plain
 * JavaScript file for any Windows node.exe: `node pwsync-pipe.mjs --pipe NAME --spool DIR`.
 * Called by `npm run build:windows`'s Node step and by the Windows tests.
 *
 *   tsx scripts/bundle-pipe-endpoint.ts [OUT]     (default build/windows/pwsync-pipe.mjs)
 */
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const PIPE_BUNDLE = path.join(REPO, 'build', 'windows', 'pwsync-pipe.mjs');

export async function bundlePipeEndpoint(out = PIPE_BUNDLE): Promise<string> {
  mkdirSync(path.dirname(out), { recursive: true });
  await esbuild.build({
    entryPoints: [path.join(REPO, 'notifier', 'windows', 'pipe-main.ts')],
    bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile: out,
    logLevel: 'warning', legalComments: 'none',
  });
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = await bundlePipeEndpoint(process.argv[2] ? path.resolve(process.argv[2]) : undefined);
  process.stdout.write(`${path.relative(process.cwd(), out)}\n`);
}
