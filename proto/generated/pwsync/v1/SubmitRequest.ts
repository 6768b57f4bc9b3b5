// Original file: proto/pwsync.proto

import type { SealedChange as _pwsync_v1_SealedChange, SealedChange__Output as _pwsync_v1_SealedChange__Output } from '../../pwsync/v1/SealedChange.ts';

export interface SubmitRequest {
  /**
   * the notifier's host name, for logs
   */
  'notifierId'?: (string);
  'changes'?: (_pwsync_v1_SealedChange)[];
}

export interface SubmitRequest__Output {
  /**
   * the notifier's host name, for logs
   */
  'notifierId': (string);
  'changes': (_pwsync_v1_SealedChange__Output)[];
}
