import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';

/**
 * The authentication seam of the channel. TLS always protects the bytes and proves the hub's
 * certificate; these interfaces add who the caller is and, for mutual authentication, proof that
 * the answer came from the hub the caller meant. Kerberos (proto/kerberos.ts) plugs in here: each
 * call starts a fresh client context whose AP-REQ goes in the call's metadata; the server accepts
 * it in `authenticate()` and returns the AP-REP through `replyMetadata()`; the client checks that in
 * the same call's `verifyReply()` before it believes any acknowledgement. A TLS client certificate
 * (proto/certificate.ts) is checked in the handshake; the server reads the DC's name from it.
 */
export interface CallerIdentity {
  /**
   * Who called: a Kerberos principal (`DC1$@PWSYNC.TEST`), the DC's DNS name from its client
   * certificate (`dc1.pwsync.test`), or 'anonymous@tls' with TLS alone.
   */
  principal: string;
  mechanism: 'tls' | 'kerberos' | 'certificate';
  /** The DC name in the client certificate, when the caller also authenticated by Kerberos. */
  certificate?: string;
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
  /**
   * Resolves the caller, or rejects (a HubRefusal says which status; anything else is
   * UNAUTHENTICATED). `certificate` is the client certificate the TLS handshake verified, if any.
   */
  authenticate(metadata: grpc.Metadata, peer: string, certificate?: PeerCertificate): Promise<CallerIdentity>;
  /** Initial metadata to answer an authenticated call with (the mutual-authentication token). */
  replyMetadata?(identity: CallerIdentity): grpc.Metadata;
}

export const TLS_ANONYMOUS = 'anonymous@tls';

/**
 * TLS alone, for both ends: the client sends nothing and expects nothing beyond the hub's
 * certificate (and its own client certificate, if it has one, in the handshake); the server
 * accepts every caller that completed the handshake.
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
