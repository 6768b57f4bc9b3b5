import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { NotifierConfig, SambaCaptureConfig } from '../../config/schema.ts';
import { describeError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { CaptureSource, CaptureState } from '../capture-source.ts';
import { logEvent } from '../event-log.ts';
import type { CaptureScriptConfig } from './capture-config.ts';
import { BASELINE_ENV } from './capture-script.ts';

/**
 * Capture on a Samba AD DC: runs and supervises `samba-tool user syncpasswords` with pwsync's
 * capture script (capture-script.ts), which seals each new password and hands it to the hook
 * socket. syncpasswords keeps its cursor in a cache ldb of ours (`<dataDir>/samba/`) and exits when
 * the script fails, without moving it: restarted here with backoff (event 6959), it hands the same
 * change again.
 *
 * Phases: initialise the cache (first run only) → baseline (first run only: one `--no-wait` pass in
 * which every account's current password version is recorded and nothing is sent, unless
 * `initialSync`) → the continuous loop. Which phases are done is kept in `state.json`, so a notifier
 * that dies during the baseline does it again rather than sending old passwords.
 *
 * Start it once the hook socket listens; stop it before the hook socket closes.
 */

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.join(HERE, 'capture-main.ts');
/** The same script through tsx's loader, when bundling is not possible. */
const TSX_ENTRY = path.resolve(HERE, '../../bin/pwsync-samba-capture.mjs');
/** What the script reads; objectGUID, isDeleted and isRecycled are always added by syncpasswords. */
export const SYNC_ATTRIBUTES = 'objectGUID,objectSid,sAMAccountName,userPrincipalName,msDS-KeyVersionNumber,pwdLastSet,uSNChanged,virtualClearTextUTF8';
/** A run that lasted this long, or captured a change, starts the backoff again from restartMin. */
const STABLE_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const OUTPUT_LINE_MAX = 500;

export interface SambaCaptureContext {
  log: Logger;
}

type Phase = 'initialise' | 'baseline' | 'loop';

interface Progress {
  initialised: boolean;
  baselineDone: boolean;
}

export interface SambaPaths {
  dir: string;
  cache: string;
  wrapper: string;
  /** The capture script bundled into plain JavaScript. */
  script: string;
  settings: string;
  progress: string;
}

export function sambaPaths(dataDir: string): SambaPaths {
  const dir = path.join(dataDir, 'samba');
  return {
    dir,
    cache: path.join(dir, 'syncpasswords-cache.ldb'),
    wrapper: path.join(dir, 'capture.sh'),
    script: path.join(dir, 'capture.mjs'),
    settings: path.join(dir, 'capture.json'),
    progress: path.join(dir, 'state.json'),
  };
}

/** Starts capture through syncpasswords when `notifier.capture.samba` is set. */
export async function startSambaCapture(config: NotifierConfig, ctx: SambaCaptureContext): Promise<CaptureSource> {
  const samba = config.notifier.capture?.samba;
  if (!samba) throw new Error('notifier.capture.samba is not set');
  const n = config.notifier;
  const paths = sambaPaths(n.dataDir);
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  chmodSync(paths.dir, 0o700);
  const keys = config.targets.filter((t) => t.enabled).map((t) => readFileSync(t.publicKey, 'utf8'));
  const settings: CaptureScriptConfig = { v: 1, domain: n.domain, host: n.host, hookSocket: n.hook.socket, timeoutMs: n.hook.timeout, keys };
  writePrivate(paths.settings, `${JSON.stringify(settings, null, 2)}\n`, 0o600);
  const script = await bundleCaptureScript(paths.script, ctx.log);
  // samba-tool runs the script without arguments and records its path in the cache: a stable wrapper.
  writePrivate(paths.wrapper, `#!/bin/sh\n# pwsync's capture script for samba-tool user syncpasswords; rewritten at each notifier start.\nexec ${sh(process.execPath)} ${sh(script)} ${sh(paths.settings)}\n`, 0o700);
  const supervisor = new Supervisor(samba, paths, ctx);
  await supervisor.start();
  return supervisor;
}

/**
 * syncpasswords starts the script once per change (and per account during the baseline): as one
 * plain JavaScript file it starts in ~0.1 s, through tsx's loader in ~0.3 to 0.6 s. esbuild comes
 * with tsx; without it the script runs through tsx.
 */
async function bundleCaptureScript(out: string, log: Logger): Promise<string> {
  let esbuild: typeof import('esbuild');
  try {
    esbuild = await import('esbuild');
  } catch (e) {
    log.warn({ err: describeError(e) }, 'esbuild is not available: the capture script runs through tsx (slower to start per change)');
    return TSX_ENTRY;
  }
  try {
    await esbuild.build({
      entryPoints: [MAIN], bundle: true, platform: 'node', format: 'esm', target: 'node20',
      outfile: `${out}.tmp`, logLevel: 'silent', legalComments: 'none',
    });
    chmodSync(`${out}.tmp`, 0o600);
    renameSync(`${out}.tmp`, out);
    return out;
  } catch (e) {
    log.warn({ err: describeError(e) }, 'bundling the capture script failed: it runs through tsx (slower to start per change)');
    return TSX_ENTRY;
  } finally {
    await esbuild.stop();
  }
}

function writePrivate(file: string, content: string, mode: number): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, content, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, file);
}

