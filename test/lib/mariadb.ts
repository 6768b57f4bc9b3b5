import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { testPassword } from './passwords.ts';

/**
 * A private MariaDB 10.11 (Debian mariadb-server) for one test file, owned by this Node process
 * (the child's 'exit' event ends every wait; no orphans, no PID files to trust).
 *
 * - Listens on 127.0.0.1 on a free port, TLS with a self-signed cert (SAN DNS:localhost,
 *   IP:127.0.0.1: the driver checks an IP host as "localhost"), require_secure_transport=ON,
 *   the simple_password_check plugin (8 chars, 1 digit, 1 upper, 1 lower, 1 other).
 * - The general log stays OFF: MariaDB writes every statement there in clear, ALTER USER …
 *   IDENTIFIED BY 'password' included (no rewriting in 10.11), and the secrecy scan covers the
 *   data directory, which is under `dir` (a testDir(), under PWSYNC_TEST_ROOT).
 * - --no-defaults first (else /etc/mysql's socket and settings apply); root exists only over the
 *   private 0700 socket (unix_socket auth), never over TCP and never with an empty password.
 * - Fixture: logins alice@% and bob@%; `pwsync`@127.0.0.1 with CREATE USER on *.* and SELECT,
 *   UPDATE on app.app_users only; `norights`@127.0.0.1 with SELECT on app.app_users only (no CREATE USER, no UPDATE); table
 *   app.app_users(login, pwhash) with rows alice and bob. Passwords come from testPassword() and
 *   are sent to the server on the admin socket's stdin, never in a file or argv.
 */

export interface TestMariadb {
  readonly dir: string;
  readonly host: '127.0.0.1';
  readonly port: number;
  /** The server certificate (self-signed: it is its own CA). */
  readonly caFile: string;
  readonly ca: string;
  /** Initial passwords, as bytes. */
  readonly passwords: Readonly<Record<'pwsync' | 'norights' | 'alice' | 'bob', Buffer>>;
  /** Runs SQL as root over the private socket; returns the tab-separated output. */
  admin(sql: string): string;
  /** Stops the server (SIGTERM, awaits exit). */
  stop(): Promise<void>;
  /** Starts it again on the same port and data; `tls: false` starts it without TLS (and without require_secure_transport). */
  start(options?: { tls?: boolean }): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startMariadb(dir: string): Promise<TestMariadb> {
  const port = await freePort();
  const data = path.join(dir, 'data');
  const sock = path.join(dir, 'mysqld.sock');
  const caFile = path.join(dir, 'server.crt');
  const keyFile = path.join(dir, 'server.key');
  mkdirSync(dir, { recursive: true });
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-sha256', '-days', '2',
    '-keyout', keyFile, '-out', caFile, '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore', timeout: 20_000 });
  const ca = readFileSync(caFile, 'utf8');
  // As root the server runs as root too: the run's root folder is 0700, which the mysql user could
  // not traverse. Not as root: the socket's root user is the OS user (unix_socket auth).
  const isRoot = process.getuid?.() === 0;
  const userOpt = isRoot ? ['--user=root'] : [];
  const adminUser = isRoot ? 'root' : execFileSync('id', ['-un'], { encoding: 'utf8' }).trim();
  execFileSync('mariadb-install-db', ['--no-defaults', `--datadir=${data}`, ...userOpt, '--auth-root-authentication-method=socket',
    ...(isRoot ? [] : [`--auth-root-socket-user=${adminUser}`]), '--skip-test-db', '--skip-name-resolve'],
  { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const admin = (sql: string): string => execFileSync('mariadb', ['--no-defaults', `--socket=${sock}`, `-u${adminUser}`, '--batch', '--skip-column-names'],
    { input: sql, encoding: 'utf8', timeout: 30_000, stdio: ['pipe', 'pipe', 'pipe'] });

  const start = async (options: { tls?: boolean } = {}): Promise<void> => {
    if (child) throw new Error('the test MariaDB is already running');
    const tls = options.tls ?? true;
    const args = ['--no-defaults', `--datadir=${data}`, ...userOpt, `--port=${port}`, '--bind-address=127.0.0.1', `--socket=${sock}`,
      `--pid-file=${path.join(dir, 'mariadbd.pid')}`, `--log-error=${path.join(dir, 'error.log')}`, '--skip-name-resolve',
      '--general-log=OFF', '--plugin-load-add=simple_password_check', '--innodb-flush-log-at-trx-commit=0',
      ...(tls ? [`--ssl-cert=${caFile}`, `--ssl-key=${keyFile}`, `--ssl-ca=${caFile}`, '--require-secure-transport=ON'] : ['--skip-ssl'])];
    const c = spawn('mariadbd', args, { cwd: dir, stdio: 'ignore' });
    child = c;
    exited = new Promise((resolve) => c.once('exit', () => { if (child === c) child = undefined; resolve(); }));
    const end = Date.now() + 30_000;
    for (;;) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`mariadbd exited at start: see ${path.join(dir, 'error.log')}`);
      try {
        execFileSync('mariadb-admin', ['--no-defaults', `--socket=${sock}`, '--connect-timeout=1', `-u${adminUser}`, 'ping'], { stdio: 'ignore', timeout: 5_000 });
        return;
      } catch {
        if (Date.now() > end) throw new Error(`mariadbd did not answer within 30 s: see ${path.join(dir, 'error.log')}`);
        await sleep(50);
      }
    }
  };

  const stop = async (): Promise<void> => {
    const c = child;
    if (!c) return;
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  };
  // Children are not killed with their parent: a synchronous kill when the test process ends without stop().
  process.once('exit', () => { try { child?.kill('SIGKILL'); } catch { /* gone */ } });

  await start();
  const passwords = {
    pwsync: testPassword('svc-Pwsync-1'), norights: testPassword('svc-NoRights-1'),
    alice: testPassword('alice-Initial-1'), bob: testPassword('bob-Initial-1'),
  };
  // The test passwords hold no quote or backslash, so a plain literal is exact here.
  const lit = (b: Buffer): string => `'${b.toString('utf8')}'`;
  admin([
    `CREATE USER 'pwsync'@'127.0.0.1' IDENTIFIED BY ${lit(passwords.pwsync)};`,
    'GRANT CREATE USER ON *.* TO \'pwsync\'@\'127.0.0.1\';',
    `CREATE USER 'norights'@'127.0.0.1' IDENTIFIED BY ${lit(passwords.norights)};`,
    `CREATE USER 'alice'@'%' IDENTIFIED BY ${lit(passwords.alice)};`,
    `CREATE USER 'bob'@'%' IDENTIFIED BY ${lit(passwords.bob)};`,
    'CREATE DATABASE app;',
    'CREATE TABLE app.app_users (login VARCHAR(64) PRIMARY KEY, pwhash VARCHAR(255) NOT NULL);',
    'INSERT INTO app.app_users VALUES (\'alice\', \'x\'), (\'bob\', \'x\');',
    'GRANT SELECT, UPDATE ON app.app_users TO \'pwsync\'@\'127.0.0.1\';',
    'GRANT SELECT ON app.app_users TO \'norights\'@\'127.0.0.1\';',
  ].join('\n'));
  writeFileSync(path.join(dir, 'README'), 'private MariaDB of one test file (test/lib/mariadb.ts)\n');
  return { dir, host: '127.0.0.1', port, caFile, ca, passwords, admin, stop, start };
}
