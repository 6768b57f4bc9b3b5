import type { AccountRef } from '../core/extension.ts';

/**
 * Which accounts a target receives. PCNS forwards members (nested membership counts, the primary
 * group too) of the target's inclusion group who are not in its exclusion group. A decision is
 * never silent: "not sent" carries the reason the hub's status will show. When the scope cannot be
 * decided (a configured group does not exist, the directory does not answer) `decide` throws
 * ScopeUnavailable and the change waits, sealed, instead of being filtered.
 */
export type ScopeDecision = { send: true } | { send: false; reason: string };

export interface Scope {
  decide(account: AccountRef, target: string): Promise<ScopeDecision>;
  close?(): Promise<void>;
}

/** The scope could not be decided now; the message says what to fix. Retried with backoff. */
export class ScopeUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ScopeUnavailable';
  }
}

export const includeAll: Scope = {
  decide: () => Promise.resolve({ send: true }),
};
