import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { generateRecipientKeys } from '../core/keys.ts';
import { generateTlsMaterial } from '../core/tls-gen.ts';

/**
 * A complete pwsync on one machine, in one folder: keys, TLS material, hub and notifier YAML,
 * target files, and the hub and notifier as real processes. Used by `npm start` (the demo), the
 * end-to-end and crash tests, and the benchmark.
 */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const PWSYNC_BIN = path.join(REPO, 'bin', 'pwsync.mjs');
export const EXAMPLE_EXTENSION = path.join(REPO, 'extensions', 'examples', 'scrypt-hash', 'index.ts');
export const DOMAIN = 'corp.example.com';

export interface LabConnector {
  name: string;
  kind: 'delimited' | 'fixed-width' | 'avp' | 'ldif' | 'dsml';
  /** The target file's name under targets/ and its initial content. */
  file: string;
  content: string;
  connection?: Record<string, unknown>;
  join: Array<{ target: string; source: string; ignoreCase?: boolean }>;
  enabled?: boolean;
  /** Extension settings; `null` for a connector with no extension (6922). */
  extension?: Record<string, unknown> | null;
  extensionModule?: string;
  retry?: { count?: number; interval?: string; failedWhenReachable?: boolean; probeEvery?: string };
  concurrency?: number;
  batchSize?: number;
  /** connectors[].policy: pwsync's own password policy for this connector. */
  policy?: Record<string, unknown>;
}

export interface LabTarget {
  name: string;
  enabled?: boolean;
  retryInterval?: string;
  /** targets[].scope: inclusion and exclusion groups (needs LabOptions.notifierDirectory). */
  scope?: { include: string; exclude?: string };
}

/** Kerberos between notifier and hub (absolute paths); each part absent means TLS alone there. */
export interface LabKerberos {
  hub?: { keytab: string; service: string; replayCache: string; krb5Config?: string };
  notifier?: { keytab?: string; ccache?: string; principal?: string; krb5Config?: string };
  /** targets[].kerberos.service */
  service?: string;
  /** The lab domain's Kerberos realm. */
  realm?: string;
}

export interface LabOptions {
  root: string;
  connectors: LabConnector[];
  targets?: LabTarget[];
  logLevel?: string;
  kerberos?: LabKerberos;
  /** The lab domain's directory (domains[].directory), for the DC check; the password from a file. */
  directory?: { url: string; ca: string; serverName?: string; bindDn: string; passwordFile: string };
  /** The domain hub and notifier serve; DOMAIN by default. */
  domain?: string;
  /** The notifier's notifier.capture.samba (a Samba DC's syncpasswords). */
  samba?: { smbConf: string; gnupgHome: string; initialSync?: boolean; restartMin?: string; restartMax?: string };
  /** notifier.directory, for the targets' scope; the password from a file. */
  notifierDirectory?: { url: string; ca: string; serverName?: string; bindDn: string; passwordFile: string };
  /** notifier.report (how often hubs hear from the notifier); 60s by default. */
  reportInterval?: string;
  /** Hub connectors written as given, after `connectors`: kinds without a target file (ldap). */
  hubConnectors?: Array<Record<string, unknown>>;
  /** The hub's `broker:` section as given (NATS JetStream); the embedded broker when unset. */
  broker?: Record<string, unknown>;
  /** TLS client certificates (absolute paths): hub.tls.clientCa at the hub, targets[].tls.cert and key at the notifier. */
  clientCertificates?: { clientCa?: string; cert?: string; key?: string };
}

export interface Service {
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  stderr(): string;
  stdout(): string;
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined, service?: Service): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (service && service.proc.exitCode !== null) {
      throw new Error(`${what}: the process exited with ${service.proc.exitCode}: ${service.stderr().trim()}`);
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${service ? `; stderr: ${service.stderr().trim()}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function spawnPwsync(args: string[], opts: { cwd?: string; stdin?: Buffer; env?: Record<string, string> } = {}): Service {
  // PWSYNC_PROFILE_DIR=DIR writes a V8 CPU profile of each service (for bench/ investigations).
  const profile = process.env.PWSYNC_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.PWSYNC_PROFILE_DIR}`] : [];
  const proc = spawn(process.execPath, [...profile, PWSYNC_BIN, ...args], {
    cwd: opts.cwd ?? REPO, stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
  });
  let err = '';
  let out = '';
  proc.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-20_000); });
  proc.stdout!.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-200_000); });
  if (opts.stdin) proc.stdin!.end(opts.stdin);
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, exited, stderr: () => err, stdout: () => out };
}

export class Lab {
  readonly hubConfig: string;
  readonly notifierConfig: string;
  readonly hookSocket: string;
  readonly hubLog: string;
  readonly notifierLog: string;
  hubPort = 0;
  hub?: Service;
  notifier?: Service;

