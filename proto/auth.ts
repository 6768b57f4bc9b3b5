import * as grpc from '@grpc/grpc-js';

/**
 * The authentication seam of the channel. TLS always protects the bytes and proves the hub's
 * certificate; these interfaces add who the caller is and, for mutual authentication, proof that
 * the answer came from the hub the caller meant. Kerberos (proto/kerberos.ts) plugs in here: each
 * call starts a fresh client context whose AP-REQ goes in the call's metadata; the server accepts
 * it in `authenticate()` and returns the AP-REP through `replyMetadata()`; the client checks that in
 * the same call's `verifyReply()` before it believes any acknowledgement.
 */
export interface CallerIdentity {
  /** Who called: a Kerberos principal (`DC1$@PWSYNC.TEST`), or 'anonymous@tls' with TLS alone. */
  principal: string;
  mechanism: 'tls' | 'kerberos';
  /** The caller's network address as gRPC saw it, for logs. */
  peer: string;
  /** The token that proves the hub to the caller (Kerberos AP-REP, base64), sent back in replyMetadata. */
  replyToken?: string;
}

/** One call's authentication: what to send, and how to check the answer's initial metadata. */
export interface ClientCallAuth {
  metadata: grpc.Metadata;
  /** Rejects when the server's initial metadata does not prove the server's identity. */
  verifyReply(initialMetadata: grpc.Metadata): Promise<void>;
}

export interface ClientAuthenticator {
  /** Starts one call's authentication (a fresh token per call). Rejects when no credentials can be had. */
  start(): Promise<ClientCallAuth>;
}

export interface ServerAuthenticator {
  /** Resolves the caller, or rejects (a HubRefusal says which status; anything else is UNAUTHENTICATED). */
  authenticate(metadata: grpc.Metadata, peer: string): Promise<CallerIdentity>;
  /** Initial metadata to answer an authenticated call with (the mutual-authentication token). */
  replyMetadata?(identity: CallerIdentity): grpc.Metadata;
}

export const TLS_ANONYMOUS = 'anonymous@tls';

/**
 * TLS alone, for both ends: the client sends nothing and expects nothing beyond the hub's
 * certificate; the server accepts every caller that completed the handshake, named by its address.
 */
export const tlsOnly: ClientAuthenticator & ServerAuthenticator = {
  start: async () => ({ metadata: new grpc.Metadata(), verifyReply: async () => {} }),
  authenticate: async (_metadata, peer) => ({ principal: TLS_ANONYMOUS, mechanism: 'tls', peer }),
};

export function tlsOnlyClient(): ClientAuthenticator {
  return tlsOnly;
}

export function tlsOnlyServer(): ServerAuthenticator {
  return tlsOnly;
}
