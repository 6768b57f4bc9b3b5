// Original file: proto/pwsync.proto

import type { Account as _pwsync_v1_Account, Account__Output as _pwsync_v1_Account__Output } from '../../pwsync/v1/Account.ts';
import type { Long } from '@grpc/proto-loader';

/**
 * A change queued at the notifier for this hub: who and when, and why it waits if it is held.
 */
export interface PendingChange {
  'account'?: (_pwsync_v1_Account | null);
  'changeTimeMs'?: (number | string | Long);
  'queuedSinceMs'?: (number | string | Long);
  /**
   * empty while queued for delivery; else why it is held
   */
  'held'?: (string);
}

/**
 * A change queued at the notifier for this hub: who and when, and why it waits if it is held.
 */
export interface PendingChange__Output {
  'account': (_pwsync_v1_Account__Output | null);
  'changeTimeMs': (number);
  'queuedSinceMs': (number);
  /**
   * empty while queued for delivery; else why it is held
   */
  'held': (string);
}
