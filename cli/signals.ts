import { reopenLogFile, type Logger } from '../core/log.ts';

/** Signals that stop a service with a drain: systemd and most service managers send SIGTERM, a terminal SIGINT, some SIGQUIT. */
const STOP: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGQUIT'];
/**
 * Signals whose default action would end the process without a drain, but which ask for no stop:
 * SIGHUP (logrotate, `systemctl reload`) reopens the log file; SIGUSR1 (by default Node's inspector)
 * and SIGUSR2 are logged and ignored.
 */
const KEEP_RUNNING: readonly NodeJS.Signals[] = ['SIGHUP', 'SIGUSR1', 'SIGUSR2'];

/**
 * Resolves with the first stop signal; the service then drains and the process exits 0. Until
 * then SIGHUP reopens the log file and the process keeps running.
 */
export function untilSignal(log: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const keep = (s: NodeJS.Signals): void => {
      if (s === 'SIGHUP') {
        const reopened = reopenLogFile(log);
        log.info({ signal: s, reopened }, reopened ? 'log file reopened (SIGHUP)' : 'SIGHUP: logging to standard output, nothing to reopen');
      } else {
        log.info({ signal: s }, 'signal ignored: stop with SIGTERM or SIGINT');
      }
    };
    let stopping = false;
    const stop = (s: NodeJS.Signals): void => {
      if (stopping) {
        log.info({ signal: s }, 'already stopping: the drain goes on (SIGKILL ends it at once, losing nothing acknowledged)');
        return;
      }
      stopping = true;
      resolve(s);
    };
    // Kept while the drain runs too: a repeated or other signal must not cut it short.
    for (const s of STOP) process.on(s, stop);
    for (const s of KEEP_RUNNING) process.on(s, keep);
  });
}
