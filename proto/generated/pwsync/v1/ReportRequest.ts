// Original file: proto/pwsync.proto

import type { CaptureState as _pwsync_v1_CaptureState, CaptureState__Output as _pwsync_v1_CaptureState__Output } from '../../pwsync/v1/CaptureState.ts';
import type { ScopeNotice as _pwsync_v1_ScopeNotice, ScopeNotice__Output as _pwsync_v1_ScopeNotice__Output } from '../../pwsync/v1/ScopeNotice.ts';
import type { PendingChange as _pwsync_v1_PendingChange, PendingChange__Output as _pwsync_v1_PendingChange__Output } from '../../pwsync/v1/PendingChange.ts';
import type { Long } from '@grpc/proto-loader';

export interface ReportRequest {
  'notifierId'?: (string);
  /**
   * the DC's domain (DNS name)
   */
  'domain'?: (string);
  /**
   * the DC's host name
   */
  'sourceDc'?: (string);
  'capture'?: (_pwsync_v1_CaptureState)[];
  /**
   * At most 1000 notices per call (MAX_REPORT_NOTICES in proto/service.ts): a hub refuses a longer
   * list with INVALID_ARGUMENT naming the limit; a notifier with more sends them in several reports.
   */
  'notices'?: (_pwsync_v1_ScopeNotice)[];
  /**
   * the notifier's clock, to name a clock skew
   */
  'sentTimeMs'?: (number | string | Long);
  /**
   * changes queued for this hub at the notifier
   */
  'queued'?: (number);
  /**
   * Which accounts those queued changes are for (the oldest first, at most 1,000); never an envelope.
   */
  'pending'?: (_pwsync_v1_PendingChange)[];
  /**
   * queued changes beyond the list
   */
  'pendingOmitted'?: (number);
  /**
   * hex key id of the public key the notifier seals for this hub
   */
  'sealingKeyId'?: (string);
}

export interface ReportRequest__Output {
  'notifierId': (string);
  /**
   * the DC's domain (DNS name)
   */
  'domain': (string);
  /**
   * the DC's host name
   */
  'sourceDc': (string);
  'capture': (_pwsync_v1_CaptureState__Output)[];
  /**
   * At most 1000 notices per call (MAX_REPORT_NOTICES in proto/service.ts): a hub refuses a longer
   * list with INVALID_ARGUMENT naming the limit; a notifier with more sends them in several reports.
   */
  'notices': (_pwsync_v1_ScopeNotice__Output)[];
  /**
   * the notifier's clock, to name a clock skew
   */
  'sentTimeMs': (number);
  /**
   * changes queued for this hub at the notifier
   */
  'queued': (number);
  /**
   * Which accounts those queued changes are for (the oldest first, at most 1,000); never an envelope.
   */
  'pending': (_pwsync_v1_PendingChange__Output)[];
  /**
   * queued changes beyond the list
   */
  'pendingOmitted': (number);
  /**
   * hex key id of the public key the notifier seals for this hub
   */
  'sealingKeyId': (string);
}