  private constructor(readonly root: string, readonly options: LabOptions) {
    this.hubConfig = path.join(root, 'hub.yaml');
    this.notifierConfig = path.join(root, 'notifier.yaml');
    this.hookSocket = path.join(root, 'run', 'hook.sock');
    this.hubLog = path.join(root, 'logs', 'hub.log');
    this.notifierLog = path.join(root, 'logs', 'notifier.log');
  }

  static async create(options: LabOptions): Promise<Lab> {
    const lab = new Lab(options.root, options);
    await lab.writeFiles();
    return lab;
  }

  targetFile(name: string): string {
    const c = this.options.connectors.find((x) => x.name === name);
    if (!c) throw new Error(`no connector ${name} in this lab`);
    return path.join(this.root, 'targets', c.file);
  }

  private async writeFiles(): Promise<void> {
    const root = this.root;
    for (const d of ['keys', 'tls', 'targets', 'logs', 'run']) mkdirSync(path.join(root, d), { recursive: true, mode: 0o700 });
    const keys = generateRecipientKeys();
    writeFileSync(path.join(root, 'keys', 'hub.key'), keys.privatePem, { mode: 0o600 });
    writeFileSync(path.join(root, 'keys', 'hub.pub'), keys.publicPem);
    const tls = await generateTlsMaterial({ hosts: ['127.0.0.1', 'localhost', '::1'] });
    writeFileSync(path.join(root, 'tls', 'ca.pem'), tls.caCertPem);
    writeFileSync(path.join(root, 'tls', 'ca.key'), tls.caKeyPem, { mode: 0o600 });
    writeFileSync(path.join(root, 'tls', 'hub.crt'), tls.certPem);
    writeFileSync(path.join(root, 'tls', 'hub.key'), tls.keyPem, { mode: 0o600 });
    for (const c of this.options.connectors) writeFileSync(path.join(root, 'targets', c.file), c.content);
    await this.writeHubConfig('127.0.0.1:0');
  }

  /** Writes both YAML files again from `options` (after a test changed them). */
  async rewriteConfig(): Promise<void> {
    await this.writeHubConfig(`127.0.0.1:${this.hubPort}`);
  }

  /** The hub listens on a port chosen at first start, written back into both YAML files. */
  private async writeHubConfig(listen: string): Promise<void> {
    const o = this.options;
    const k = o.kerberos;
    const hub = {
      hub: {
        id: 'lab-hub', listen, keys: ['keys/hub.key'],
        tls: { cert: 'tls/hub.crt', key: 'tls/hub.key', ...(o.clientCertificates?.clientCa ? { clientCa: o.clientCertificates.clientCa } : {}) },
        dataDir: 'hub-data', log: { level: o.logLevel ?? 'info', file: 'logs/hub.log' }, shutdownGrace: '5s',
        ...(k?.hub ? { kerberos: k.hub } : {}),
      },
      domains: [{
        name: o.domain ?? DOMAIN, ...(k?.realm ? { realm: k.realm } : {}),
        ...(o.directory ? {
          directory: {
            url: o.directory.url, ca: o.directory.ca, bindDn: o.directory.bindDn, password: { fromFile: o.directory.passwordFile },
            ...(o.directory.serverName ? { serverName: o.directory.serverName } : {}),
          },
        } : {}),
      }],
      connectors: [...o.connectors.map((c): Record<string, unknown> => ({
        name: c.name, kind: c.kind, enabled: c.enabled ?? true,
        connection: { path: `targets/${c.file}`, ...c.connection },
        join: c.join,
        retry: { ...c.retry, count: c.retry?.count ?? 3, interval: c.retry?.interval ?? '1s' },
        concurrency: c.concurrency ?? 2, batchSize: c.batchSize ?? 100,
        ...(c.policy ? { policy: c.policy } : {}),
        ...(c.extension === null ? {} : {
          extension: { module: c.extensionModule ?? EXAMPLE_EXTENSION, settings: c.extension ?? { attribute: 'pwdHash', cost: 1024 } },
        }),
      })), ...o.hubConnectors ?? []],
      ...(o.broker ? { broker: o.broker } : {}),
    };
    writeFileSync(this.hubConfig, `# yaml-language-server: $schema=${path.join(REPO, 'config/schema/hub.schema.json')}\n${stringify(hub)}`);
    const targets = o.targets ?? [{ name: 'lab-hub' }];
    const notifier = {
      notifier: {
        domain: o.domain ?? DOMAIN, host: `dc1.${o.domain ?? DOMAIN}`, dataDir: 'notifier-data',
        hook: { socket: 'run/hook.sock', timeout: '5s' }, log: { level: o.logLevel ?? 'info', file: 'logs/notifier.log' },
        shutdownGrace: '5s',
        ...(k?.notifier ? { kerberos: k.notifier } : {}),
        ...(o.samba ? { capture: { samba: o.samba } } : {}),
        ...(o.notifierDirectory ? {
          directory: {
            url: o.notifierDirectory.url, ca: o.notifierDirectory.ca, bindDn: o.notifierDirectory.bindDn,
            password: { fromFile: o.notifierDirectory.passwordFile },
            ...(o.notifierDirectory.serverName ? { serverName: o.notifierDirectory.serverName } : {}),
          },
        } : {}),
        ...(o.reportInterval ? { report: o.reportInterval } : {}),
      },
      targets: targets.map((t) => ({
        name: t.name, enabled: t.enabled ?? true, address: `127.0.0.1:${listen.split(':')[1]}`,
        tls: {
          ca: 'tls/ca.pem',
          ...(o.clientCertificates?.cert ? { cert: o.clientCertificates.cert } : {}),
          ...(o.clientCertificates?.key ? { key: o.clientCertificates.key } : {}),
        },
        publicKey: 'keys/hub.pub',
        retryInterval: t.retryInterval ?? '200ms', maxRetryInterval: '2s', batchSize: 100, timeout: '10s',
        ...(k?.service ? { kerberos: { service: k.service } } : {}),
        ...(t.scope ? { scope: t.scope } : {}),
      })),
    };
    writeFileSync(this.notifierConfig, `# yaml-language-server: $schema=${path.join(REPO, 'config/schema/notifier.schema.json')}\n${stringify(notifier)}`);
  }

