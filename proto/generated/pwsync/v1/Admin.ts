// Original file: proto/pwsync.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { PingRequest as _pwsync_v1_PingRequest, PingRequest__Output as _pwsync_v1_PingRequest__Output } from '../../pwsync/v1/PingRequest.ts';
import type { PingResponse as _pwsync_v1_PingResponse, PingResponse__Output as _pwsync_v1_PingResponse__Output } from '../../pwsync/v1/PingResponse.ts';

/**
 * The admin service: status, retry and account matching are served here in a later issue;
 * `pwsync status` and `pwsync retry` read the hub's state store directly meanwhile.
 */
export interface AdminClient extends grpc.Client {
  Ping(argument: _pwsync_v1_PingRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pwsync_v1_PingResponse__Output>): grpc.ClientUnaryCall;
  Ping(argument: _pwsync_v1_PingRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pwsync_v1_PingResponse__Output>): grpc.ClientUnaryCall;
  Ping(argument: _pwsync_v1_PingRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pwsync_v1_PingResponse__Output>): grpc.ClientUnaryCall;
  Ping(argument: _pwsync_v1_PingRequest, callback: grpc.requestCallback<_pwsync_v1_PingResponse__Output>): grpc.ClientUnaryCall;
  ping(argument: _pwsync_v1_PingRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pwsync_v1_PingResponse__Output>): grpc.ClientUnaryCall;
  ping(argument: _pwsync_v1_PingRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pwsync_v1_PingResponse__Output>): grpc.ClientUnaryCall;
  ping(argument: _pwsync_v1_PingRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pwsync_v1_PingResponse__Output>): grpc.ClientUnaryCall;
  ping(argument: _pwsync_v1_PingRequest, callback: grpc.requestCallback<_pwsync_v1_PingResponse__Output>): grpc.ClientUnaryCall;
  
}

/**
 * The admin service: status, retry and account matching are served here in a later issue;
 * `pwsync status` and `pwsync retry` read the hub's state store directly meanwhile.
 */
export interface AdminHandlers extends grpc.UntypedServiceImplementation {
  Ping: grpc.handleUnaryCall<_pwsync_v1_PingRequest__Output, _pwsync_v1_PingResponse>;
  
}

export interface AdminDefinition extends grpc.ServiceDefinition {
  Ping: MethodDefinition<_pwsync_v1_PingRequest, _pwsync_v1_PingResponse, _pwsync_v1_PingRequest__Output, _pwsync_v1_PingResponse__Output>
}
