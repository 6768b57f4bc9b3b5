import type { Broker, Consumer, ConsumerOptions, Delivery } from './broker.ts';
import { describeError, isPwsyncError } from './errors.ts';
import type { Logger } from './log.ts';

/** How long a loop waits after the broker could not be reached before it asks again. */
const PAUSE_MS = 1000;

/**
 * Rides out a networked broker's outage (NATS without a majority, a node restarting): a
 * retryable error (6970) is logged once per outage and answered with a pause, never by leaving the
 * loop, so that a hub whose NATS comes back goes on where it was. Anything else is thrown.
 */
export class BrokerPatience {
  private down = false;

  constructor(private readonly log: Logger, private readonly what: string) {}

  /** A durable consumer, asked again until the broker answers or `signal` aborts (then undefined). */
  async consumer(broker: Broker, durable: string, filter: string, opts: ConsumerOptions | undefined, signal: AbortSignal): Promise<Consumer | undefined> {
    while (!signal.aborted) {
      try {
        const c = await broker.consumer(durable, filter, opts);
        this.up();
        return c;
      } catch (e) {
        await this.outage(e, signal);
      }
    }
    return undefined;
  }

  /** One fetch; during an outage, nothing (after a pause). */
  async fetch(consumer: Consumer, opts: { max: number; expiresMs: number; signal: AbortSignal }): Promise<Delivery[]> {
    try {
      const batch = await consumer.fetch(opts);
      this.up();
      return batch;
    } catch (e) {
      await this.outage(e, opts.signal);
      return [];
    }
  }

  private up(): void {
    if (!this.down) return;
    this.down = false;
    this.log.info({ eventId: 6970 }, `${this.what}: the broker answers again`);
  }

  private async outage(e: unknown, signal: AbortSignal): Promise<void> {
    if (!isPwsyncError(e) || !e.retryable) throw e;
    if (!this.down) this.log.warn({ eventId: e.eventId, err: describeError(e) }, `${this.what}: the broker cannot be reached; waiting for it`);
    else this.log.debug({ err: describeError(e) }, `${this.what}: the broker still cannot be reached`);
    this.down = true;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, PAUSE_MS);
      function done(): void {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
