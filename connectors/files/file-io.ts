import { randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { open, readdir, rename, stat, unlink, chmod, chown } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { TargetUnavailableError } from '../../core/extension.ts';
import { RecordFileFormatError } from './codec.ts';

/**
 * Reading and replacing a record file. Every failure is a retryable TargetUnavailableError that
 * names the path and the fix: a missing file or a permission is something an admin repairs, and
 * the set-operation should then go through on its next attempt.
 */

export type FileEncoding = 'utf8' | 'latin1' | 'utf16le';

/** Changes with any write to the file (in place or by rename): device, inode, size, mtime in ns. */
export function versionOf(s: BigIntStats): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}`;
}

export async function fileVersion(path: string): Promise<string> {
  try {
    return versionOf(await stat(path, { bigint: true }));
  } catch (e) {
    throw ioError(e, path, 'read');
  }
}

export interface FileText {
  readonly text: string;
  /** The file began with a byte-order mark; it is written back. */
  readonly bom: boolean;
  readonly version: string;
}

export async function readText(path: string, encoding: FileEncoding): Promise<FileText> {
  let bytes: Buffer;
  let version: string;
  try {
    const handle = await open(path, 'r');
    try {
      // The version of the bytes we read: a rename over the path after open() does not change them.
      version = versionOf(await handle.stat({ bigint: true }));
      bytes = await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch (e) {
    throw ioError(e, path, 'read');
  }
  const text = decode(bytes, encoding, path);
  const bom = text.startsWith('\uFEFF');
  return { text: bom ? text.slice(1) : text, bom, version };
}

function decode(bytes: Buffer, encoding: FileEncoding, path: string): string {
  if (encoding !== 'utf8') return bytes.toString(encoding);
  try {
    // fatal: a latin1 file read as UTF-8 would otherwise be silently mangled, then written back.
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (e) {
    const line = lineOfFirstInvalidByte(bytes);
    throw new RecordFileFormatError(path, line, 'not valid UTF-8: set `connection.encoding` to the file\'s encoding (latin1, utf16le) or convert the file', { cause: e });
  }
}

function lineOfFirstInvalidByte(bytes: Buffer): number {
  let line = 1;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b === 0x0a) line++;
    const need = b < 0x80 ? 0 : b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1;
    if (need < 0) return line;
    for (let k = 1; k <= need; k++) if (((bytes[i + k] ?? 0) & 0xc0) !== 0x80) return line;
    i += need;
  }
  return line;
}

export function encodeText(text: string, bom: boolean, encoding: FileEncoding): Buffer {
  return Buffer.from((bom ? '\uFEFF' : '') + text, encoding);
}

/**
 * Replaces the file atomically: a temp file in the same folder, written and fsynced, renamed over
 * the file, then the folder fsynced so the rename itself survives a crash. The file keeps its mode
 * (and its owner when we run as root). Returns the new file's version.
 */
export async function writeAtomically(path: string, bytes: Buffer): Promise<string> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let created = false;
  try {
    const before = await stat(path);
    const handle = await open(temp, 'wx', before.mode & 0o7777);
    created = true;
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    // open()'s mode is filtered by the umask; chmod is not.
    await chmod(temp, before.mode & 0o7777);
    if (process.getuid?.() === 0) await chown(temp, before.uid, before.gid);
    await rename(temp, path);
    created = false;
    await syncFolder(dir);
    return versionOf(await stat(path, { bigint: true }));
  } catch (e) {
    if (created) await unlink(temp).catch(() => undefined);
    throw ioError(e, path, 'write');
  }
}

/**
 * Removes temp files that a killed writer left beside the file (`.NAME.PID.HEX.tmp` whose PID is
 * no longer running). The target itself is never torn: the rename is atomic. Returns how many.
 */
export async function removeStaleTemps(path: string): Promise<number> {
  const prefix = `.${basename(path)}.`;
  let removed = 0;
  let names: string[];
  try {
    names = await readdir(dirname(path));
  } catch {
    return 0;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const pid = Number(name.slice(prefix.length).split('.')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || isRunning(pid)) continue;
    await unlink(join(dirname(path), name)).then(() => { removed++; }, () => undefined);
  }
  return removed;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function syncFolder(dir: string): Promise<void> {
  if (process.platform === 'win32') return; // Windows cannot open a folder for fsync; NTFS journals the rename.
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A file system error as a retryable error that names the path and says what to do. */
export function ioError(e: unknown, path: string, action: 'read' | 'write'): TargetUnavailableError {
  if (e instanceof TargetUnavailableError) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const folder = dirname(path);
  const fix = ((): string => {
    switch (code) {
      case 'ENOENT':
      case 'ENOTDIR':
        return `no such file (or its folder ${folder} is missing): restore the file or fix \`connection.path\` in the hub YAML`;
      case 'EACCES':
      case 'EPERM':
        return action === 'read'
          ? 'permission denied: give the hub\'s service account read access to the file'
          : `permission denied: give the hub's service account write access to the file and to its folder ${folder} (the file is replaced by a rename)`;
      case 'EROFS':
        return 'the file system is read-only: remount it read-write';
      case 'ENOSPC':
      case 'EDQUOT':
        return `no space left for a copy of the file in ${folder}: free some space`;
      case 'EISDIR':
        return 'is a folder, not a file: point `connection.path` at the file';
      default:
        return `I/O error${code ? ` (${code})` : ''}: check the disk and file system`;
    }
  })();
  return new TargetUnavailableError(`cannot ${action} ${path}: ${fix}`, { cause: e });
}
