import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A domain directory for one test file (test/env/slapd-dc.sh under `dir`): slapd over LDAPS with
 * the AD attributes the hub's DC check and SPN lookup read; DC1$ is a writable DC, WS1$ a
 * workstation, pwsync-hub holds PWSYNC/hub.pwsync.test. Stopped by PID in `stop()`, and on the
 * test process's exit should it end without it.
 */
const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../env/slapd-dc.sh');

export interface TestDirectory {
  url: string;
  ca: string;
  serverName: string;
  baseDn: string;
  bindDn: string;
  passwordFile: string;
  stop(): void;
}

export function startDirectory(dir: string, baseDn?: string): TestDirectory {
  const out = execFileSync('bash', [SCRIPT, 'start', dir, ...(baseDn ? [baseDn] : [])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
  const vars = new Map(out.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  const get = (k: string): string => {
    const v = vars.get(k);
    if (!v) throw new Error(`test/env/slapd-dc.sh printed no ${k}: ${out}`);
    return v;
  };
  const pid = Number(get('DIRECTORY_PID'));
  const home = get('DIRECTORY_DIR');
  let stopped = false;
  const onExit = (): void => {
    if (stopped) return;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  };
  process.once('exit', onExit);
  return {
    url: get('DIRECTORY_URL'), ca: get('DIRECTORY_CA'), serverName: get('DIRECTORY_SERVER_NAME'), baseDn: get('DIRECTORY_BASE_DN'),
    bindDn: get('DIRECTORY_BIND_DN'), passwordFile: get('DIRECTORY_PASSWORD_FILE'),
    stop() {
      if (stopped) return;
      stopped = true;
      process.removeListener('exit', onExit);
      execFileSync('bash', [SCRIPT, 'stop', home], { stdio: 'ignore', timeout: 30_000 });
    },
  };
}
