import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import {
  AndFilter, Ber, BerWriter, BindRequest, Client, EqualityFilter, FilterParser, NoSuchObjectError, ResultCodeError, type Filter,
} from 'ldapts';
import type { Secret } from './secret.ts';

/**
 * The one place that opens an LDAP connection: ldaps://, or ldap:// upgraded with StartTLS before
 * anything is sent (plain ldap:// only when the admin allowed it); the server's certificate always
 * verified against a CA file; a simple bind whose password goes from the Secret's bytes into the
 * request without ever being a JS string; every step bounded by `timeoutMs`. Errors say which URL
 * and bind DN, what failed and what to fix, and never carry the password.
 *
 * ldapts reconnects a dropped connection on its own, unbound and, after StartTLS, in clear. That is
 * refused here: each connection may be opened once, and a lost one is replaced by a fresh,
 * verified, bound one. While the directory cannot be reached, connecting again waits out a backoff
 * window (100 ms doubling to 5 s): calls in the window fail at once, retryably.
 */

export interface LdapOptions {
  /** ldaps://host[:636], or ldap://host[:389] with startTls. */
  url: string;
  startTls: boolean;
  /** A PEM file with the CA that signed the server's certificate. */
  ca: string;
  /** The name to verify in the certificate when the URL's host is not in it (Samba: DC1.example.com, CN only). */
  serverName?: string;
  /** A DN or user@domain. */
  bindDn: string;
  /** Owned by the LdapDirectory from now on: disposed by close(). */
  password: Secret;
  /** Longest one step (connect + TLS + bind, or one search) may take. */
  timeoutMs: number;
  /** Entries per page of a subtree search. */
  pageSize?: number;
  /**
   * Accept ldap:// without startTls: binds and passwords then travel in clear. Only for a target
   * whose admin set requireSecureConnection: false; refused otherwise.
   */
  allowPlain?: boolean;
}

/** An LDAP failure in words an admin can act on. `retryable`: trying again later may work without a change of configuration. */
export class LdapError extends Error {
  constructor(message: string, readonly retryable: boolean, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LdapError';
  }
}

export interface LdapQuery {
  scope: 'base' | 'one' | 'sub';
  /** Build it with escapeFilterValue for anything that came from outside; binaryEquals for bytes. */
  filter: string | Filter;
  attributes: string[];
  /** Attributes to return as bytes (objectSid, objectGUID, tokenGroups). */
  binary?: string[];
  sizeLimit?: number;
}

/** One entry; attribute names are matched without case, as LDAP does. */
export class LdapEntry {
  private readonly attrs = new Map<string, Array<string | Buffer>>();

  constructor(readonly dn: string, raw: Record<string, unknown>) {
    for (const [k, v] of Object.entries(raw)) {
      if (k === 'dn') continue;
      const values = Array.isArray(v) ? v : [v];
      this.attrs.set(k.toLowerCase(), values.filter((x): x is string | Buffer => typeof x === 'string' || Buffer.isBuffer(x)));
    }
  }

  strings(name: string): string[] {
    return (this.attrs.get(name.toLowerCase()) ?? []).map((v) => (typeof v === 'string' ? v : v.toString('utf8')));
  }

  string(name: string): string | undefined {
    return this.strings(name)[0];
  }

  buffers(name: string): Buffer[] {
    return (this.attrs.get(name.toLowerCase()) ?? []).map((v) => (typeof v === 'string' ? Buffer.from(v, 'utf8') : v));
  }
}

/** What the DC check and the scope check need from a directory; tests may hand in another. */
export interface DirectorySearch {
  /** "ldaps://dc1.example.com:636 as CN=svc,…": for messages. */
  readonly description: string;
  /** Entries only (search references are ignored). A base search of an entry that does not exist answers []. */
  search(base: string, query: LdapQuery): Promise<LdapEntry[]>;
  close(): Promise<void>;
}

