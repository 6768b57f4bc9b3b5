// Original file: proto/pwsync.proto


export interface PingResponse {
  'hubId'?: (string);
  'version'?: (string);
}

export interface PingResponse__Output {
  'hubId': (string);
  'version': (string);
}
