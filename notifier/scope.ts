import type { AccountRef } from '../core/extension.ts';

/**
 * Which accounts a target receives. PCNS forwards members (nested membership counts) of the
 * target's inclusion group who are not in its exclusion group; until group scoping lands every
 * account is in scope.
 */
export interface Scope {
  includes(account: AccountRef, target: string): Promise<boolean>;
}

export const includeAll: Scope = {
  includes: () => Promise.resolve(true),
};
