// Original file: proto/pwsync.proto

import type { Long } from '@grpc/proto-loader';

export interface ReportResponse {
  'hubTimeMs'?: (number | string | Long);
  /**
   * notices stored durably: the notifier may forget them
   */
  'storedNoticeIds'?: (Buffer | Uint8Array | string)[];
}

export interface ReportResponse__Output {
  'hubTimeMs': (number);
  /**
   * notices stored durably: the notifier may forget them
   */
  'storedNoticeIds': (Buffer)[];
}
