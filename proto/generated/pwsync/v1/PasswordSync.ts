// Original file: proto/pwsync.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { ReportRequest as _pwsync_v1_ReportRequest, ReportRequest__Output as _pwsync_v1_ReportRequest__Output } from '../../pwsync/v1/ReportRequest.ts';
import type { ReportResponse as _pwsync_v1_ReportResponse, ReportResponse__Output as _pwsync_v1_ReportResponse__Output } from '../../pwsync/v1/ReportResponse.ts';
import type { SubmitRequest as _pwsync_v1_SubmitRequest, SubmitRequest__Output as _pwsync_v1_SubmitRequest__Output } from '../../pwsync/v1/SubmitRequest.ts';
import type { SubmitResponse as _pwsync_v1_SubmitResponse, SubmitResponse__Output as _pwsync_v1_SubmitResponse__Output } from '../../pwsync/v1/SubmitResponse.ts';

export interface PasswordSyncClient extends grpc.Client {
  /**
   * Liveness, capture state and out-of-scope notices; authenticated and authorized like Submit.
   */
  Report(argument: _pwsync_v1_ReportRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pwsync_v1_ReportResponse__Output>): grpc.ClientUnaryCall;
  Report(argument: _pwsync_v1_ReportRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pwsync_v1_ReportResponse__Output>): grpc.ClientUnaryCall;
  Report(argument: _pwsync_v1_ReportRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pwsync_v1_ReportResponse__Output>): grpc.ClientUnaryCall;
  Report(argument: _pwsync_v1_ReportRequest, callback: grpc.requestCallback<_pwsync_v1_ReportResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Liveness, capture state and out-of-scope notices; authenticated and authorized like Submit.
   */
  report(argument: _pwsync_v1_ReportRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pwsync_v1_ReportResponse__Output>): grpc.ClientUnaryCall;
  report(argument: _pwsync_v1_ReportRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pwsync_v1_ReportResponse__Output>): grpc.ClientUnaryCall;
  report(argument: _pwsync_v1_ReportRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pwsync_v1_ReportResponse__Output>): grpc.ClientUnaryCall;
  report(argument: _pwsync_v1_ReportRequest, callback: grpc.requestCallback<_pwsync_v1_ReportResponse__Output>): grpc.ClientUnaryCall;
  
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
   * Liveness, capture state and out-of-scope notices; authenticated and authorized like Submit.
   */
  Report: grpc.handleUnaryCall<_pwsync_v1_ReportRequest__Output, _pwsync_v1_ReportResponse>;
  
  /**
   * A batch of sealed changes in, one acknowledgement per change out. A call that fails as a
   * whole (unavailable, deadline) means nothing in it was acknowledged: retry the whole batch.
   */
  Submit: grpc.handleUnaryCall<_pwsync_v1_SubmitRequest__Output, _pwsync_v1_SubmitResponse>;
  
}

export interface PasswordSyncDefinition extends grpc.ServiceDefinition {
  Report: MethodDefinition<_pwsync_v1_ReportRequest, _pwsync_v1_ReportResponse, _pwsync_v1_ReportRequest__Output, _pwsync_v1_ReportResponse__Output>
  Submit: MethodDefinition<_pwsync_v1_SubmitRequest, _pwsync_v1_SubmitResponse, _pwsync_v1_SubmitRequest__Output, _pwsync_v1_SubmitResponse__Output>
}
