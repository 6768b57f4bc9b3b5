// Original file: proto/pwsync.proto

import type { Account as _pwsync_v1_Account, Account__Output as _pwsync_v1_Account__Output } from '../../pwsync/v1/Account.ts';
import type { Long } from '@grpc/proto-loader';

export interface SealedChange {
  /**
   * 16 random bytes, unique per change; the hub dedupes on it
   */
  'changeId'?: (Buffer | Uint8Array | string);
  /**
   * DNS name of the account's domain
   */
  'domain'?: (string);
  /**
   * host name of the DC where the change was captured
   */
  'sourceDc'?: (string);
  'account'?: (_pwsync_v1_Account | null);
  /**
   * when the DC committed the change, ms since the epoch
   */
  'changeTimeMs'?: (number | string | Long);
  /**
   * the envelope; its header must repeat fields 1-5
   */
  'sealedPassword'?: (Buffer | Uint8Array | string);
}

export interface SealedChange__Output {
  /**
   * 16 random bytes, unique per change; the hub dedupes on it
   */
  'changeId': (Buffer);
  /**
   * DNS name of the account's domain
   */
  'domain': (string);
  /**
   * host name of the DC where the change was captured
   */
  'sourceDc': (string);
  'account': (_pwsync_v1_Account__Output | null);
  /**
   * when the DC committed the change, ms since the epoch
   */
  'changeTimeMs': (number);
  /**
   * the envelope; its header must repeat fields 1-5
   */
  'sealedPassword': (Buffer);
}
