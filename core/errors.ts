import type { EventId } from './events.ts';
import { EVENTS } from './events.ts';

/**
 * The one error type a set-operation can end in. Whether it is retried is a field, never a guess
 * from the message; the event id says what an admin reads in the log and in `pwsync status`.
 */
export class PwsyncError extends Error {
  readonly eventId: EventId;
  readonly retryable: boolean;

  constructor(eventId: EventId, message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PwsyncError';
    this.eventId = eventId;
    this.retryable = options?.retryable ?? EVENTS[eventId].retryable;
  }
}

/** Bad input from an admin or a caller: what is wrong, where, and how to fix it. */
export class UsageError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UsageError';
  }
}

export function isPwsyncError(e: unknown): e is PwsyncError {
  return e instanceof PwsyncError;
}

/** A message safe to log for any thrown value (never the value itself, which may hold anything). */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return `non-error thrown (${typeof e})`;
}