/** RFC 4515 escaping of a string filter value. Bytes (a SID, a GUID) go through binaryEquals. */
export function escapeFilterValue(value: string): string {
  return value.replace(/[*()\\\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * `filter` AND `attribute` equals exactly these bytes. Not a string filter with \\xx escapes:
 * ldapts parses those into characters and writes them as UTF-8, so a byte of 0x80 or more would
 * reach the server as two bytes and match nothing.
 */
export function binaryEquals(attribute: string, value: Buffer, filter?: string): Filter {
  const equals = new EqualityFilter({ attribute, value });
  return filter === undefined ? equals : new AndFilter({ filters: [FilterParser.parseString(filter), equals] });
}

/** The naming context of an AD domain: pwsync.test → DC=pwsync,DC=test. */
export function domainDn(domain: string): string {
  return domain.split('.').filter((p) => p.length > 0).map((p) => `DC=${p}`).join(',');
}

/** A DN's RDNs, split at unescaped commas, without spaces around separators, in lower case. */
function rdns(dn: string): string[] {
  return dn.split(/(?<!\\),/).map((rdn) => rdn.trim().replace(/\s*=\s*/, '=').toLowerCase());
}

/** A DN in a form to compare (AD answers DNs in one form; this absorbs what admins type). */
export function normalizeDn(dn: string): string {
  return rdns(dn).join(',');
}

/** True when `dn` is `ancestor` or below it, compared RDN by RDN (an escaped comma is no separator). */
export function dnIsUnder(dn: string, ancestor: string): boolean {
  const d = rdns(dn);
  const a = rdns(ancestor);
  return d.length >= a.length && a.every((r, i) => d[d.length - a.length + i] === r);
}

/** A binary SID (objectSid, tokenGroups) as S-1-5-21-…. */
export function sidToString(sid: Buffer): string {
  if (sid.length < 8 || sid.length !== 8 + 4 * sid[1]!) throw new Error(`not a binary SID (${sid.length} bytes)`);
  const authority = sid.readUIntBE(2, 6);
  const subs: number[] = [];
  for (let i = 0; i < sid[1]!; i++) subs.push(sid.readUInt32LE(8 + 4 * i));
  return ['S', sid[0], authority, ...subs].join('-');
}

/** A binary objectGUID in its usual text form (the first three fields little-endian, as Windows shows it). */
export function guidToString(guid: Buffer): string {
  if (guid.length !== 16) throw new Error(`not a binary GUID (${guid.length} bytes)`);
  const h = (b: Buffer): string => b.toString('hex');
  const le = (s: number, e: number): string => h(Buffer.from(guid.subarray(s, e)).reverse());
  return `${le(0, 4)}-${le(4, 6)}-${le(6, 8)}-${h(guid.subarray(8, 10))}-${h(guid.subarray(10, 16))}`;
}

/** The inverse of guidToString, for a filter on objectGUID. */
export function guidToBytes(text: string): Buffer {
  const m = /^\{?([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})\}?$/i.exec(text.trim());
  if (!m) throw new Error(`not a GUID: ${JSON.stringify(text)}`);
  const rev = (s: string): Buffer => Buffer.from(s, 'hex').reverse();
  return Buffer.concat([rev(m[1]!), rev(m[2]!), rev(m[3]!), Buffer.from(m[4]!, 'hex'), Buffer.from(m[5]!, 'hex')]);
}

interface Target {
  secure: boolean;
  host: string;
  port: number;
}

/** Checks the options without touching the network: never a plain connection unless `allowPlain`. */
export function checkLdapOptions(o: Pick<LdapOptions, 'url' | 'startTls' | 'allowPlain'>): Target {
  let u: URL;
  try {
    u = new URL(o.url);
  } catch {
    throw new LdapError(`${o.url} is not an LDAP URL: write ldaps://host:636, or ldap://host:389 with startTls: true`, false);
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (u.protocol === 'ldaps:') {
    if (o.startTls) throw new LdapError(`${o.url}: startTls is for ldap:// URLs; an ldaps:// connection is encrypted from the start: remove startTls`, false);
    return { secure: true, host, port: u.port ? Number(u.port) : 636 };
  }
  if (u.protocol === 'ldap:') {
    if (!o.startTls && o.allowPlain !== true) throw new LdapError(`${o.url} is a plain connection: the bind password would travel in clear. Use ldaps://${u.host || 'host'}, or set startTls: true`, false);
    return { secure: false, host, port: u.port ? Number(u.port) : 389 };
  }
  throw new LdapError(`${o.url} is not an LDAP URL: write ldaps://host:636, or ldap://host:389 with startTls: true`, false);
}

/** A function that works once: a dropped connection is never silently reopened by the library. */
function once<F extends (...args: never[]) => unknown>(fn: F, url: string): F {
  let used = false;
  return ((...args: never[]) => {
    if (used) throw new Error(`the connection to ${url} was lost`);
    used = true;
    return fn(...args);
  }) as F;
}

const TLS_VERIFY = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE',
]);
const CONNECT = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN']);

/** Turns what ldapts or the socket threw into an LdapError that names the URL, the bind DN and the fix. */
export function ldapErrorOf(e: unknown, ctx: { url: string; bindDn: string; ca: string; serverName?: string; step: string }): LdapError {
  if (e instanceof LdapError) return e;
  const where = `${ctx.url} (${ctx.step})`;
  const code = (e as { code?: unknown }).code;
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof ResultCodeError) {
    switch (e.code) {
      case 49: return new LdapError(`${where}: the directory refused the bind as ${ctx.bindDn} (invalid credentials): check the directory password and that the account is enabled and not locked`, false, { cause: e });
      case 8:
      case 13: return new LdapError(`${where}: the directory requires a stronger or encrypted connection (${msg}): use ldaps:// or startTls`, false, { cause: e });
      case 50: return new LdapError(`${where}: ${ctx.bindDn} may not read what was asked (insufficient access): give the account read access to users, groups and computers`, false, { cause: e });
      case 32: return new LdapError(`${where}: the search base does not exist (${msg}): check the directory's baseDn`, false, { cause: e });
      case 51:
      case 52:
      case 53: return new LdapError(`${where}: the directory is busy or unavailable (${msg}); retried later`, true, { cause: e });
      default: return new LdapError(`${where}: the directory answered with LDAP result ${e.code} (${msg})`, false, { cause: e });
    }
  }
  if (typeof code === 'string') {
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      return new LdapError(`${where}: the directory's certificate does not name ${ctx.serverName ?? new URL(ctx.url).hostname} (${msg}): set serverName to the name in the certificate (Samba: the DC's FQDN, e.g. DC1.example.com)`, false, { cause: e });
    }
    if (TLS_VERIFY.has(code)) {
      return new LdapError(`${where}: the directory's certificate is not signed by the CA in ${ctx.ca} (${code}): point ca at the CA that issued it (Samba: private/tls/ca.pem)`, false, { cause: e });
    }
    if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
      return new LdapError(`${where}: the directory's certificate is not valid now (${code}): renew it, or check this host's clock`, false, { cause: e });
    }
    if (code === 'ENOTFOUND') return new LdapError(`${where}: the host name does not resolve: check the URL`, true, { cause: e });
    if (CONNECT.has(code)) return new LdapError(`${where}: cannot reach the directory (${code}): check the URL and that the DC listens there (636 for ldaps, 389 for StartTLS)`, true, { cause: e });
  }
  if (/timed out|timeout/i.test(msg)) return new LdapError(`${where}: no answer within the directory timeout: check that the DC is up and reachable, or raise timeout`, true, { cause: e });
  if (/connection|socket/i.test(msg)) return new LdapError(`${where}: the connection was lost (${msg}); retried on a new connection`, true, { cause: e });
  return new LdapError(`${where}: ${msg}`, false, { cause: e });
}

