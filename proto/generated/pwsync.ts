import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { Account as _pwsync_v1_Account, Account__Output as _pwsync_v1_Account__Output } from './pwsync/v1/Account.ts';
import type { AdminClient as _pwsync_v1_AdminClient, AdminDefinition as _pwsync_v1_AdminDefinition } from './pwsync/v1/Admin.ts';
import type { CaptureState as _pwsync_v1_CaptureState, CaptureState__Output as _pwsync_v1_CaptureState__Output } from './pwsync/v1/CaptureState.ts';
import type { ChangeAck as _pwsync_v1_ChangeAck, ChangeAck__Output as _pwsync_v1_ChangeAck__Output } from './pwsync/v1/ChangeAck.ts';
import type { PasswordSyncClient as _pwsync_v1_PasswordSyncClient, PasswordSyncDefinition as _pwsync_v1_PasswordSyncDefinition } from './pwsync/v1/PasswordSync.ts';
import type { PendingChange as _pwsync_v1_PendingChange, PendingChange__Output as _pwsync_v1_PendingChange__Output } from './pwsync/v1/PendingChange.ts';
import type { PingRequest as _pwsync_v1_PingRequest, PingRequest__Output as _pwsync_v1_PingRequest__Output } from './pwsync/v1/PingRequest.ts';
import type { PingResponse as _pwsync_v1_PingResponse, PingResponse__Output as _pwsync_v1_PingResponse__Output } from './pwsync/v1/PingResponse.ts';
import type { ReportRequest as _pwsync_v1_ReportRequest, ReportRequest__Output as _pwsync_v1_ReportRequest__Output } from './pwsync/v1/ReportRequest.ts';
import type { ReportResponse as _pwsync_v1_ReportResponse, ReportResponse__Output as _pwsync_v1_ReportResponse__Output } from './pwsync/v1/ReportResponse.ts';
import type { ScopeNotice as _pwsync_v1_ScopeNotice, ScopeNotice__Output as _pwsync_v1_ScopeNotice__Output } from './pwsync/v1/ScopeNotice.ts';
import type { SealedChange as _pwsync_v1_SealedChange, SealedChange__Output as _pwsync_v1_SealedChange__Output } from './pwsync/v1/SealedChange.ts';
import type { SubmitRequest as _pwsync_v1_SubmitRequest, SubmitRequest__Output as _pwsync_v1_SubmitRequest__Output } from './pwsync/v1/SubmitRequest.ts';
import type { SubmitResponse as _pwsync_v1_SubmitResponse, SubmitResponse__Output as _pwsync_v1_SubmitResponse__Output } from './pwsync/v1/SubmitResponse.ts';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  pwsync: {
    v1: {
      Account: MessageTypeDefinition<_pwsync_v1_Account, _pwsync_v1_Account__Output>
      /**
       * The admin service: status, retry and account matching are served here in a later issue;
       * `pwsync status` and `pwsync retry` read the hub's state store directly meanwhile.
       */
      Admin: SubtypeConstructor<typeof grpc.Client, _pwsync_v1_AdminClient> & { service: _pwsync_v1_AdminDefinition }
      CaptureState: MessageTypeDefinition<_pwsync_v1_CaptureState, _pwsync_v1_CaptureState__Output>
      ChangeAck: MessageTypeDefinition<_pwsync_v1_ChangeAck, _pwsync_v1_ChangeAck__Output>
      PasswordSync: SubtypeConstructor<typeof grpc.Client, _pwsync_v1_PasswordSyncClient> & { service: _pwsync_v1_PasswordSyncDefinition }
      PendingChange: MessageTypeDefinition<_pwsync_v1_PendingChange, _pwsync_v1_PendingChange__Output>
      PingRequest: MessageTypeDefinition<_pwsync_v1_PingRequest, _pwsync_v1_PingRequest__Output>
      PingResponse: MessageTypeDefinition<_pwsync_v1_PingResponse, _pwsync_v1_PingResponse__Output>
      ReportRequest: MessageTypeDefinition<_pwsync_v1_ReportRequest, _pwsync_v1_ReportRequest__Output>
      ReportResponse: MessageTypeDefinition<_pwsync_v1_ReportResponse, _pwsync_v1_ReportResponse__Output>
      ScopeNotice: MessageTypeDefinition<_pwsync_v1_ScopeNotice, _pwsync_v1_ScopeNotice__Output>
      SealedChange: MessageTypeDefinition<_pwsync_v1_SealedChange, _pwsync_v1_SealedChange__Output>
      SubmitRequest: MessageTypeDefinition<_pwsync_v1_SubmitRequest, _pwsync_v1_SubmitRequest__Output>
      SubmitResponse: MessageTypeDefinition<_pwsync_v1_SubmitResponse, _pwsync_v1_SubmitResponse__Output>
    }
  }
}

