import type { NatsConnection } from '@nats-io/transport-node';
import { NoWorkerError, type WorkerBus } from './worker-bus.ts';
import { natsError } from './broker-nats-errors.ts';
import { PwsyncError } from './errors.ts';

/**
 * Request-reply on a NATS connection for `remote` connectors and their workers. Nothing here is
 * stored by NATS: a request nobody answers fails at once (no responders) or at its timeout, and the
 * hub's durable queue keeps the set-operation for its retry.
 */
export function natsWorkerBus(nc: NatsConnection, prefix: string, servers: readonly string[]): WorkerBus {
  return {
    prefix,
    get maxPayload() {
      return nc.info?.max_payload ?? 1024 * 1024;
    },
    async request(subject, data, timeoutMs) {
      try {
        const m = await nc.request(subject, data, { timeout: timeoutMs });
        return Buffer.from(m.data);
      } catch (e) {
        throw requestError(e, subject, timeoutMs, servers);
      }
    },
    subscribe(subject, onMessage) {
      const sub = nc.subscribe(subject, {
        callback: (err, msg) => {
          if (!err) onMessage(msg.subject, Buffer.from(msg.data));
        },
      });
      return () => sub.unsubscribe();
    },
  };
}

function requestError(e: unknown, subject: string, timeoutMs: number, servers: readonly string[]): Error {
  const chain: Error[] = [];
  for (let c = e; c instanceof Error && chain.length < 5; c = c.cause) chain.push(c);
  // The client names it NoResponders (the class is NoRespondersError).
  if (chain.some((c) => c.name === 'NoResponders' || c.name === 'NoRespondersError')) {
    return new NoWorkerError(`no connector worker listens on ${subject}: start \`pwsync worker --connector NAME\` next to the target`, { cause: e });
  }
  if (chain.some((c) => c.name === 'TimeoutError')) {
    return new PwsyncError(6972, `the connector worker did not answer on ${subject} within ${timeoutMs} ms (it may have stopped, or the target is slow)`, { cause: e, retryable: true });
  }
  return natsError(e, `request on ${subject}`, servers);
}