function bounded<T>(p: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new Error(`timed out after ${ms} ms`));
    }, ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * A simple bind request whose password is written from bytes: ldapts' own BindRequest takes a
 * string, which cannot be wiped and would outlive the bind. The BER encoding is written into a
 * writer sized so it never grows (a grown writer would leave an earlier copy out of reach), and
 * wiped once the request has been answered or has failed.
 */
class BytesBindRequest extends BindRequest {
  // ES private fields: left out of ldapts' debug JSON of the message and of any spread copy.
  readonly #password: Buffer;
  #encoded: Buffer | undefined;

  constructor(messageId: number, dn: string, password: Buffer) {
    super({ messageId, dn });
    this.#password = password;
  }

  override write(): Buffer {
    // The framing takes at most 31 bytes beyond the DN and the password (tags, lengths, message id, version).
    const size = 64 + Buffer.byteLength(this.dn) + this.#password.length;
    const writer = new BerWriter({ size });
    writer.startSequence();
    writer.writeInt(this.messageId);
    writer.startSequence(this.protocolOperation);
    this.writeMessage(writer);
    writer.endSequence();
    writer.endSequence();
    const out = writer.buffer;
    const own = out.byteOffset === 0 && out.buffer.byteLength === size;
    // The whole allocation, not only the message: endSequence shifts content left and leaves a tail past it.
    this.#encoded = own ? Buffer.from(out.buffer, 0, size) : out;
    if (!own) {
      this.wipe();
      throw new LdapError('ldapts\' BerWriter did not write the bind request into one buffer of its own of the size asked, so core/ldap.ts cannot wipe every copy of the password: adapt BytesBindRequest to this ldapts version', false);
    }
    return out;
  }

