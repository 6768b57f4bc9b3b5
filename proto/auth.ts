import * as grpc from '@grpc/grpc-js';

/**
 * The authentication seam of the channel. TLS always protects the bytes and proves the hub's
 * certificate; these interfaces add who the caller is (and, for mutual authentication, proof that
 * the answer came from the hub the caller meant). Kerberos plugs in here: the client puts an
 * AP-REQ for the hub's SPN in `metadata()`, the server accepts it in `authenticate()` and returns
 * the AP-REP in `replyMetadata()`, and the client checks that in `verifyReply()` before it believes
 * any acknowledgement.
 */
export interface CallerIdentity {
  /** Who called: a Kerberos principal, or 'anonymous@tls' when TLS alone is in use. */
  principal: string;
  mechanism: 'tls' | 'kerberos';
  /** The caller's network address as gRPC saw it, for logs. */
  peer: string;
}

export interface ClientAuthenticator {
  /** Metadata to send with one call (a fresh token per call). */
  metadata(): Promise<grpc.Metadata>;
  /** Rejects when the server's initial metadata does not prove the server's identity. */
  verifyReply(initialMetadata: grpc.Metadata): Promise<void>;
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
  metadata: async () => new grpc.Metadata(),
  verifyReply: async () => {},
  authenticate: async (_metadata, peer) => ({ principal: TLS_ANONYMOUS, mechanism: 'tls', peer }),
};

export function tlsOnlyClient(): ClientAuthenticator {
  return tlsOnly;
}

export function tlsOnlyServer(): ServerAuthenticator {
  return tlsOnly;
}
