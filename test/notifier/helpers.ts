import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import type { Logger } from '../../core/log.ts';
import { testDir } from '../lib/dirs.ts';

/** A fresh folder under the test root; short, so Unix socket paths inside it stay short. */
export function tempDir(): string {
  return testDir('ntf');
}

export interface LogLine {
  level: number;
  msg: string;
  eventId?: number;
  [k: string]: unknown;
}

/** A logger whose lines a test can read back (debug and up). */
export function capturingLog(): { log: Logger; lines: LogLine[]; events: (id: number) => LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => { lines.push(JSON.parse(s) as LogLine); } });
  return { log, lines, events: (id) => lines.filter((l) => l.eventId === id) };
}

export const WARN = 40;

/** Polls `check` until it returns a truthy value; fails after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}
