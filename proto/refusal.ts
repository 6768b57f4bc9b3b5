import * as grpc from '@grpc/grpc-js';
import { describeError, isPwsyncError } from '../core/errors.ts';

/**
 * Why a hub refuses a whole call, in the hub's words; the channel turns it into a gRPC status.
 * Per-change refusals are not errors: they are REJECTED acknowledgements.
 */
export const REFUSALS = {
  /** The request cannot be read or breaks the contract: resending it as is cannot help. */
  malformed: grpc.status.INVALID_ARGUMENT,
  /** The caller could not be authenticated. */
  unauthenticated: grpc.status.UNAUTHENTICATED,
  /** The caller is known but may not submit (not a DC of the domain it reports). */
  forbidden: grpc.status.PERMISSION_DENIED,
  /** The hub cannot store right now (state store busy, shutting down): the notifier retries. */
  unavailable: grpc.status.UNAVAILABLE,
  /** The hub does not offer this call. */
  unimplemented: grpc.status.UNIMPLEMENTED,
} as const;

export type Refusal = keyof typeof REFUSALS;

export class HubRefusal extends Error {
  readonly refusal: Refusal;

  constructor(refusal: Refusal, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HubRefusal';
    this.refusal = refusal;
  }
}

export interface CallStatus {
  code: grpc.status;
  details: string;
}

/**
 * The status a failed handler answers with. A retryable PwsyncError means the hub could not store
 * right now (UNAVAILABLE, so the notifier retries); anything unexpected is INTERNAL, which the
 * notifier also retries, since nothing in the batch was acknowledged.
 */
export function statusOf(e: unknown): CallStatus {
  if (e instanceof HubRefusal) return { code: REFUSALS[e.refusal], details: e.message };
  if (isPwsyncError(e) && e.retryable) return { code: grpc.status.UNAVAILABLE, details: e.message };
  return { code: grpc.status.INTERNAL, details: `the hub failed to handle the call: ${describeError(e)}` };
}
