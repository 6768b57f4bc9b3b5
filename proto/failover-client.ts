import { DeliveryError, type DeliveryCode } from './delivery-error.ts';
import type { SubmitClient } from './submit-client.ts';

/**
 * One target served by several hubs that share a broker (broker: nats): the same calls as a
 * SubmitClient, made to the hub that answered last and, when it cannot be reached, to the next
 * one at once. Only "cannot be reached" moves on: a refusal (authentication, a bad request) would
 * be the same at every hub of the target, so it comes back as it is.
 *
 * A batch whose call timed out at one hub may have been made durable there; sent again to the
 * next hub, its changes are dropped as duplicates by change id (the broker's dedupe), so nothing
 * is applied twice.
 */
const UNREACHABLE: ReadonlySet<DeliveryCode> = new Set(['UNAVAILABLE', 'DEADLINE_EXCEEDED', 'CANCELLED', 'RESOURCE_EXHAUSTED']);

export interface FailoverClient extends SubmitClient {
  /** The address calls go to now. */
  current(): string;
}

export function createFailoverClient(hubs: ReadonlyArray<{ address: string; client: SubmitClient }>): FailoverClient {
  if (hubs.length === 0) throw new Error('a target needs at least one hub address');
  let at = 0;

  async function call<T>(fn: (c: SubmitClient) => Promise<T>): Promise<T> {
    const tried: string[] = [];
    let last: DeliveryError | undefined;
    for (let k = 0; k < hubs.length; k++) {
      const i = (at + k) % hubs.length;
      const hub = hubs[i]!;
      try {
        const out = await fn(hub.client);
        at = i;
        return out;
      } catch (e) {
        if (!(e instanceof DeliveryError) || !UNREACHABLE.has(e.code)) throw e;
        last = e;
        tried.push(`${hub.address}: ${e.message}`);
      }
    }
    if (hubs.length === 1) throw last!;
    // A TLS client certificate every hub refused in the handshake is still told as that (6977).
    throw new DeliveryError(last!.code, `none of the target's ${hubs.length} hubs could be reached (${tried.join('; ')})`, {
      cause: last, ...(last!.eventId !== undefined ? { eventId: last!.eventId } : {}),
    });
  }

  return {
    submit: (req) => call((c) => c.submit(req)),
    report: (req) => call((c) => c.report(req)),
    ping: () => call((c) => c.ping()),
    current: () => hubs[at]!.address,
    close() {
      for (const h of hubs) h.client.close();
    },
  };
}
