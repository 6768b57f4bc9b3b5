// Original file: proto/pwsync.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { SubmitRequest as _pwsync_v1_SubmitRequest, SubmitRequest__Output as _pwsync_v1_SubmitRequest__Output } from '../../pwsync/v1/SubmitRequest.ts';
import type { SubmitResponse as _pwsync_v1_SubmitResponse, SubmitResponse__Output as _pwsync_v1_SubmitResponse__Output } from '../../pwsync/v1/SubmitResponse.ts';

export interface PasswordSyncClient extends grpc.Client {
  /**
   * A batch of sealed changes in, one acknowledgement per change out. A call that fails as a
   * whole (unavailable, deadline) means nothing in it was acknowledged: retry the whole batch.
   */
  Submit(argument: _pwsync_v1_SubmitRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pwsync_v1_SubmitResponse__Output>): grpc.ClientUnaryCall;
  Submit(argument: _pwsync_v1_SubmitRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pwsync_v1_SubmitResponse__Output>): grpc.ClientUnaryCall;
  Submit(argument: _pwsync_v1_SubmitRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pwsync_v1_SubmitResponse__Output>): grpc.ClientUnaryCall;
  Submit(argument: _pwsync_v1_SubmitRequest, callback: grpc.requestCallback<_pwsync_v1_SubmitResponse__Output>): grpc.ClientUnaryCall;
  /**
   * A batch of sealed changes in, one acknowledgement per change out. A call that fails as a
   * whole (unavailable, deadline) means nothing in it was acknowledged: retry the whole batch.
   */
  submit(argument: _pwsync_v1_SubmitRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pwsync_v1_SubmitResponse__Output>): grpc.ClientUnaryCall;
  submit(argument: _pwsync_v1_SubmitRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pwsync_v1_SubmitResponse__Output>): grpc.ClientUnaryCall;
  submit(argument: _pwsync_v1_SubmitRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pwsync_v1_SubmitResponse__Output>): grpc.ClientUnaryCall;
  submit(argument: _pwsync_v1_SubmitRequest, callback: grpc.requestCallback<_pwsync_v1_SubmitResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface PasswordSyncHandlers extends grpc.UntypedServiceImplementation {
  /**
   * A batch of sealed changes in, one acknowledgement per change out. A call that fails as a
   * whole (unavailable, deadline) means nothing in it was acknowledged: retry the whole batch.
   */
  Submit: grpc.handleUnaryCall<_pwsync_v1_SubmitRequest__Output, _pwsync_v1_SubmitResponse>;
  
}

export interface PasswordSyncDefinition extends grpc.ServiceDefinition {
  Submit: MethodDefinition<_pwsync_v1_SubmitRequest, _pwsync_v1_SubmitResponse, _pwsync_v1_SubmitRequest__Output, _pwsync_v1_SubmitResponse__Output>
}
