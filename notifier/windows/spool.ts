import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { spoolFileName } from './frame.ts';

/**
 * The spool folder (registry `SpoolDir`): the DLL writes a frame to `tmp\`, flushes it and moves
 * it into `new\`; the pipe server (pwsync-pipe.exe) does the same for a frame it acknowledges. The drain takes
 * `new\` in name order; a frame it cannot read goes to `bad\`, one it cannot queue for a target
 * to `aside\`, each with a `.reason` file beside it. `status.txt` is the DLL's own report.
 *
 * The DLL creates `tmp\` and `new\` with the DACL `D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)` (SYSTEM
 * and Administrators only); the folders the notifier creates inherit the spool folder's DACL, so
 * `pwsync notifier install` creates the spool folder itself with that DACL.
 */
export interface SpoolPaths {
  root: string;
  tmp: string;
  new: string;
  bad: string;
  aside: string;
  status: string;
}

export function spoolPaths(root: string): SpoolPaths {
  return {
    root,
    tmp: path.join(root, 'tmp'),
    new: path.join(root, 'new'),
    bad: path.join(root, 'bad'),
    aside: path.join(root, 'aside'),
    status: path.join(root, 'status.txt'),
  };
}

/**
 * Writes a file so that it appears whole or not at all: a unique file in `tmpDir`, flushed
 * (FlushFileBuffers on Windows), then renamed to `dest` (MoveFileEx, replacing: a frame that is
 * already there holds the same change). On POSIX the folder is synced too, so the rename is durable.
 */
export function writeDurable(tmpDir: string, dest: string, data: Buffer): void {
  const tmp = path.join(tmpDir, `${path.basename(dest)}.${randomBytes(6).toString('hex')}.node.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    // The folders are made once, not checked per change (each call costs under Wine and on NTFS).
    mkdirSync(tmpDir, { recursive: true, mode: 0o700 });
    fd = openSync(tmp, 'wx', 0o600);
  }
  try {
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(tmp, dest);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      mkdirSync(path.dirname(dest), { recursive: true, mode: 0o700 });
      renameSync(tmp, dest);
    }
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  syncDir(path.dirname(dest));
}

/** Makes a frame durable in `<root>\new` under its change's name; returns the file name. */
export function spoolFrame(paths: SpoolPaths, frame: Buffer, changeTime: number, changeId: Buffer): string {
  const name = spoolFileName(changeTime, changeId);
  writeDurable(paths.tmp, path.join(paths.new, name), frame);
  return name;
}

export function syncDir(dir: string): void {
  if (process.platform === 'win32') return; // a folder cannot be opened for flushing; MoveFileEx is the barrier
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
