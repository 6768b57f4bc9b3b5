/**
 * The notifier→hub channel: gRPC over TLS, with an authentication seam for Kerberos. Hub and
 * notifier import this file only; the rest of proto/ is its implementation.
 */
export { createHubServer, type HubServer, type HubServerOptions } from './hub-server.ts';
export { createSubmitClient, type SubmitClient, type SubmitClientOptions } from './submit-client.ts';
export { createFailoverClient, type FailoverClient } from './failover-client.ts';
export { DeliveryError, type DeliveryCode } from './delivery-error.ts';
export { HubRefusal, REFUSALS, type Refusal } from './refusal.ts';
export {
  tlsOnly, tlsOnlyClient, tlsOnlyServer, TLS_ANONYMOUS,
  type CallerIdentity, type ClientAuthenticator, type ServerAuthenticator,
} from './auth.ts';
export type { ChangeAck, ChangeAck__Output } from './generated/pwsync/v1/ChangeAck.ts';
export type { SealedChange, SealedChange__Output } from './generated/pwsync/v1/SealedChange.ts';
export type { SubmitRequest, SubmitRequest__Output } from './generated/pwsync/v1/SubmitRequest.ts';
export type { Account, Account__Output } from './generated/pwsync/v1/Account.ts';
export { certificateAndKerberosServer, certificateServer, dcNameOf } from './certificate.ts';
export {
  configureKerberosProcess, kerberosClient, kerberosServer, loadKerberos,
  type KerberosClientOptions, type KerberosProcessSettings, type KerberosServerOptions,
} from './kerberos.ts';
export { spnOf } from './kerberos-explain.ts';
