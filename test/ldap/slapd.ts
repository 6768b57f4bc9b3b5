import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { until } from '../../cli/lab.ts';
import { bindsWith } from '../lib/ldap-checks.ts';

const run = promisify(execFile);
const SCRIPT = path.resolve(import.meta.dirname, '../env/slapd.sh');

/**
 * One private slapd for a test file (test/env/slapd.sh), logging each connection (`-d stats`) so a
 * test can count what reached a port; killed with -9 and restarted on the same ports and data.
 */
export interface Slapd {
  env: Record<string, string>;
  /** uid=…,ou=people,… */
  dnOf(uid: string): string;
  /** A simple bind as the user over ldaps with `password` (adopted and wiped): true, or false on invalid credentials (49). */
  bindsAs(uid: string, password: Buffer): Promise<boolean>;
  /** Connections slapd accepted on a port so far (its log's `ACCEPT … (IP=127.0.0.1:PORT)` lines). */
  accepted(port: number): number;
  /** Deletes an entry as the rootDN (ldapdelete; the password from its file). */
  remove(dn: string): Promise<void>;
  /** SIGKILL; resolves once neither port accepts connections. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

function parseEnv(stdout: string): Record<string, string> {
  return Object.fromEntries(stdout.trim().split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

export async function startSlapd(dir: string, people: number): Promise<Slapd> {
  const { stdout } = await run(SCRIPT, ['start', dir, String(people)], { timeout: 60_000, env: { ...process.env, SLAPD_DEBUG: 'stats' } });
  const env = parseEnv(stdout);
  const need = (k: string): string => {
    const v = env[k];
    if (!v) throw new Error(`test/env/slapd.sh printed no ${k}: ${stdout}`);
    return v;
  };
  const dnOf = (uid: string): string => `uid=${uid},${need('SLAPD_PEOPLE')}`;
  const pid = (): number => Number(readFileSync(path.join(dir, 'slapd.pid'), 'utf8'));
  return {
    env,
    dnOf,
    bindsAs(uid, password) {
      return bindsWith({ url: need('SLAPD_LDAPS_URL'), ca: need('SLAPD_CA') }, dnOf(uid), password);
    },
    accepted(port) {
      const log = readFileSync(path.join(dir, 'slapd.out'), 'utf8');
      return log.split('\n').filter((l) => / ACCEPT from /.test(l) && l.includes(`(IP=127.0.0.1:${port})`)).length;
    },
    async remove(dn) {
      await run('ldapdelete', ['-x', '-H', need('SLAPD_LDAPS_URL'), '-D', need('SLAPD_ROOT_DN'), '-y', need('SLAPD_ROOT_PASSWORD_FILE'), dn], {
        timeout: 30_000, env: { ...process.env, LDAPTLS_CACERT: need('SLAPD_CA') },
      });
    },
    async kill() {
      process.kill(pid(), 'SIGKILL');
      const ports = [portOf(need('SLAPD_LDAPS_URL')), portOf(need('SLAPD_LDAP_URL'))];
      await until('slapd gone after kill -9', 10_000, async () => ((await Promise.all(ports.map(connects))).some(Boolean) ? undefined : true));
    },
    async restart() {
      await run(SCRIPT, ['restart', dir], { timeout: 30_000 });
    },
    async stop() {
      await run(SCRIPT, ['stop', dir], { timeout: 30_000 });
    },
  };
}
