// Original file: proto/pwsync.proto


// Original file: proto/pwsync.proto

export const _pwsync_v1_ChangeAck_Status = {
  STATUS_UNSPECIFIED: 'STATUS_UNSPECIFIED',
  /**
   * stored durably at the hub: the notifier may forget it
   */
  ACCEPTED_DURABLE: 'ACCEPTED_DURABLE',
  /**
   * the hub already has this change id: forget it too
   */
  DUPLICATE: 'DUPLICATE',
  /**
   * never acceptable (reason says why): do not retry it
   */
  REJECTED: 'REJECTED',
} as const;

export type _pwsync_v1_ChangeAck_Status =
  | 'STATUS_UNSPECIFIED'
  | 0
  /**
   * stored durably at the hub: the notifier may forget it
   */
  | 'ACCEPTED_DURABLE'
  | 1
  /**
   * the hub already has this change id: forget it too
   */
  | 'DUPLICATE'
  | 2
  /**
   * never acceptable (reason says why): do not retry it
   */
  | 'REJECTED'
  | 3

export type _pwsync_v1_ChangeAck_Status__Output = typeof _pwsync_v1_ChangeAck_Status[keyof typeof _pwsync_v1_ChangeAck_Status]

export interface ChangeAck {
  'changeId'?: (Buffer | Uint8Array | string);
  'status'?: (_pwsync_v1_ChangeAck_Status);
  'reason'?: (string);
}

export interface ChangeAck__Output {
  'changeId': (Buffer);
  'status': (_pwsync_v1_ChangeAck_Status__Output);
  'reason': (string);
}
