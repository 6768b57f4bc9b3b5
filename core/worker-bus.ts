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