  override writeMessage(writer: BerWriter): void {
    writer.writeInt(this.version);
    writer.writeString(this.dn);
    writer.writeBuffer(this.#password, Ber.Context);
  }

  wipe(): void {
    this.#encoded?.fill(0);
    this.#encoded = undefined;
  }
}

/**
 * Sends a simple bind with the password's bytes through ldapts' internal `_sendBind` (the public
 * bind() takes a string). Checked at each use, so an ldapts upgrade without it fails loudly.
 */
async function bindWithBytes(client: Client, dn: string, password: Buffer): Promise<void> {
  const internal = client as unknown as { _sendBind?: unknown; _nextMessageId?: unknown };
  if (typeof internal._sendBind !== 'function' || typeof internal._nextMessageId !== 'function') {
    throw new LdapError('this ldapts has no Client._sendBind or _nextMessageId: core/ldap.ts sends the bind through them to keep the password out of JS strings; adapt bindWithBytes to this ldapts version', false);
  }
  const req = new BytesBindRequest((internal._nextMessageId as () => number).call(client), dn, password);
  try {
    await (internal._sendBind as (r: BindRequest) => Promise<void>).call(client, req);
  } finally {
    // Answered, refused or failed: either way the socket no longer needs the encoded request.
    req.wipe();
  }
}

const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5000;

const LOST = /connection to .* was lost|Connection closed|Socket error|Socket connection not established/i;

/**
 * A directory reached over LDAP, connected and bound on first use and again after the connection
 * was lost. Searches share one connection (LDAP multiplexes them).
 */
export class LdapDirectory implements DirectorySearch {
  readonly description: string;
  private readonly target: Target;
  private readonly caPem: Buffer;
  private client: Client | undefined;
  private connecting: Promise<Client> | undefined;
  private paged: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** After a retryable failure to connect: no new attempt before `retryAt`; the window doubles up to MAX_BACKOFF_MS. */
  private backoff: { retryAt: number; windowMs: number; error: LdapError } | undefined;

  constructor(private readonly opts: LdapOptions) {
    this.target = checkLdapOptions(opts);
    this.description = `${opts.url} as ${opts.bindDn}`;
    try {
      this.caPem = readFileSync(opts.ca);
    } catch (e) {
      opts.password.dispose();
      throw new LdapError(`${opts.url}: cannot read the CA file ${opts.ca} (${(e as NodeJS.ErrnoException).code ?? 'error'}): point ca at the PEM of the CA that signed the directory's certificate`, false, { cause: e });
    }
  }

  async search(base: string, q: LdapQuery): Promise<LdapEntry[]> {
    try {
      return await this.searchOnce(base, q);
    } catch (e) {
      // A connection that died between two searches is replaced once; anything else is the answer.
      if (!(e instanceof Error && LOST.test(e.message))) throw this.error(e, `search ${q.scope} ${base}`);
      this.drop();
      try {
        return await this.searchOnce(base, q);
      } catch (e2) {
        throw this.error(e2, `search ${q.scope} ${base}`);
      }
    }
  }

