/**
 * A change time is ms since the epoch as a DC or a hook states it: data from outside, trusted only
 * within the receiver's clock. One stamped in the future would win latest-wins against every real
 * change of that person until that time (6919 for each), so it is refused beyond the receiver's
 * clock plus a tolerance (event 6974). One in the past is accepted: latest-wins makes it lose to
 * anything newer already applied (6919), and it can freeze no one.
 */

/** The largest time a JavaScript Date holds (±8.64e15 ms); past it, toISOString throws. */
const DATE_LIMIT_MS = 8.64e15;

/** A time for a message or a table: ISO 8601 when a Date can hold it, else the raw number. */
export function formatTime(ms: number | undefined): string {
  if (ms === undefined || ms === null) return '-';
  if (typeof ms !== 'number' || !Number.isFinite(ms) || Math.abs(ms) > DATE_LIMIT_MS) return `${String(ms)} (not a valid time)`;
  return new Date(ms).toISOString();
}

/** A readable length of time: 42s, 12m, 3h, 9d. */
export function formatSkew(ms: number): string {
  const s = Math.round(ms / 1000);
  if (Math.abs(s) < 120) return `${s}s`;
  if (Math.abs(s) < 7200) return `${Math.round(s / 60)}m`;
  if (Math.abs(s) < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

/**
 * Why a change time cannot be accepted at `now` with `toleranceMs`, or undefined when it can: not
 * a positive whole number of ms, or beyond the clock plus the tolerance (`skewMs` says by how much
 * it is ahead of the clock).
 */
export function changeTimeProblem(changeTime: unknown, now: number, toleranceMs: number): { reason: string; skewMs?: number } | undefined {
  if (typeof changeTime !== 'number' || !Number.isSafeInteger(changeTime) || changeTime <= 0) {
    return { reason: `change time ${String(changeTime)} is not a positive whole number of ms since the epoch` };
  }
  const skewMs = changeTime - now;
  if (skewMs > toleranceMs) {
    return {
      skewMs,
      reason: `change time ${formatTime(changeTime)} is ${formatSkew(skewMs)} ahead of this clock (${formatTime(now)}), beyond the clock tolerance of ${formatSkew(toleranceMs)}: set the DC's clock right (NTP); the person changes the password again once it is`,
    };
  }
  return undefined;
}
