import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Secret } from '../../core/secret.ts';
import { testDir } from './dirs.ts';

const run = promisify(execFile);
const SCRIPT = path.resolve(import.meta.dirname, '../env/nats.sh');

export interface NatsNode {
  readonly index: number;
  pid: number;
  readonly port: number;
  readonly monitorPort: number;
  readonly storeDir: string;
}

/**
 * A private NATS JetStream (test/env/nats.sh) for one test file: a 3-node cluster (or one server)
 * on loopback, TLS for clients, stores under the run's root (the secrecy scan reads them).
 */
export interface NatsCluster {
  readonly dir: string;
  readonly urls: string[];
  readonly ca: string;
  readonly nodes: NatsNode[];
  /** The `pwsync` user's password (everything allowed), when the default auth.conf is used. */
  password(): Secret;
  /** The `norights` user's password (may connect, may publish nothing). */
  noRightsPassword(): Secret;
  /** kill -9 of node k (1-based); resolves once it is gone. */
  killNode(k: number): Promise<void>;
  /** Starts node k again on its ports and store and waits for /healthz (a clean restart if it stays stuck). */
  startNode(k: number): Promise<void>;
  /** Stops node k cleanly (SIGTERM). */
  stopNode(k: number): Promise<void>;
  /** /healthz of node k: true when JetStream there is current. */
  healthy(k: number): Promise<boolean>;
  stop(): Promise<void>;
}

export interface NatsClusterOptions {
  /** 3 (a cluster, the default) or 1. */
  nodes?: number;
  /** A nats-server authorization/accounts config to use instead of the default users. */
  authConf?: string;
}

export async function startNatsCluster(opts: NatsClusterOptions = {}): Promise<NatsCluster> {
  const dir = testDir('nats');
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (opts.authConf) env['NATS_AUTH_CONF'] = opts.authConf;
  else delete env['NATS_AUTH_CONF'];
  const { stdout } = await run('bash', [SCRIPT, 'start', dir, String(opts.nodes ?? 3)], { env, timeout: 60_000 });
  const vars = parseEnv(stdout);
  const need = (k: string): string => {
    const v = vars.get(k);
    if (v === undefined) throw new Error(`test/env/nats.sh printed no ${k}: ${stdout}`);
    return v;
  };
  const n = Number(need('NATS_NODES'));
  const nodes: NatsNode[] = Array.from({ length: n }, (_, i) => ({
    index: i + 1,
    pid: Number(need(`NATS_N${i + 1}_PID`)),
    port: Number(need(`NATS_N${i + 1}_PORT`)),
    monitorPort: Number(need(`NATS_N${i + 1}_MONITOR`)),
    storeDir: need(`NATS_N${i + 1}_STORE`),
  }));
  const node = (k: number): NatsNode => {
    const found = nodes[k - 1];
    if (!found) throw new Error(`no NATS node ${k}: the cluster has ${n}`);
    return found;
  };
  const secretFile = (key: string) => (): Secret => Secret.adopt(readFileSync(need(key)));
  return {
    dir,
    urls: need('NATS_URLS').split(','),
    ca: readFileSync(need('NATS_CA'), 'utf8'),
    nodes,
    password: secretFile('NATS_PASSWORD_FILE'),
    noRightsPassword: secretFile('NATS_NORIGHTS_PASSWORD_FILE'),
    async killNode(k) {
      const { pid } = node(k);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        return;
      }
      for (let i = 0; i < 200; i++) {
        try {
          process.kill(pid, 0);
        } catch {
          return;
        }
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`NATS node ${k} (pid ${pid}) still runs after SIGKILL`);
    },
    async startNode(k) {
      const { stdout: out } = await run('bash', [SCRIPT, 'start-node', dir, String(k)], { timeout: 120_000 });
      node(k).pid = Number(parseEnv(out).get(`NATS_N${k}_PID`));
    },
    async stopNode(k) {
      await run('bash', [SCRIPT, 'stop-node', dir, String(k)], { timeout: 30_000 });
    },
    async healthy(k) {
      try {
        const r = await fetch(`http://127.0.0.1:${node(k).monitorPort}/healthz`, { signal: AbortSignal.timeout(2000) });
        return r.ok;
      } catch {
        return false;
      }
    },
    async stop() {
      await run('bash', [SCRIPT, 'stop', dir], { timeout: 60_000 });
    },
  };
}

function parseEnv(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}
