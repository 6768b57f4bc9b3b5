import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Redaction is the second line of defence: passwords live in `Secret`, which prints
 * `[REDACTED]`; these paths catch a raw value that slipped into a log object by another name.
 */
const REDACT = [
  'password', 'newPassword', 'oldPassword', 'secret', 'clear', 'plaintext',
  '*.password', '*.newPassword', '*.oldPassword', '*.secret', '*.clear', '*.plaintext',
  'bindPassword', '*.bindPassword', 'authorization', '*.authorization',
];

export interface LogOptions {
  level?: string;
  /** A file to append to; standard output when absent. */
  file?: string;
  name?: string;
  /** Write each line before returning: for a short-lived command whose lines must not be lost at exit. */
  sync?: boolean;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const destination = opts.file
    ? pino.destination({ dest: opts.file, mkdir: true, sync: opts.sync ?? false })
    : pino.destination({ fd: 1, sync: opts.sync ?? false });
  return pino({
    name: opts.name ?? 'pwsync',
    level: opts.level ?? 'info',
    redact: { paths: REDACT, censor: '[REDACTED]' },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  }, destination);
}

/** A logger that writes nothing, for library use and tests that assert on return values. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