function sh(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

class Supervisor implements CaptureSource {
  readonly name = 'samba';
  private current: CaptureState['state'] = 'restarting';
  private detail = 'starting';
  private lastCaptureMs = 0;
  private child: ChildProcess | undefined;
  private readonly abort = new AbortController();
  private loop: Promise<void> = Promise.resolve();
  private readonly log: Logger;

  constructor(private readonly config: SambaCaptureConfig, private readonly paths: SambaPaths, ctx: SambaCaptureContext) {
    this.log = ctx.log;
  }

  state(): CaptureState {
    return { source: this.name, state: this.current, detail: this.detail, lastCaptureMs: this.lastCaptureMs };
  }

  async start(): Promise<void> {
    await this.stopLeftover();
    this.loop = this.run().catch((e: unknown) => {
      this.log.error({ err: describeError(e) }, 'the syncpasswords supervisor stopped unexpectedly; Samba capture is off until the notifier restarts');
      this.current = 'stopped';
      this.detail = `supervisor failed: ${describeError(e)}`;
    });
  }

  async stop(): Promise<void> {
    this.abort.abort();
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null && child.pid) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        // Its own process group (detached): the script it may be running goes too.
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      }, STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    }
    await this.loop;
    this.current = 'stopped';
    this.detail = 'notifier stopped';
  }

  private progress(): Progress {
    try {
      const p = JSON.parse(readFileSync(this.paths.progress, 'utf8')) as Partial<Progress>;
      return { initialised: p.initialised === true && existsSync(this.paths.cache), baselineDone: p.baselineDone === true };
    } catch {
      return { initialised: false, baselineDone: false };
    }
  }

  private saveProgress(p: Progress): void {
    writePrivate(this.paths.progress, `${JSON.stringify(p)}\n`, 0o600);
  }

  private async run(): Promise<void> {
    const { restartMin, restartMax } = this.config;
    let failures = 0;
    while (!this.abort.signal.aborted) {
      const progress = this.progress();
      const phase: Phase = !progress.initialised ? 'initialise'
        : !progress.baselineDone && !this.config.initialSync ? 'baseline' : 'loop';
      if (phase === 'initialise') {
        // A cache left by a run that died while initialising cannot be initialised again.
        for (const f of [this.paths.cache, `${this.paths.cache}.pid`]) rmSync(f, { force: true });
      }
      this.current = phase === 'baseline' ? 'baseline' : phase === 'loop' ? 'running' : 'restarting';
      this.detail = phase === 'baseline' ? 'recording every account\'s current password version (nothing is sent)'
        : phase === 'loop' ? 'syncpasswords is waiting for password changes' : 'initialising the syncpasswords cache';
      const started = Date.now();
      const capturesBefore = this.lastCaptureMs;
      const result = await this.runOnce(phase);
      if (this.abort.signal.aborted) return;
      if (result.code === 0 && phase !== 'loop') {
        this.saveProgress(phase === 'initialise' ? { initialised: true, baselineDone: false } : { ...progress, baselineDone: true });
        this.log.info({ source: 'samba', phase }, phase === 'initialise' ? 'syncpasswords cache initialised' : 'baseline recorded: passwords set before now are not sent');
        failures = 0;
        continue;
      }
      if (Date.now() - started >= STABLE_MS || this.lastCaptureMs > capturesBefore) failures = 0;
      failures++;
      const delay = Math.min(restartMax, restartMin * 2 ** Math.min(failures - 1, 30));
      this.current = 'restarting';
      this.detail = `syncpasswords (${phase}) exited with ${result.code ?? result.signal}: ${result.lastLine || 'no output'}; restarting in ${delay} ms`;
      logEvent(this.log, 6959, {
        source: 'samba', phase, exitCode: result.code, signal: result.signal, stderr: result.lastLine, restartInMs: delay,
      });
      await sleep(delay, undefined, { signal: this.abort.signal }).catch(() => undefined);
    }
  }

  private args(phase: Phase): string[] {
    const base = ['user', 'syncpasswords', `--cache-ldb=${this.paths.cache}`, '-s', this.config.smbConf];
    if (phase === 'initialise') {
      return [...base, '--cache-ldb-initialize', '--decrypt-samba-gpg', `--script=${this.paths.wrapper}`, `--attributes=${SYNC_ATTRIBUTES}`];
    }
    return phase === 'baseline' ? [...base, '--no-wait'] : base;
  }

  private runOnce(phase: Phase): Promise<{ code: number | null; signal: NodeJS.Signals | null; lastLine: string }> {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      GNUPGHOME: this.config.gnupgHome,
      // Its log lines (the script's DONE-EXIT replies among them) as they happen, not at exit.
      PYTHONUNBUFFERED: '1',
      // Samba's Python (recipe gotcha 16: another python3 on PATH lacks the samba modules).
      PATH: `/usr/sbin:/usr/bin:/sbin:/bin${process.env.PATH ? `:${process.env.PATH}` : ''}`,
    };
    if (phase === 'baseline') env[BASELINE_ENV] = '1';
    else delete env[BASELINE_ENV];
    return new Promise((resolve) => {
      let lastLine = '';
      let settled = false;
      const done = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (settled) return;
        settled = true;
        this.child = undefined;
        resolve({ code, signal, lastLine });
      };
      let child: ChildProcess;
      try {
        child = spawn(this.config.sambaTool, this.args(phase), { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      } catch (e) {
        lastLine = `cannot start ${this.config.sambaTool}: ${describeError(e)}`;
        done(null, null);
        return;
      }
      this.child = child;
      this.log.info({ source: 'samba', phase, childPid: child.pid }, 'syncpasswords started');
      child.once('error', (e: NodeJS.ErrnoException) => {
        lastLine = e.code === 'ENOENT' ? `${this.config.sambaTool} was not found: install samba (samba-tool) or set capture.samba.sambaTool` : describeError(e);
        done(null, null);
      });
      // syncpasswords logs the script's reply on stdout: a DONE-EXIT line is a captured change.
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const confirmed = /DONE-EXIT: queued \S+ ([0-9a-f]{32})/.exec(line);
        if (!confirmed) return;
        this.lastCaptureMs = Date.now();
        this.log.info({ source: 'samba', changeId: confirmed[1] }, 'syncpasswords confirmed a captured change');
      });
      // samba-tool's own summary ("ERROR(…): … - <the script's message>") comes before the
      // traceback; it says more than the traceback's last line.
      let summary = false;
      createInterface({ input: child.stderr! }).on('line', (line) => {
        const t = line.trim();
        if (!t || summary) return;
        lastLine = t.slice(0, OUTPUT_LINE_MAX);
        summary = t.startsWith('ERROR');
      });
      child.once('close', (code, signal) => done(code, signal));
    });
  }

  /** A syncpasswords left by a notifier that was killed holds the cache's lock: stop it by its PID. */
  private async stopLeftover(): Promise<void> {
    let pid: number;
    try {
      pid = Number(readFileSync(`${this.paths.cache}.pid`, 'utf8').trim());
    } catch {
      return;
    }
    if (!Number.isSafeInteger(pid) || pid <= 1) return;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      return;
    }
    if (!cmdline.includes('syncpasswords') || !cmdline.includes(this.paths.cache)) return;
    this.log.warn({ childPid: pid }, 'a syncpasswords of an earlier notifier is still running; stopping it');
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
}

/** Running, and not a zombie waiting to be reaped. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
