import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { EXAMPLE_EXTENSION, REPO, spawnPwsync, until, type Service } from '../../cli/lab.ts';
import { csv, type Person } from '../../cli/samples.ts';
import { createConnector } from '../../connectors/registry.ts';
import { isObjectSource } from '../../connectors/contract.ts';
import { generateRecipientKeys } from '../../core/keys.ts';
import { silentLogger } from '../../core/log.ts';
import type { Secret } from '../../core/secret.ts';

/**
 * A connector worker's folder for tests: its key pair, its YAML (a CSV target with the scrypt
 * example extension, NATS with its own user), the target file, and its log.
 */
export interface WorkerDir {
  readonly dir: string;
  readonly config: string;
  /** The worker's public key: the hub's connection.publicKey for the connector. */
  readonly publicKey: string;
  readonly privateKey: string;
  readonly targetFile: string;
  readonly log: string;
  start(args?: string[]): Service;
  /** Starts and waits for its "connector worker started" line. */
  startReady(timeoutMs?: number): Promise<Service>;
  /** The stored scrypt hash per account name (login column). */
  hashes(sams: readonly string[]): Promise<Map<string, string | undefined>>;
  /** Rewrites the YAML with another NATS user (its password file). */
  useCredentials(user: string, password: Secret): void;
}

export function createWorkerDir(opts: {
  dir: string; connector: string; people: readonly Person[]; servers: readonly string[]; ca: string;
  user: string; password: Secret; replicas?: number; concurrency?: number;
}): WorkerDir {
  const dir = opts.dir;
  mkdirSync(path.join(dir, 'keys'), { recursive: true, mode: 0o700 });
  const keys = generateRecipientKeys();
  const privateKey = path.join(dir, 'keys', 'worker.key');
  const publicKey = path.join(dir, 'keys', 'worker.pub');
  writeFileSync(privateKey, keys.privatePem, { mode: 0o600 });
  writeFileSync(publicKey, keys.publicPem);
  writeFileSync(path.join(dir, 'nats-ca.pem'), opts.ca);
  const targetFile = path.join(dir, 'target.csv');
  writeFileSync(targetFile, csv(opts.people));
  const config = path.join(dir, 'worker.yaml');
  const log = path.join(dir, 'worker.log');
  const write = (user: string, password: Secret): void => {
    password.use((b) => writeFileSync(path.join(dir, 'nats.pw'), b, { mode: 0o600 }));
    const doc = {
      worker: { id: `${opts.connector}-worker`, keys: ['keys/worker.key'], log: { level: 'info', file: 'worker.log' }, shutdownGrace: '5s' },
      broker: { kind: 'nats', servers: [...opts.servers], tls: { ca: 'nats-ca.pem' }, user, credentials: { fromFile: 'nats.pw' }, replicas: opts.replicas ?? 1 },
      connectors: [{
        name: opts.connector, kind: 'delimited', connection: { path: 'target.csv', anchor: 'id' }, concurrency: opts.concurrency ?? 2,
        timeout: '20s', extension: { module: EXAMPLE_EXTENSION, settings: { attribute: 'pwdHash', cost: 1024 } },
      }],
    };
    writeFileSync(config, `# yaml-language-server: $schema=${path.join(REPO, 'config/schema/worker.schema.json')}\n${stringify(doc)}`);
  };
  write(opts.user, opts.password);
  const start = (args: string[] = []): Service => spawnPwsync(['worker', '--config', config, ...args]);
  return {
    dir, config, publicKey, privateKey, targetFile, log, start,
    useCredentials: write,
    async startReady(timeoutMs = 30_000) {
      const s = start();
      const { readFileSync, existsSync } = await import('node:fs');
      const before = existsSync(log) ? readFileSync(log, 'utf8').length : 0;
      await until('the worker to start', timeoutMs, () => (existsSync(log) && readFileSync(log, 'utf8').slice(before).includes('connector worker started') ? true : undefined), s);
      return s;
    },
    async hashes(sams) {
      const c = createConnector('check', 'delimited', { path: targetFile, anchor: 'id' }, { log: silentLogger(), resolvePath: (p) => path.resolve(dir, p) });
      await c.open();
      try {
        if (!isObjectSource(c)) throw new Error('not an object source');
        const out = new Map<string, string | undefined>();
        for (const sam of sams) {
          const [o] = await c.find('login', sam, true);
          out.set(sam, o?.attributes['pwdHash'] || undefined);
        }
        return out;
      } finally {
        await c.close();
      }
    },
  };
}

/** A nats-server authorization block: the hub's user, and one user per connector worker, limited to its connector's subjects. */
export function natsAuthConf(hub: { user: string; password: string }, workers: ReadonlyArray<{ user: string; password: string; connector: string }>, prefix = 'pwsync'): string {
  const users = [
    `    { user: ${hub.user}, password: "${hub.password}" }`,
    ...workers.map((w) => `    { user: ${w.user}, password: "${w.password}", permissions: { publish: { allow: ["${prefix}.worker.${w.connector}.>"] }, subscribe: { allow: ["${prefix}.worker.${w.connector}.>"] }, allow_responses: true } }`),
  ];
  return `authorization {\n  users = [\n${users.join('\n')}\n  ]\n}\n`;
}
