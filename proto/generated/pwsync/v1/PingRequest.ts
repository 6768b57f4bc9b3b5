// Original file: proto/pwsync.proto


export interface PingRequest {
}

export interface PingRequest__Output {
}
