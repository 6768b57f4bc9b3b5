import { EVENTS, type EventId } from '../core/events.ts';
import type { Logger } from '../core/log.ts';

const LEVEL = { info: 'info', warning: 'warn', error: 'error' } as const;

/**
 * Logs an event of the catalogue at its severity, with `eventId` as a field an admin filters on.
 * `quiet` logs it at debug instead: a repeat that would flood the log.
 */
export function logEvent(log: Logger, eventId: EventId, fields: Record<string, unknown>, opts: { quiet?: boolean } = {}): void {
  const level = opts.quiet ? 'debug' : LEVEL[EVENTS[eventId].severity];
  log[level]({ eventId, ...fields }, EVENTS[eventId].text);
}
