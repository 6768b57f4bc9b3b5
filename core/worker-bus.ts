import { PwsyncError } from './errors.ts';

/**
 * Request-reply with connector workers (broker: nats): what a `remote` connector needs of NATS,
 * without depending on the client. Subjects are full NATS subjects (the broker's prefix included).
 */
export interface WorkerBus {
  /** Put in front of every subject (broker.prefix). */
  readonly prefix: string;
  /**
   * One request, one answer. Rejects with a retryable PwsyncError (6972) when no worker listens
   * or none answers within `timeoutMs`.
   */
  request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Buffer>;
  /** Every message on `subject` (a `*` wildcard allowed) until the returned function is called. */
  subscribe(subject: string, onMessage: (subject: string, data: Buffer) => void): () => void;
  /** The largest message NATS takes. */
  readonly maxPayload: number;
}

/**
 * No connector worker listened: the request reached nobody, so nothing was attempted on the
 * target. The hub retries it without counting an attempt, so a worker that is down for longer
 * than its connector's retries does not turn its operations into failures (6941): they wait.
 */
export class NoWorkerError extends PwsyncError {
  readonly attempted = false;

  constructor(message: string, options?: { cause?: unknown }) {
    super(6972, message, { ...options, retryable: true });
    this.name = 'NoWorkerError';
  }
}
