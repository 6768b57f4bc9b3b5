// Original file: proto/pwsync.proto

import type { Long } from '@grpc/proto-loader';

export interface ReportResponse {
  'hubTimeMs'?: (number | string | Long);
  /**
   * notices stored durably: the notifier may forget them
   */
  'storedNoticeIds'?: (Buffer | Uint8Array | string)[];
  /**
   * Hex ids of the keys this hub opens sealed passwords with: the current one first, then retired
   * ones it still opens. A notifier sealing for none of them holds its changes (event 6987).
   */
  'keyIds'?: (string)[];
}

export interface ReportResponse__Output {
  'hubTimeMs': (number);
  /**
   * notices stored durably: the notifier may forget them
   */
  'storedNoticeIds': (Buffer)[];
  /**
   * Hex ids of the keys this hub opens sealed passwords with: the current one first, then retired
   * ones it still opens. A notifier sealing for none of them holds its changes (event 6987).
   */
  'keyIds': (string)[];
}
