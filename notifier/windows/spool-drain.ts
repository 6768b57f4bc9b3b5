import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { KvStore } from '../../core/broker.ts';
import { parseHeader } from '../../core/envelope.ts';
import { describeError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { Capture, CaptureTarget } from '../capture.ts';
import type { CaptureSource, CaptureState } from '../capture-source.ts';
import { logEvent } from '../event-log.ts';
import { HookProtocolError } from '../hook-protocol.ts';
import { readDllStatus, statusProblem } from './dll-status.ts';
import { decodeFrame, encodeFrame, FrameError, parseSpoolFileName, type FrameEntry } from './frame.ts';
import { listsPackage, notificationPackages, runCommand, type CommandRunner } from './registry.ts';
import { spoolPaths, syncDir, writeDurable, type SpoolPaths } from './spool.ts';

/**
 * Capture on a Windows DC (the `windows` capture source): the filter DLL seals each change in
 * LSASS and hands the frame over the named pipe or spools it; either way it lands in
 * `<spoolDir>\new`. The pipe is served by pwsync-pipe.exe (notifier/windows/dll/pwsync-pipe.c), the
 * LocalSystem service `pwsync-pipe` that `pwsync notifier install` registers: it creates the pipe
 * with a SYSTEM-only DACL (which Node cannot set) and writes each frame it acknowledges into
 * `new\` exactly as the DLL spools one. This process only drains. The drain takes those files in name order
 * (change time, then change id), puts each target's envelope into that target's queue as it is
 * (never opened: the notifier holds no password here), and deletes the file only once the queue
 * write is durable.
 *
 * A change seen twice (the pipe's ack came too late, so the DLL spooled it as well) is dropped by
 * its change id. A frame that cannot be read goes to `bad\`; the envelopes that no target of this
 * notifier can take (unknown or disabled target, another key) go to `aside\` as a frame of their
 * own, with a `.reason` file: never lost, and moved back into `new\` by hand once fixed. A crash
 * between the queue write and the delete replays the file: the queue's message ids drop the
 * second publish, so the hub sees one change.
 *
 * Its state for the fleet check: "running" when the DLL says it is loaded and enabled (and, on
 * Windows, `Notification Packages` lists it); "not-registered" with the reason otherwise.
 */
export interface WindowsCaptureOptions {
  spoolDir: string;
  /** The pipe the pwsync-pipe service serves (registry PipeName): only named in the log here. */
  pipe?: string;
  dllName: string;
  pollMs: number;
  /** The enabled targets; the names of the disabled ones, to say why a frame for them is set aside. */
  targets: readonly CaptureTarget[];
  disabledTargets: readonly string[];
  capture: Capture;
  /** Change ids taken (bucket `windows-taken`), to drop the second copy of a change. */
  taken: KvStore;
  /** notifier.host: the envelopes name the DC as the DLL sees it (GetComputerNameEx). */
  host: string;
  log: Logger;
  /** How `reg.exe` is run (Windows only); tests pass Wine's. */
  run?: CommandRunner;
  platform?: NodeJS.Platform;
  now?: () => number;
}

/** How long a taken change id is remembered: as long as the queue's own dedupe window. */
const TAKEN_FOR_MS = 7 * 24 * 3_600_000;
const STATE_EVERY_MS = 30_000;

export async function startWindowsCapture(opts: WindowsCaptureOptions): Promise<WindowsCapture> {
  const c = new WindowsCapture(opts);
  await c.start();
  return c;
}

export class WindowsCapture implements CaptureSource {
  readonly name = 'windows';
  private readonly paths: SpoolPaths;
  private readonly now: () => number;
  private current: CaptureState['state'] = 'not-registered';
  private detail = 'not checked yet';
  private lastCaptureMs = 0;
  private stopped = false;
  private draining: Promise<void> | undefined;
  private again = false;
  private watcher: FSWatcher | undefined;
  private timers: NodeJS.Timeout[] = [];
  private warnedHost = false;
  private lastProblem = '';
  private failuresSeen = 0;

  constructor(private readonly opts: WindowsCaptureOptions) {
    this.paths = spoolPaths(opts.spoolDir);
    this.now = opts.now ?? Date.now;
  }

  state(): CaptureState {
    return { source: this.name, state: this.stopped ? 'stopped' : this.current, detail: this.stopped ? 'the notifier is stopping' : this.detail, lastCaptureMs: this.lastCaptureMs };
  }

  async start(): Promise<void> {
    const { log } = this.opts;
    if (!existsSync(this.paths.root)) {
      throw new Error(`notifier.capture.windows.spoolDir ${this.paths.root} does not exist: create it (\`pwsync notifier install\` does, with a DACL for SYSTEM and Administrators only)`);
    }
    mkdirSync(this.paths.new, { recursive: true, mode: 0o700 });
    await this.forgetOldTaken();
    await this.checkState();
    try {
      this.watcher = watch(this.paths.new, () => this.kick());
      this.watcher.on('error', (e) => log.warn({ err: describeError(e) }, 'cannot watch the spool folder; it is read every poll interval'));
    } catch (e) {
      log.warn({ err: describeError(e) }, 'cannot watch the spool folder; it is read every poll interval');
    }
    this.timers.push(setInterval(() => this.kick(), this.opts.pollMs));
    this.timers.push(setInterval(() => { void this.checkState(); }, Math.min(STATE_EVERY_MS, Math.max(1_000, this.opts.pollMs * 5))));
    this.timers.push(setInterval(() => { void this.forgetOldTaken(); }, 3_600_000));
    for (const t of this.timers) t.unref();
    log.info({ spoolDir: this.paths.root, pipe: this.opts.pipe, pipeServer: this.opts.pipe ? 'the pwsync-pipe service' : 'none (spool only)', state: this.current, detail: this.detail }, 'Windows capture: draining the filter DLL\'s spool folder');
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.watcher?.close();
    await this.draining;
  }

  /** Resolves when the spool folder has been drained once more (tests). */
  async drained(): Promise<void> {
    this.kick();
    while (this.draining) await this.draining;
  }

  private kick(): void {
    if (this.stopped) return;
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = (async () => {
      do {
        this.again = false;
        try {
          await this.drainOnce();
        } catch (e) {
          this.opts.log.warn({ err: describeError(e) }, 'draining the spool folder failed; trying again at the next poll');
        }
      } while (this.again && !this.stopped);
      this.draining = undefined;
    })();
  }

  /** One pass over `new\` in name order; stops at the first file that failed for a passing reason. */
  private async drainOnce(): Promise<void> {
    const names = readdirSync(this.paths.new).filter((n) => parseSpoolFileName(n)).sort();
    for (const name of names) {
      if (this.stopped) return;
      if (!(await this.take(name))) return;
    }
  }

  /** Queues one spool file; false when it must be tried again later (the queue failed). */
  private async take(name: string): Promise<boolean> {
    const { log } = this.opts;
    const file = path.join(this.paths.new, name);
    let data: Buffer;
    try {
      data = readFileSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true;
      throw e;
    }
    const claimed = parseSpoolFileName(name)!;
    let frame;
    try {
      frame = decodeFrame(data);
      if (frame.changeId.toString('hex') !== claimed.changeId || frame.changeTime !== claimed.changeTime) {
        throw new FrameError('the file name names another change than the frame inside');
      }
    } catch (e) {
      this.setAside(this.paths.bad, name, data, e instanceof FrameError ? e.message : describeError(e));
      this.remove(file);
      return true;
    }
    const changeId = claimed.changeId;
    if (await this.opts.taken.get(changeId)) {
      log.info({ changeId, file: name }, 'change already taken (the pipe\'s acknowledgement came too late, so the DLL spooled it too): this copy is dropped');
      this.remove(file);
      return true;
    }
    const accepted: Array<{ target: CaptureTarget; envelope: Buffer }> = [];
    const rejected: Array<FrameEntry & { reason: string }> = [];
    for (const e of frame.entries) {
      const reason = this.refusal(e);
      const target = this.opts.targets.find((t) => t.name === e.target);
      if (reason || !target) rejected.push({ ...e, reason: reason ?? 'no such target' });
      else accepted.push({ target, envelope: e.envelope });
    }
    const missing = this.opts.targets.filter((t) => !frame.entries.some((e) => e.target === t.name)).map((t) => t.name);
    if (missing.length > 0) {
      log.warn({ changeId, missing }, 'the filter DLL sealed this change for no target of that name: its settings lack an enabled target of this notifier (run `pwsync notifier install` again)');
    }
    if (accepted.length > 0) {
      try {
        await this.opts.capture.presealed({ changeId: frame.changeId, envelopes: accepted });
      } catch (e) {
        if (!(e instanceof HookProtocolError)) {
          log.warn({ changeId, err: describeError(e) }, 'cannot queue a change from the spool folder now; it stays there and is tried again');
          return false;
        }
        rejected.push(...accepted.map((a) => ({ target: a.target.name, envelope: a.envelope, reason: e.message })));
        accepted.length = 0;
      }
    }
    if (rejected.length > 0) {
      const reasons = [...new Set(rejected.map((r) => `${r.target}: ${r.reason}`))].join('; ');
      this.setAside(this.paths.aside, name, encodeFrame(frame.changeId, rejected), reasons);
    }
    if (accepted.length > 0) {
      this.lastCaptureMs = this.now();
      const host = parseHeader(accepted[0]!.envelope).header.sourceHost;
      if (!this.warnedHost && host.toLowerCase() !== this.opts.host.toLowerCase()) {
        this.warnedHost = true;
        log.warn({ envelopeHost: host, notifierHost: this.opts.host }, 'the filter DLL names this DC differently from notifier.host: set notifier.host to the DC\'s DNS name, or the hub lists the DC twice');
      }
    }
    await this.opts.taken.put(changeId, Buffer.from(String(this.now()), 'utf8'));
    this.remove(file);
    return true;
  }

  /** Why an envelope cannot go to the target it names, or undefined when it can. */
  private refusal(e: FrameEntry): string | undefined {
    const target = this.opts.targets.find((t) => t.name === e.target);
    if (!target) {
      return this.opts.disabledTargets.includes(e.target)
        ? `target ${e.target} is disabled in this notifier's YAML`
        : `this notifier has no target named ${e.target} (the DLL's settings are from another YAML: run \`pwsync notifier install\` again)`;
    }
    let keyId: Buffer;
    try {
      keyId = parseHeader(e.envelope).header.keyId;
    } catch (err) {
      return describeError(err);
    }
    if (!keyId.equals(target.recipient.keyId)) {
      return `sealed for key ${keyId.toString('hex')}, but target ${e.target}'s key is ${target.recipient.keyId.toString('hex')} (the DLL has a stale key: run \`pwsync notifier install\` again)`;
    }
    return undefined;
  }

  private setAside(dir: string, name: string, data: Buffer, reason: string): void {
    writeDurable(this.paths.tmp, path.join(dir, name), data);
    writeDurable(this.paths.tmp, path.join(dir, `${name}.reason`), Buffer.from(`${reason}\n`, 'utf8'));
    logEvent(this.opts.log, 6963, { file: name, folder: dir, reason });
  }

  private remove(file: string): void {
    rmSync(file, { force: true });
    syncDir(path.dirname(file));
  }

  private async forgetOldTaken(): Promise<void> {
    const cutoff = this.now() - TAKEN_FOR_MS;
    try {
      for (const k of await this.opts.taken.keys()) {
        const e = await this.opts.taken.get(k);
        if (e && Number(e.value.toString('utf8')) < cutoff) await this.opts.taken.delete(k);
      }
    } catch (e) {
      this.opts.log.warn({ err: describeError(e) }, 'cannot forget old taken change ids');
    }
  }

  /** Reads the DLL's status file (and on Windows the LSA registration) into this source's state. */
  async checkState(): Promise<void> {
    let problem: string | undefined;
    let failures = '';
    try {
      const status = readDllStatus(this.paths.status);
      problem = statusProblem(status, this.paths.status, this.now());
      if (status !== 'missing' && status.failed > 0) {
        failures = `${status.failed} change(s) not captured since the DLL was loaded (last: ${status.lastFailure || 'no detail'})`;
        if (status.failed !== this.failuresSeen) {
          this.opts.log.warn({ failed: status.failed, lastFailure: status.lastFailure }, 'the filter DLL could not capture some password changes (the changes themselves went through): ask those users to change their password again once fixed');
        }
        this.failuresSeen = status.failed;
      }
      if (!problem && (this.opts.platform ?? process.platform) === 'win32') {
        const pk = await notificationPackages(this.opts.run ?? runCommand);
        if ('error' in pk) problem = `cannot read Notification Packages: ${pk.error}`;
        else if (!listsPackage(pk.items, this.opts.dllName)) {
          problem = `HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa\\Notification Packages lists ${pk.items.join(', ') || 'nothing'}, not ${this.opts.dllName}: run \`pwsync notifier install\`, then reboot`;
        }
      }
    } catch (e) {
      problem = `cannot read the filter DLL's status: ${describeError(e)}`;
    }
    this.current = problem ? 'not-registered' : 'running';
    this.detail = problem ?? failures;
    if (problem && problem !== this.lastProblem) logEvent(this.opts.log, 6964, { detail: problem });
    else if (!problem && this.lastProblem) this.opts.log.info('capture on this Windows DC works again: the filter DLL is loaded and enabled');
    this.lastProblem = problem ?? '';
  }
}
