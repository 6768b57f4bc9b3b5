import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A private MIT realm (PWSYNC.TEST) for one test file, started by test/env/kdc.sh under `dir`:
 * a TCP-only KDC on a free loopback port, the hub's SPN, a DC's machine account, a second
 * service and a user, each with its keytab. Stopped by PID in `stop()`, and by a process 'exit'
 * hook should the test process end without it (children are not killed with their parent).
 */
const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../env/kdc.sh');
const SBIN = process.env.KRB5_SBIN ?? '/usr/sbin';

export interface TestKdc {
  dir: string;
  realm: string;
  port: number;
  pid: number;
  /** KRB5_CONFIG for every Kerberos process of the test: hub, notifier, kinit. */
  krb5Config: string;
  /** `PWSYNC@hub.pwsync.test` and its keytab; `PWSYNC/hub.pwsync.test@PWSYNC.TEST`. */
  hubService: string;
  hubPrincipal: string;
  hubKeytab: string;
  /** `DC1$@PWSYNC.TEST` and its keytab. */
  dcPrincipal: string;
  dcKeytab: string;
  /** `PWSYNC@other.pwsync.test`: a service the KDC knows but the hub does not hold. */
  otherService: string;
  otherKeytab: string;
  /** `alice@PWSYNC.TEST`: a user, not a DC. */
  userPrincipal: string;
  userKeytab: string;
  /** The env of an MIT tool run against this realm (kinit, klist). */
  env(extra?: Record<string, string>): NodeJS.ProcessEnv;
  /** Runs kadmin.local with these commands (one per line) on stdin. */
  kadmin(commands: string): void;
  stop(): void;
}

export function startKdc(dir: string): TestKdc {
  const out = execFileSync('bash', [SCRIPT, 'start', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
  const vars = new Map(out.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  const get = (k: string): string => {
    const v = vars.get(k);
    if (!v) throw new Error(`test/env/kdc.sh printed no ${k}: ${out}`);
    return v;
  };
  const pid = Number(get('KDC_PID'));
  const kdcDir = get('KDC_DIR');
  let stopped = false;
  // A synchronous kill: on 'exit' nothing asynchronous runs any more.
  const onExit = (): void => {
    if (!stopped) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  };
  process.once('exit', onExit);
  const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    ...process.env, KRB5_CONFIG: get('KRB5_CONFIG'), KRB5_KDC_PROFILE: get('KRB5_KDC_PROFILE'), ...extra,
  });
  return {
    dir: kdcDir, realm: get('KDC_REALM'), port: Number(get('KDC_PORT')), pid, krb5Config: get('KRB5_CONFIG'),
    hubService: get('KDC_HUB_SERVICE'), hubPrincipal: get('KDC_HUB_PRINCIPAL'), hubKeytab: get('KDC_HUB_KEYTAB'),
    dcPrincipal: get('KDC_DC_PRINCIPAL'), dcKeytab: get('KDC_DC_KEYTAB'),
    otherService: get('KDC_OTHER_SERVICE'), otherKeytab: get('KDC_OTHER_KEYTAB'),
    userPrincipal: get('KDC_USER_PRINCIPAL'), userKeytab: get('KDC_USER_KEYTAB'),
    env,
    kadmin(commands) {
      execFileSync(path.join(SBIN, 'kadmin.local'), ['-r', get('KDC_REALM')], { env: env(), input: commands, stdio: ['pipe', 'ignore', 'pipe'], timeout: 30_000 });
    },
    stop() {
      if (stopped) return;
      stopped = true;
      process.removeListener('exit', onExit);
      execFileSync('bash', [SCRIPT, 'stop', kdcDir], { stdio: 'ignore', timeout: 30_000 });
    },
  };
}

/** The shared object the `kerberos` package loads must link MIT directly, or libfaketime cannot skew it. */
export function kerberosLinkedToLibkrb5(repo: string): { ok: boolean; why: string } {
  const addon = path.join(repo, 'node_modules', 'kerberos', 'build', 'Release', 'kerberos.node');
  let ldd: string;
  try {
    accessSync(addon, constants.R_OK);
    ldd = execFileSync('ldd', [addon], { encoding: 'utf8' });
  } catch (e) {
    return { ok: false, why: `${addon} cannot be read or ldd failed (${e instanceof Error ? e.message : 'error'}): run \`npm install\` with libkrb5-dev installed` };
  }
  if (/libkrb5\.so/.test(ldd)) return { ok: true, why: '' };
  return { ok: false, why: `${addon} does not link libkrb5 (it dlopens it with RTLD_DEEPBIND, which libfaketime cannot reach): rebuild it with \`npm_config_kerberos_use_rtld=false npm rebuild kerberos\`` };
}