  /** `env` is added to the hub's environment (libfaketime's, to skew its clock). */
  async startHub(timeoutMs = 30_000, env?: Record<string, string>): Promise<Service> {
    if (this.hubPort === 0) {
      this.hubPort = await freePort();
      await this.writeHubConfig(`127.0.0.1:${this.hubPort}`);
    }
    const s = spawnPwsync(['hub', '--config', this.hubConfig], env ? { env } : {});
    this.hub = s;
    // The hub opens its gRPC port last, once everything behind it is ready.
    await until('hub start', timeoutMs, () => canConnect({ port: this.hubPort, host: '127.0.0.1' }), s);
    return s;
  }

  /** `env` is added to the notifier's environment. */
  async startNotifier(timeoutMs = 30_000, env?: Record<string, string>): Promise<Service> {
    const startedAt = Date.now();
    const s = spawnPwsync(['notifier', '--config', this.notifierConfig], env ? { env } : {});
    this.notifier = s;
    // Ready when a new socket is bound (a killed notifier leaves its old one behind). No probe
    // connection: an empty request is, rightly, a warning in the notifier's log.
    await until('notifier start', timeoutMs, () => {
      if (!existsSync(this.hookSocket)) return undefined;
      const st = lstatSync(this.hookSocket);
      return st.isSocket() && st.ctimeMs >= startedAt - 5 ? true : undefined;
    }, s);
    return s;
  }

  /** SIGTERM and wait (bounded); SIGKILL if it does not stop. Returns the exit code. */
  async stop(s: Service | undefined, timeoutMs = 20_000): Promise<number | null> {
    if (!s || s.proc.exitCode !== null || s.proc.signalCode !== null) return s?.proc.exitCode ?? null;
    s.proc.kill('SIGTERM');
    const t = setTimeout(() => s.proc.kill('SIGKILL'), timeoutMs);
    const code = await s.exited;
    clearTimeout(t);
    return code;
  }

  async kill(s: Service | undefined): Promise<void> {
    if (!s || s.proc.exitCode !== null || s.proc.signalCode !== null) return;
    s.proc.kill('SIGKILL');
    await s.exited;
  }

  /**
   * Another hub on the same broker (NATS): the lab hub's YAML with its own id, port, data folder
   * and log (`logs/<id>.log`); resolves once its gRPC port answers.
   */
  async startPeerHub(id: string, timeoutMs = 60_000): Promise<{ service: Service; port: number; config: string; log: string }> {
    const port = await freePort();
    const config = path.join(this.root, `${id}.yaml`);
    const text = readFileSync(this.hubConfig, 'utf8');
    const doc = parse(text) as { hub: Record<string, unknown> & { log: Record<string, unknown> } };
    Object.assign(doc.hub, { id, listen: `127.0.0.1:${port}`, dataDir: `${id}-data` });
    doc.hub.log.file = `logs/${id}.log`;
    writeFileSync(config, `${text.split('\n')[0]}\n${stringify(doc)}`);
    const service = spawnPwsync(['hub', '--config', config]);
    await until(`hub ${id} start`, timeoutMs, () => canConnect({ port, host: '127.0.0.1' }), service);
    return { service, port, config, log: path.join(this.root, 'logs', `${id}.log`) };
  }

  async stopAll(): Promise<void> {
    await Promise.all([this.stop(this.notifier), this.stop(this.hub)]);
  }

}

async function canConnect(to: net.NetConnectOpts): Promise<true | undefined> {
  return new Promise((resolve) => {
    const c = net.connect(to);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(undefined));
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

export { until };
