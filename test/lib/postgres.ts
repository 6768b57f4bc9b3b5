import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, closeSync, statSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

/**
 * A private PostgreSQL 15 for one test file, owned by this Node process (no orphaned postmaster):
 * initdb into the test's folder (under PWSYNC_TEST_ROOT, so the secrecy scan reads the server log),
 * TLS with a self-signed certificate for DNS:localhost and IP:127.0.0.1, pg_hba hostssl only,
 * passwordcheck preloaded, log_statement=all (every statement lands in the log: a clear password
 * sent by pwsync would be found there). As root the server runs as the `postgres` user.
 *
 * Roles: alice, bob (logins whose passwords the tests set), `pwsync` (CREATEROLE, not superuser;
 * SELECT/UPDATE on app_users), `norights` (LOGIN only). Table app_users(login, email, pwhash).
 */
export const PGBIN = '/usr/lib/postgresql/15/bin';

export interface Postgres {
  readonly dir: string;
  readonly port: number;
  /** The server's certificate (self-signed: its own CA). */
  readonly caFile: string;
  readonly ca: string;
  readonly logFile: string;
  /** Password files (random, not test passwords) of the service roles. */
  readonly pwsyncPasswordFile: string;
  readonly norightsPasswordFile: string;
  /** A client as the superuser, over verify-full TLS (the caller ends it). */
  admin(): Promise<pg.Client>;
  /** Whether `role` can log in with `password` over verify-full TLS (false on 28P01). */
  logsIn(role: string, password: string): Promise<boolean>;
  stop(): Promise<void>;
  /** Stops and starts the server on the same port and data. */
  restart(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startPostgres(dir: string): Promise<Postgres> {
  const root = process.getuid?.() === 0;
  const owner = root
    ? { uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()) }
    : undefined;
  const own = (p: string): void => { if (owner) chownSync(p, owner.uid, owner.gid); };
  const put = (p: string, content: string | Buffer, mode: number): void => { writeFileSync(p, content, { mode }); own(p); };
  own(dir);
  if (root) {
    // The server user must be able to reach its folder: let others traverse (not list) the parents.
    for (let d = path.dirname(dir); d.startsWith(os.tmpdir() + path.sep); d = path.dirname(d)) {
      const mode = statSync(d).mode;
      if ((mode & 0o001) === 0) chmodSync(d, (mode & 0o7777) | 0o001);
    }
  }
  const data = path.join(dir, 'data');
  const sock = path.join(dir, 'sock');
  mkdirSync(sock, { mode: 0o700 });
  own(sock);

  const key = path.join(dir, 'server.key');
  const caFile = path.join(dir, 'server.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-sha256', '-days', '30',
    '-keyout', key, '-out', caFile, '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  const ca = readFileSync(caFile, 'utf8');

  // A fixed '-1' tail: passwordcheck wants letters and non-letters, which random base64url may lack.
  const superPassword = `${randomBytes(18).toString('base64url')}-1`;
  const superFile = path.join(dir, 'superpw');
  put(superFile, `${superPassword}\n`, 0o600);
  execFileSync(`${PGBIN}/initdb`, ['-D', data, '-U', 'postgres', `--pwfile=${superFile}`, '--auth-local=scram-sha-256', '--auth-host=scram-sha-256',
    '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync', '--no-instructions'], { cwd: dir, stdio: 'ignore', ...owner });
  put(path.join(data, 'server.key'), readFileSync(key), 0o600);
  put(path.join(data, 'server.crt'), ca, 0o644);
  put(path.join(data, 'pg_hba.conf'), 'local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\n', 0o600);

  const port = await freePort();
  const logFile = path.join(dir, 'server.log');
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    const fd = openSync(logFile, 'a');
    child = spawn(`${PGBIN}/postgres`, ['-D', data, '-p', String(port), '-k', sock, '-c', 'listen_addresses=127.0.0.1',
      '-c', 'ssl=on', '-c', 'ssl_cert_file=server.crt', '-c', 'ssl_key_file=server.key', '-c', 'password_encryption=scram-sha-256',
      '-c', 'shared_preload_libraries=passwordcheck', '-c', 'log_statement=all',
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'], { cwd: dir, stdio: ['ignore', fd, fd], ...owner });
    closeSync(fd);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`postgres exited (${child.exitCode}); see ${logFile}`);
      try {
        const c = await admin();
        await c.end();
        return;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(50);
      }
    }
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGINT');
    const t = setTimeout(() => c.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(t);
  };
  const ssl = { ca, rejectUnauthorized: true, servername: 'localhost' };
  const admin = async (): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: superPassword, database: 'postgres', ssl, connectionTimeoutMillis: 3000 });
    c.on('error', () => {});
    await c.connect();
    return c;
  };

  await start();
  const pwsyncPassword = `${randomBytes(18).toString('base64url')}-1`;
  const norightsPassword = `${randomBytes(18).toString('base64url')}-1`;
  const pwsyncPasswordFile = path.join(dir, 'pwsync-password');
  const norightsPasswordFile = path.join(dir, 'norights-password');
  writeFileSync(pwsyncPasswordFile, `${pwsyncPassword}\n`, { mode: 0o600 });
  writeFileSync(norightsPasswordFile, `${norightsPassword}\n`, { mode: 0o600 });
  const c = await admin();
  try {
    // The service passwords are random, but still kept out of the statement log.
    await c.query('SET log_statement = \'none\'');
    await c.query(`CREATE ROLE pwsync LOGIN CREATEROLE PASSWORD ${c.escapeLiteral(pwsyncPassword)}`);
    await c.query(`CREATE ROLE norights LOGIN PASSWORD ${c.escapeLiteral(norightsPassword)}`);
    await c.query('CREATE ROLE alice LOGIN');
    await c.query('CREATE ROLE bob LOGIN');
    await c.query('CREATE TABLE app_users (login text PRIMARY KEY, email text NOT NULL, pwhash text)');
    await c.query(`INSERT INTO app_users (login, email) VALUES ('alice', 'alice@example.com'), ('bob', 'bob@example.com'), ('carol', 'carol@example.com')`);
    await c.query('GRANT SELECT, UPDATE ON app_users TO pwsync');
    await c.query('GRANT SELECT ON app_users TO norights');
  } finally {
    await c.end();
  }

  return {
    dir, port, caFile, ca, logFile, pwsyncPasswordFile, norightsPasswordFile, admin,
    async logsIn(role, password) {
      const u = new pg.Client({ host: '127.0.0.1', port, user: role, password, database: 'postgres', ssl, connectionTimeoutMillis: 3000 });
      u.on('error', () => {});
      try {
        await u.connect();
        const r = await u.query('SELECT current_user AS u');
        return r.rows[0]?.u === role;
      } catch (e) {
        if ((e as { code?: string }).code === '28P01') return false;
        throw e;
      } finally {
        await u.end().catch(() => {});
      }
    },
    stop,
    async restart() {
      await stop();
      await start();
    },
  };
}
