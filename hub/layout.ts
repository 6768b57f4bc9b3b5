import type { HubConfig } from '../config/schema.ts';
import { subjectToken } from '../core/broker.ts';
import type { NatsLayout } from '../core/broker-nats.ts';
import { ackWaitOf } from './dispatcher.ts';
import { opsSubject } from './targets.ts';

/**
 * What the hub keeps in the broker: the streams of changes and set-operations, its KV buckets,
 * and the durable consumers (the resolver, one per connector). Hubs sharing a NATS need all of it
 * before the first starts; names as in hub/resolver.ts, hub/dispatcher.ts, hub/state.ts,
 * hub/service.ts, hub/dc-registry.ts and hub/workers.ts.
 */
export function hubBrokerLayout(config: Pick<HubConfig, 'connectors'>): NatsLayout {
  return {
    streams: ['changes', 'ops'],
    buckets: ['joins', 'operations', 'sync', 'latest', 'claims', 'dcs', 'notices', 'workers', 'audit'],
    consumers: [
      { durable: 'resolver', filter: 'changes.>' },
      ...config.connectors.map((c) => ({ durable: `ops-${subjectToken(c.name)}`, filter: opsSubject(c.name), ackWaitMs: ackWaitOf(c) })),
    ],
  };
}
