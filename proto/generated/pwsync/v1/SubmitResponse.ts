// Original file: proto/pwsync.proto

import type { ChangeAck as _pwsync_v1_ChangeAck, ChangeAck__Output as _pwsync_v1_ChangeAck__Output } from '../../pwsync/v1/ChangeAck.ts';

export interface SubmitResponse {
  /**
   * one per change, in request order
   */
  'acks'?: (_pwsync_v1_ChangeAck)[];
}

export interface SubmitResponse__Output {
  /**
   * one per change, in request order
   */
  'acks': (_pwsync_v1_ChangeAck__Output)[];
}
