// Original file: proto/pwsync.proto

import type { Account as _pwsync_v1_Account, Account__Output as _pwsync_v1_Account__Output } from '../../pwsync/v1/Account.ts';
import type { Long } from '@grpc/proto-loader';

export interface ScopeNotice {
  /**
   * 16 bytes; the hub dedupes on it
   */
  'noticeId'?: (Buffer | Uint8Array | string);
  'account'?: (_pwsync_v1_Account | null);
  'changeTimeMs'?: (number | string | Long);
  /**
   * the notifier's name for the target (this hub)
   */
  'target'?: (string);
  /**
   * e.g. "out of scope: member of exclusion group Domain Admins"
   */
  'reason'?: (string);
}

export interface ScopeNotice__Output {
  /**
   * 16 bytes; the hub dedupes on it
   */
  'noticeId': (Buffer);
  'account': (_pwsync_v1_Account__Output | null);
  'changeTimeMs': (number);
  /**
   * the notifier's name for the target (this hub)
   */
  'target': (string);
  /**
   * e.g. "out of scope: member of exclusion group Domain Admins"
   */
  'reason': (string);
}
