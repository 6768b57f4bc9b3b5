import Database from 'better-sqlite3';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { PwsyncError } from '../core/errors.ts';

const LOCK_FILE = 'hub.lock';
const PID_FILE = 'hub.pid';

export interface DataDirLock {
  release(): void;
}

/**
 * Holds hub.dataDir for this process: one hub per embedded broker. The lock is SQLite's exclusive
 * lock on `hub.lock` (an fcntl lock underneath), which the kernel drops when the process ends, so a
 * hub killed with -9 leaves nothing that blocks the next start. `hub.pid` only names the holder in
 * the refusal; it is never what decides. The broker's own file (hub.db) stays shared, so that
 * `pwsync status` and `pwsync retry` work while the hub runs.
 */
export function lockDataDir(dir: string): DataDirLock {
  const db = new Database(path.join(dir, LOCK_FILE), { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    // The first write in exclusive mode takes the lock and keeps it until the connection closes.
    db.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS holder (pid INTEGER); COMMIT');
  } catch (e) {
    db.close();
    if ((e as { code?: string }).code !== 'SQLITE_BUSY') throw e;
    throw new PwsyncError(6982, `hub.dataDir ${dir} is held by another hub (${holder(dir)}): stop that hub, or give this one its own hub.dataDir; to run several hubs, share NATS JetStream (broker.kind: nats)`);
  }
  const pidFile = path.join(dir, PID_FILE);
  writeFileSync(pidFile, `${process.pid} ${hostname()} ${new Date().toISOString()}\n`, { mode: 0o600 });
  return {
    release: () => {
      if (!db.open) return;
      try {
        if (readFileSync(pidFile, 'utf8').startsWith(`${process.pid} `)) rmSync(pidFile, { force: true });
      } finally {
        db.close();
      }
    },
  };
}

function holder(dir: string): string {
  try {
    const [pid, host, since] = readFileSync(path.join(dir, PID_FILE), 'utf8').trim().split(' ');
    return `PID ${pid} on ${host}, since ${since}`;
  } catch {
    return `its PID is not written yet in ${path.join(dir, PID_FILE)}`;
  }
}
