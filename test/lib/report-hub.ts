import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { stringify } from 'yaml';
import type { DomainConfig } from '../../config/schema.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import type { Broker } from '../../core/broker.ts';
import { generateTlsMaterial } from '../../core/tls-gen.ts';
import { createReportHandler, DcRegistry } from '../../hub/dc-registry.ts';
import type { DomainAuthorizer } from '../../hub/ingest.ts';
import { hubDatabase } from '../../hub/service.ts';
import {
  createHubServer, createSubmitClient, type ClientAuthenticator, type HubServer, type ServerAuthenticator, type SubmitClient,
} from '../../proto/channel.ts';

/**
 * A hub that takes reports, for the DC registry's tests: the real Report handler, registry and
 * gRPC server over TLS, with the broker file where `pwsync status --config <hubConfig>` reads it.
 * The caller's principal comes from the call's `x-test-principal` metadata: a stand-in for the
 * Kerberos authenticator (proto/kerberos.ts), which the DC check does not depend on.
 */
export interface ReportHub {
  readonly address: string;
  readonly caFile: string;
  readonly hubConfig: string;
  readonly broker: Broker;
  readonly registry: DcRegistry;
  /** A client that calls as `principal`, each call bounded by `timeoutMs` (default 10 s). */
  client(principal: string, timeoutMs?: number): SubmitClient;
  stop(): Promise<void>;
}

export const PRINCIPAL_HEADER = 'x-test-principal';

const claimedPrincipal: ServerAuthenticator = {
  authenticate: async (md, peer) => {
    const principal = md.get(PRINCIPAL_HEADER)[0];
    return typeof principal === 'string' ? { principal, mechanism: 'kerberos', peer } : { principal: 'anonymous@tls', mechanism: 'tls', peer };
  },
};

const claiming = (principal: string): ClientAuthenticator => ({
  start: async () => {
    const metadata = new grpc.Metadata();
    metadata.set(PRINCIPAL_HEADER, principal);
    return { metadata, verifyReply: async () => {} };
  },
});

export async function startReportHub(opts: { dir: string; domains: DomainConfig[]; authorizer: DomainAuthorizer; log: Logger; now?: () => number }): Promise<ReportHub> {
  const dataDir = path.join(opts.dir, 'data');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const tls = await generateTlsMaterial({ hosts: ['localhost', '127.0.0.1'] });
  const caFile = path.join(opts.dir, 'ca.pem');
  writeFileSync(caFile, tls.caCertPem);
  const hubConfig = path.join(opts.dir, 'hub.yaml');
  writeFileSync(hubConfig, stringify({
    hub: { id: 'hub1', listen: '127.0.0.1:0', tls: { cert: 'hub.crt', key: 'hub.key' }, keys: ['hub1.key'], dataDir },
    domains: opts.domains.map((d) => ({ name: d.name, dcSilentAfter: `${d.dcSilentAfter}ms` })),
  }));
  const broker = openSqliteBroker({ file: hubDatabase({ hub: { dataDir } } as Parameters<typeof hubDatabase>[0]), groupCommitMs: 2 });
  const registry = await DcRegistry.open(broker, opts.log, opts.now);
  let server: HubServer | undefined;
  try {
    server = await createHubServer({
      listen: '127.0.0.1:0', tlsCert: Buffer.from(tls.certPem), tlsKey: Buffer.from(tls.keyPem), maxMessageBytes: 4 * 1024 * 1024,
      auth: claimedPrincipal, hubId: 'hub1', log: opts.log,
      submit: async () => [],
      report: createReportHandler({ domains: opts.domains, authorizer: opts.authorizer, registry, log: opts.log, clockToleranceMs: 300_000, ...(opts.now ? { now: opts.now } : {}) }),
    });
  } catch (e) {
    await broker.close();
    throw e;
  }
  const address = `127.0.0.1:${server.port}`;
  const clients: SubmitClient[] = [];
  const running = server;
  return {
    address, caFile, hubConfig, broker, registry,
    client: (principal, timeoutMs = 10_000) => {
      const c = createSubmitClient({ address, ca: Buffer.from(tls.caCertPem), serverName: 'localhost', auth: claiming(principal), timeoutMs });
      clients.push(c);
      return c;
    },
    stop: async () => {
      for (const c of clients) c.close();
      await running.close(1000);
      await broker.close();
    },
  };
}
