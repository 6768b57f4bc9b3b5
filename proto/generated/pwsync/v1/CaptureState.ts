// Original file: proto/pwsync.proto

import type { Long } from '@grpc/proto-loader';

/**
 * What a notifier tells a hub besides changes: that this DC is alive and capturing, and which
 * changes it did not send (out of scope) so the hub's status can say why a password did not arrive.
 * Never a password, sealed or not.
 */
export interface CaptureState {
  /**
   * "samba", "filter-dll", "hook"
   */
  'source'?: (string);
  /**
   * "running", "restarting", "baseline", "not-registered", "stopped"
   */
  'state'?: (string);
  /**
   * why, in words, when not running
   */
  'detail'?: (string);
  /**
   * the last change captured, 0 if none since start
   */
  'lastCaptureMs'?: (number | string | Long);
}

/**
 * What a notifier tells a hub besides changes: that this DC is alive and capturing, and which
 * changes it did not send (out of scope) so the hub's status can say why a password did not arrive.
 * Never a password, sealed or not.
 */
export interface CaptureState__Output {
  /**
   * "samba", "filter-dll", "hook"
   */
  'source': (string);
  /**
   * "running", "restarting", "baseline", "not-registered", "stopped"
   */
  'state': (string);
  /**
   * why, in words, when not running
   */
  'detail': (string);
  /**
   * the last change captured, 0 if none since start
   */
  'lastCaptureMs': (number);
}
