import { readFileSync } from 'node:fs';
import type { NatsBrokerOptions } from '../core/broker-nats.ts';
import { UsageError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { configLocation } from './load.ts';
import type { HubConfig } from './schema.ts';
import { resolveSecret } from '../core/secret-ref.ts';

/**
 * The NATS broker's options from a loaded hub (or connector worker) configuration with `broker.kind: nats`: the CA and
 * client certificate read, the credentials resolved to a Secret. Only types come from
 * core/broker-nats.ts, so the NATS client is not loaded here (the caller imports it when needed).
 */
export function natsBrokerOptions(config: Readonly<Pick<HubConfig, 'broker'>> & { readonly baseDir: string; readonly hub?: { readonly id: string }; readonly worker?: { readonly id: string } }, extra: { create?: boolean; log?: Logger; name?: string } = {}): NatsBrokerOptions {
  const b = config.broker;
  if (b.kind !== 'nats' || !b.servers) {
    throw new UsageError(`${configLocation(config, ['broker', 'kind'])}: the broker is ${b.kind}, not nats; set broker.kind: nats and broker.servers to use NATS JetStream`);
  }
  const read = (at: Array<string>, file: string | undefined): string | undefined => {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file, 'utf8');
    } catch (e) {
      throw new UsageError(`${configLocation(config, at)}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'}); check the path and its permissions`, { cause: e });
    }
  };
  const tls = b.tls
    ? {
      ca: read(['broker', 'tls', 'ca'], b.tls.ca),
      ...(b.tls.cert ? { cert: read(['broker', 'tls', 'cert'], b.tls.cert), key: read(['broker', 'tls', 'key'], b.tls.key) } : {}),
    }
    : undefined;
  return {
    servers: b.servers,
    ...(tls ? { tls } : {}),
    ...(b.user ? { user: b.user } : {}),
    ...(b.credentials ? { password: resolveSecret(b.credentials, configLocation(config, ['broker', 'credentials']), config.baseDir) } : {}),
    prefix: b.prefix,
    replicas: b.replicas,
    retentionMs: b.retention,
    requestTimeoutMs: b.timeout,
    name: config.worker ? `pwsync worker ${config.worker.id}` : `pwsync hub ${config.hub?.id ?? ''}`,
    ...extra,
  };
}