  /**
   * Runs `fn` on the bound connection (connecting and binding first when needed). A failure to
   * connect or bind comes out as an LdapError; what `fn` throws comes out as thrown, so the caller
   * can read result codes and response controls. A connection lost or timed out under `fn` is
   * dropped, never reused: the next call connects afresh. Nothing is retried here.
   */
  async use<T>(fn: (client: Client) => Promise<T>): Promise<T> {
    let client: Client;
    try {
      client = await this.bound();
    } catch (e) {
      throw this.error(e, 'connect');
    }
    try {
      return await fn(client);
    } catch (e) {
      if (!(e instanceof ResultCodeError)) this.drop();
      throw e;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.client;
    this.client = undefined;
    this.opts.password.dispose();
    await c?.unbind().catch(() => undefined);
  }

  private searchOnce(base: string, q: LdapQuery): Promise<LdapEntry[]> {
    if (q.scope === 'base') return this.searchNow(base, q);
    // slapd keeps one paged-results cookie per connection: a second paged search on the same
    // connection invalidates the first one's ("paged results cookie is invalid"). One at a time.
    const run = this.paged.then(() => this.searchNow(base, q));
    this.paged = run.catch(() => undefined);
    return run;
  }

  private async searchNow(base: string, q: LdapQuery): Promise<LdapEntry[]> {
    const client = await this.bound();
    const binary = q.binary ?? [];
    try {
      const res = await client.search(base, {
        scope: q.scope, filter: q.filter, attributes: q.attributes,
        explicitBufferAttributes: [...binary, ...binary.map((b) => b.toLowerCase())],
        sizeLimit: q.sizeLimit ?? 0,
        timeLimit: Math.max(1, Math.ceil(this.opts.timeoutMs / 1000)),
        ...(q.scope === 'base' ? {} : { paged: { pageSize: this.opts.pageSize ?? 500 } }),
      });
      return res.searchEntries.map((e) => new LdapEntry(e.dn, e));
    } catch (e) {
      if (e instanceof NoSuchObjectError && q.scope === 'base') return [];
      if (e instanceof Error && /timed out/i.test(e.message)) this.drop();
      throw e;
    }
  }

  private error(e: unknown, step: string): LdapError {
    const { url, bindDn, ca, serverName } = this.opts;
    return ldapErrorOf(e, { url, bindDn, ca, step, ...(serverName ? { serverName } : {}) });
  }

  private drop(): void {
    const c = this.client;
    this.client = undefined;
    void c?.unbind().catch(() => undefined);
  }

  private async bound(): Promise<Client> {
    if (this.closed) throw new LdapError(`${this.opts.url}: the directory connection is closed`, false);
    // `client` is only ever a connection bound by connect(); ldapts cannot reopen it (once()).
    if (this.client?.isConnected) return this.client;
    this.drop();
    if (this.connecting) return this.connecting;
    const b = this.backoff;
    const wait = b ? b.retryAt - Date.now() : 0;
    if (b && wait > 0) {
      throw new LdapError(`${b.error.message} (retrying the connection in ${wait} ms)`, true, { cause: b.error });
    }
    this.connecting = this.connect().then((client) => {
      this.backoff = undefined;
      return client;
    }, (e: unknown) => {
      if (e instanceof LdapError && e.retryable && !this.closed) {
        const windowMs = b ? Math.min(b.windowMs * 2, MAX_BACKOFF_MS) : FIRST_BACKOFF_MS;
        this.backoff = { retryAt: Date.now() + windowMs, windowMs, error: e };
      } else {
        // Reached but refused (credentials, certificate): not a down server; the event says what to fix.
        this.backoff = undefined;
      }
      throw e;
    }).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connect(): Promise<Client> {
    const { host, port, secure } = this.target;
    const tlsOptions: tls.ConnectionOptions = {
      ca: [this.caPem], rejectUnauthorized: true, minVersion: 'TLSv1.2', host,
      ...(this.opts.serverName ? { servername: this.opts.serverName } : net.isIP(host) ? {} : { servername: host }),
    };
    const url = this.opts.url;
    const client = new Client({
      url: `${secure ? 'ldaps' : 'ldap'}://${net.isIPv6(host) ? `[${host}]` : host}:${port}`,
      timeout: this.opts.timeoutMs,
      connectTimeout: this.opts.timeoutMs,
      strictDN: false,
      ...(secure ? { tlsOptions } : {}),
      createConnection: once(net.connect, url) as typeof net.connect,
      createSecureConnection: once(tls.connect, url) as typeof tls.connect,
    });
    let step = 'connect';
    try {
      await bounded((async () => {
        if (!secure && this.opts.startTls) {
          step = 'StartTLS';
          await client.startTLS(tlsOptions);
        }
        step = `bind as ${this.opts.bindDn}`;
        await this.opts.password.use((pw) => bindWithBytes(client, this.opts.bindDn, pw));
      })(), this.opts.timeoutMs, () => void client.unbind().catch(() => undefined));
    } catch (e) {
      await client.unbind().catch(() => undefined);
      throw this.error(e, step);
    }
    if (this.closed) {
      await client.unbind().catch(() => undefined);
      throw new LdapError(`${url}: the directory connection is closed`, false);
    }
    this.client = client;
    return client;
  }
}
