import { Attribute, Change, PasswordPolicyControl, type Client, type Filter, type PasswordPolicyValue } from 'ldapts';
import { parseDuration } from '../../core/duration.ts';
import { resolveSecret } from '../../core/secret-ref.ts';
import { PwsyncError, UsageError } from '../../core/errors.ts';
import { ObjectNotFoundError, type OperationContext, type TargetObject } from '../../core/extension.ts';
import {
  binaryEquals, escapeFilterValue, guidToBytes, guidToString, LdapDirectory, LdapError, LdapEntry, type LdapOptions, type LdapQuery,
} from '../../core/ldap.ts';
import { Secret } from '../../core/secret.ts';
import type {
  Connector, ConnectorEnv, ConnectorKind, IncrementalObjectSource, NativePasswordSetter, ObjectDelta, ObjectSource, SecurityLevel,
} from '../contract.ts';
import type { LdapSettings } from '../kinds-schema.ts';
import { mapLdapError, refusedAsAlreadyUsed, type LdapFailureContext } from './errors.ts';

/** RFC 3062 Password Modify extended operation. */
export const PASSWORD_MODIFY_OID = '1.3.6.1.4.1.4203.1.11.1';
/** draft-behera password policy request/response control. */
export const PPOLICY_CONTROL_OID = '1.3.6.1.4.1.42.2.27.8.5.1';

/** DER length octets (short or long form). */
function berLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/**
 * PasswdModifyRequestValue ::= SEQUENCE { userIdentity [0] OCTET STRING, newPasswd [2] OCTET STRING },
 * written byte by byte into one unpooled buffer so the password goes from the Secret's bytes into
 * the BER value without a JS string, and the caller can wipe the whole value afterwards.
 */
export function passwordModifyValue(dn: string, password: Buffer): Buffer {
  const id = Buffer.from(dn, 'utf8');
  const idLen = berLength(id.length);
  const pwLen = berLength(password.length);
  const contentLength = 1 + idLen.length + id.length + 1 + pwLen.length + password.length;
  const seqLen = berLength(contentLength);
  const out = Buffer.allocUnsafeSlow(1 + seqLen.length + contentLength);
  let o = 0;
  out[o++] = 0x30;
  o += seqLen.copy(out, o);
  out[o++] = 0x80;
  o += idLen.copy(out, o);
  o += id.copy(out, o);
  out[o++] = 0x82;
  o += pwLen.copy(out, o);
  password.copy(out, o);
  return out;
}

const ATTRIBUTE_NAME = /^([A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)+)$/;


export interface ServerFeatures {
  passwordModify: boolean;
  ppolicy: boolean;
}

/** What differs between directory kinds beyond their settings. */
export interface DirectoryKindDefaults {
  /** Attributes whose values are binary (objectGUID): read as bytes, shown as text. */
  readonly binary: readonly string[];
  /**
   * The attribute that marks a change for incremental reads, compared with >=: a generalized time
   * (modifyTimestamp, one-second steps, so the last second is read again) or a counter (uSNChanged).
   */
  readonly changeMarker: 'modifyTimestamp' | 'uSNChanged';
}

const LDAP_DEFAULTS: DirectoryKindDefaults = { binary: [], changeMarker: 'modifyTimestamp' };

/**
 * An LDAP directory as a target: objects are the entries under baseDn that match the filter,
 * anchored by DN; passwords are set natively so the server hashes them and applies its policy.
 * Every connection is ldaps or StartTLS with a verified certificate (core/ldap.ts); a plain URL is
 * refused at open, before a byte is sent.
 */
export class LdapConnector implements Connector, ObjectSource, IncrementalObjectSource, NativePasswordSetter {
  readonly kind: string = 'ldap';
  protected readonly timeoutMs: number;
  private readonly attrs: readonly string[];
  private pool: LdapDirectory[] = [];
  private next = 0;
  private features: Promise<ServerFeatures> | undefined;
  /** Anchor → DN as last read: a set-operation carries only the anchor. */
  private readonly dns = new Map<string, string>();

  constructor(
    readonly name: string,
    protected readonly s: LdapSettings,
    protected readonly env: ConnectorEnv,
    protected readonly kindDefaults: DirectoryKindDefaults = LDAP_DEFAULTS,
  ) {
    try {
      this.timeoutMs = parseDuration(s.timeout);
    } catch {
      throw new UsageError(`connector ${name}: connection.timeout ${JSON.stringify(s.timeout)} is not a duration: write one such as 500ms, 10s, 1m`);
    }
    if (!/^\(.*\)$/s.test(s.filter.trim())) {
      throw new UsageError(`connector ${name}: connection.filter ${JSON.stringify(s.filter)} is not an LDAP filter: write it in parentheses, such as (objectClass=inetOrgPerson)`);
    }
    const bad = s.attributes.find((a) => !ATTRIBUTE_NAME.test(a));
    if (bad !== undefined) throw new UsageError(`connector ${name}: connection.attributes: ${JSON.stringify(bad)} is not an LDAP attribute name (letters, digits and -, or an OID)`);
    if (s.anchor.toLowerCase() !== 'dn' && !ATTRIBUTE_NAME.test(s.anchor)) {
      throw new UsageError(`connector ${name}: connection.anchor ${JSON.stringify(s.anchor)} is not an LDAP attribute name: write entryUUID, objectGUID, nsUniqueId, GUID or dn`);
    }
    // `dn` is always there; the anchor is always read; the rest as configured, without duplicates.
    this.attrs = [...new Set([...(this.anchorIsDn() ? [] : [s.anchor]), ...s.attributes.filter((a) => a.toLowerCase() !== 'dn')])];
  }

  securityLevel(): SecurityLevel {
    return this.plain() ? 'plain' : 'encrypted';
  }

  async open(): Promise<void> {
    if (this.plain() && this.env.requireSecureConnection !== false) {
      throw new PwsyncError(6951, `connector ${this.name}: ${this.s.url} is a plain LDAP connection: passwords and the bind password would travel in clear, so nothing is sent. Use ldaps://, or set startTls: true (with ca: the CA file)`);
    }
    if (this.pool.length > 0) return;
    const password = resolveSecret(this.s.password, `connector ${this.name}: connection.password`, this.env.resolvePath('.'));
    try {
      // poolSize independent connections, each owning a copy of the service password (disposed on close).
      for (let i = 0; i < this.s.poolSize; i++) this.pool.push(new LdapDirectory(this.options(this.s.bindDn, copySecret(password))));
    } catch (e) {
      await this.close();
      throw e instanceof LdapError ? new PwsyncError(/certificate|CA file/i.test(e.message) ? 6951 : 6942, `connector ${this.name}: ${e.message}`, { cause: e }) : e;
    } finally {
      password.dispose();
    }
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = [];
    this.features = undefined;
    await Promise.all(pool.map((d) => d.close()));
  }

  async test(): Promise<string> {
    const f = await this.serverFeatures('read the root DSE');
    const n = (await this.search(this.s.filter, ['1.1'], 'list objects')).length;
    const how = this.s.setWith === 'userPassword' ? 'userPassword is replaced (setWith)'
      : f.passwordModify ? 'Password Modify extended operation offered' : 'no Password Modify extended operation: userPassword is replaced';
    return `${this.s.url} as ${this.s.bindDn}: ${this.channel()}; ${how}; ${f.ppolicy ? 'password policy control offered' : 'no password policy control'}; ${n} objects under ${this.s.baseDn}`;
  }

  async *list(): AsyncGenerator<TargetObject> {
    for (const e of await this.search(this.s.filter, [...this.attrs], 'list objects')) yield this.object(e);
  }

  async find(attribute: string, value: string, ignoreCase: boolean): Promise<TargetObject[]> {
    let entries: LdapEntry[];
    if (attribute.toLowerCase() === 'dn') {
      entries = await this.read(value, this.s.filter, [...this.attrs], `find ${value}`);
    } else {
      if (!ATTRIBUTE_NAME.test(attribute)) {
        throw new PwsyncError(6942, `connector ${this.name}: ${JSON.stringify(attribute)} is not an LDAP attribute name: fix the join rule's target`, { retryable: false });
      }
      let filter: string | Filter = `(&${this.s.filter}(${attribute}=${escapeFilterValue(value)}))`;
      if (this.isBinary(attribute)) {
        // A GUID is searched by its bytes; text that is no GUID matches nothing.
        try {
          filter = binaryEquals(attribute, guidToBytes(value), this.s.filter);
        } catch {
          return [];
        }
      }
      entries = await this.search(filter, [...this.attrs, attribute], `find ${attribute}`);
    }
    const objects = entries.map((e) => this.object(e));
    // The server matched with the attribute's own rule (often caseIgnore): an exact join checks again.
    if (ignoreCase || this.isBinary(attribute)) return objects;
    return objects.filter((o, i) => attribute.toLowerCase() === 'dn' ? true : entries[i]!.strings(attribute).includes(value));
  }

  /** The newest change marker under baseDn and the count (a deletion changes the count). */
  async version(): Promise<string> {
    const marker = this.kindDefaults.changeMarker;
    const entries = await this.search(this.s.filter, [marker], `read ${marker}`);
    let latest = '';
    for (const e of entries) latest = this.later(latest, e.string(marker) ?? '');
    return `${entries.length}:${latest}`;
  }

  /**
   * Every object, or those whose change marker is at or after the token's: a set-operation, an
   * attribute change and a rename (modrdn) all move it. Deletions leave no trace to search for,
   * so `removed` is empty and the join index reads everything again now and then.
   */
  async changedSince(since: string | undefined): Promise<ObjectDelta> {
    const marker = this.kindDefaults.changeMarker;
    const filter = since === undefined || since === ''
      ? this.s.filter
      : `(&${this.s.filter}(${marker}>=${escapeFilterValue(marker === 'uSNChanged' ? String(BigInt(since) + 1n) : since)}))`;
    const entries = await this.search(filter, [...this.attrs, marker], since === undefined ? 'list objects' : `read objects changed since ${since}`);
    let token = since ?? '';
    for (const e of entries) token = this.later(token, e.string(marker) ?? '');
    return { token, complete: since === undefined || since === '', objects: entries.map((e) => this.object(e)), removed: [] };
  }

  /** The later of two change markers: generalized times compare as text, USNs as numbers. */
  private later(a: string, b: string): string {
    if (this.kindDefaults.changeMarker === 'uSNChanged') {
      if (!/^\d+$/.test(b)) return a;
      return a === '' || BigInt(b) > BigInt(a) ? b : a;
    }
    return b > a ? b : a;
  }

  async attributes(): Promise<readonly string[]> {
    return ['dn', ...this.attrs];
  }

  async setPassword(object: TargetObject, password: Secret, ctx: OperationContext): Promise<void> {
    await this.onObject(object, 'set the password', (dn) => this.setAt(dn, password, ctx));
  }

  private async setAt(dn: string, password: Secret, ctx: OperationContext): Promise<void> {
    const fail = this.failure(dn, 'set the password');
    const features = await this.serverFeatures('read the root DSE');
    const control = features.ppolicy ? new PasswordPolicyControl() : undefined;
    try {
      await this.directory().use((client) => password.use((bytes) => this.writePassword(client, dn, bytes, features, control)));
    } catch (e) {
      if (this.s.verifyBind && this.alreadyUsed(e, control?.value) && await this.bindsAs(dn, password, fail)) {
        // A retry whose first attempt landed but whose answer was lost: the password is in place.
        ctx.log.info({ dn }, 'refused as already used, but a bind as the user with it works: the password is in place');
        return;
      }
      throw this.mapFailure(e, fail, control?.value);
    }
  }

  /**
   * Runs `fn` on the object's DN. A set-operation carries the anchor only: the DN comes from the
   * last read, else from a search by anchor; when the object was renamed since (noSuchObject at
   * the old DN), it is found by its anchor again and `fn` runs once more at the new DN.
   */
  protected async onObject(object: TargetObject, operation: string, fn: (dn: string) => Promise<void>): Promise<void> {
    if (this.anchorIsDn()) return fn(object.id);
    const known = object.attributes.dn ?? this.dns.get(object.id);
    const dn = known ?? await this.dnByAnchor(object.id, operation);
    try {
      await fn(dn);
    } catch (e) {
      if (!(e instanceof ObjectNotFoundError) || known === undefined) throw e;
      this.dns.delete(object.id);
      const moved = await this.dnByAnchor(object.id, operation).catch(() => undefined);
      if (moved === undefined || moved === dn) throw e;
      await fn(moved);
    }
  }

  private async dnByAnchor(anchor: string, operation: string): Promise<string> {
    let filter: string | Filter = `(&${this.s.filter}(${this.s.anchor}=${escapeFilterValue(anchor)}))`;
    if (this.isBinary(this.s.anchor)) {
      try {
        filter = binaryEquals(this.s.anchor, guidToBytes(anchor), this.s.filter);
      } catch {
        throw new ObjectNotFoundError(anchor, `connector ${this.name}: ${JSON.stringify(anchor)} is not a GUID, so no ${this.s.anchor} can match it`);
      }
    }
    const [e] = await this.search(filter, [this.s.anchor], `find ${this.s.anchor} ${anchor}`);
    if (!e) {
      throw new ObjectNotFoundError(anchor, `connector ${this.name} (${this.s.url}): no entry under ${this.s.baseDn} has ${this.s.anchor} ${anchor}, so cannot ${operation} (it was deleted, or moved out of baseDn or the filter)`);
    }
    this.dns.set(anchor, e.dn);
    return e.dn;
  }

  /** Writes the password at `dn`: the Password Modify extended operation where offered, else a userPassword replace. */
  protected async writePassword(client: Client, dn: string, bytes: Buffer, f: ServerFeatures, control: PasswordPolicyControl | undefined): Promise<void> {
    const setWith = this.s.setWith ?? 'auto';
    if (setWith === 'passwordModify' && !f.passwordModify) {
      throw new PwsyncError(6950, `connector ${this.name} (${this.s.url}): the directory does not offer the Password Modify extended operation, and setWith is passwordModify: set setWith: auto or userPassword`, { retryable: false });
    }
    if (f.passwordModify && setWith !== 'userPassword') {
      const value = passwordModifyValue(dn, bytes);
      try {
        await client.exop(PASSWORD_MODIFY_OID, value, control);
      } finally {
        value.fill(0);
      }
      return;
    }
    // `bytes` is the Secret's unmasked copy, wiped by Secret.use once this settles.
    await client.modify(dn, new Change({ operation: 'replace', modification: new Attribute({ type: 'userPassword', values: [bytes] }) }), control);
  }

  /** A refusal that may be this password already in place (a retry after a lost answer). */
  protected alreadyUsed(e: unknown, policy: PasswordPolicyValue | undefined): boolean {
    return refusedAsAlreadyUsed(e, policy);
  }

  /** What the directory answered → the event. */
  protected mapFailure(e: unknown, ctx: LdapFailureContext, policy?: PasswordPolicyValue): PwsyncError {
    return mapLdapError(e, ctx, policy);
  }

  /** A simple bind as the user: true when it works, false on invalid credentials; anything else cannot confirm and throws. */
  protected async bindsAs(dn: string, password: Secret, fail: LdapFailureContext): Promise<boolean> {
    const dir = new LdapDirectory(this.options(dn, copySecret(password)));
    try {
      await dir.use(async () => undefined);
      return true;
    } catch (e) {
      if (e instanceof LdapError && (e.cause as { code?: unknown } | undefined)?.code === 49) return false;
      throw this.mapFailure(e, { ...fail, operation: 'confirm the password by a bind as the user' });
    } finally {
      await dir.close();
    }
  }

  protected serverFeatures(step: string): Promise<ServerFeatures> {
    this.features ??= this.directory().search('', { scope: 'base', filter: '(objectClass=*)', attributes: ['supportedExtension', 'supportedControl'] })
      .then((entries) => {
        const root = entries[0];
        return {
          passwordModify: root?.strings('supportedExtension').includes(PASSWORD_MODIFY_OID) ?? false,
          ppolicy: root?.strings('supportedControl').includes(PPOLICY_CONTROL_OID) ?? false,
        };
      })
      .catch((e: unknown) => {
        this.features = undefined;
        throw this.mapFailure(e, this.failure('(root DSE)', step));
      });
    return this.features;
  }

  private async search(filter: string | Filter, attributes: string[], step: string): Promise<LdapEntry[]> {
    return this.query(this.s.baseDn, { scope: 'sub', filter, attributes }, step);
  }

  /** One entry by DN, if it exists and matches the filter. */
  private async read(dn: string, filter: string, attributes: string[], step: string): Promise<LdapEntry[]> {
    return this.query(dn, { scope: 'base', filter, attributes }, step);
  }

  private async query(base: string, q: LdapQuery, step: string): Promise<LdapEntry[]> {
    const binary = this.kindDefaults.binary.filter((b) => q.attributes.some((a) => a.toLowerCase() === b.toLowerCase()));
    try {
      return await this.directory().search(base, binary.length > 0 ? { ...q, binary } : q);
    } catch (e) {
      throw this.mapFailure(e, this.failure(base, step, 'read access to the entries under baseDn'));
    }
  }

  private object(e: LdapEntry): TargetObject {
    const attributes: Record<string, string> = { dn: e.dn };
    for (const a of this.attrs) {
      const v = this.isBinary(a) ? e.buffers(a).map((b) => guidToString(b))[0] : e.string(a);
      if (v !== undefined) attributes[a] = v;
    }
    if (this.anchorIsDn()) return { id: e.dn, attributes };
    const id = Object.entries(attributes).find(([k]) => k.toLowerCase() === this.s.anchor.toLowerCase())?.[1];
    if (id === undefined) {
      throw new PwsyncError(6942, `connector ${this.name} (${this.s.url}): ${e.dn} has no ${this.s.anchor}, the connector's anchor: set connection.anchor to an attribute every entry has (entryUUID on OpenLDAP, nsUniqueId on 389, GUID on eDirectory, objectGUID on AD), or dn`, { retryable: false });
    }
    this.dns.set(id, e.dn);
    return { id, attributes };
  }

  private isBinary(attribute: string): boolean {
    return this.kindDefaults.binary.some((b) => b.toLowerCase() === attribute.toLowerCase());
  }

  private anchorIsDn(): boolean {
    return this.s.anchor.toLowerCase() === 'dn';
  }

  protected directory(): LdapDirectory {
    if (this.pool.length === 0) throw new PwsyncError(6940, `connector ${this.name} is not open`, { retryable: true });
    return this.pool[this.next++ % this.pool.length]!;
  }

  protected failure(dn: string, operation: string, right = 'write on userPassword'): LdapFailureContext {
    return { connector: this.name, url: this.s.url, bindDn: this.s.bindDn, dn, operation, right };
  }

  protected options(bindDn: string, password: Secret): LdapOptions {
    return {
      url: this.s.url, startTls: this.s.startTls, ca: this.env.resolvePath(this.s.ca), bindDn, password,
      timeoutMs: this.timeoutMs, pageSize: this.s.pageSize, allowPlain: this.env.requireSecureConnection === false,
      ...(this.s.serverName ? { serverName: this.s.serverName } : {}),
    };
  }

  /** How `pwsync connector test` describes the channel it bound over. */
  protected channel(): string {
    return this.plain() ? 'bound in PLAIN (not encrypted: requireSecureConnection is false)'
      : `bound over ${this.s.startTls ? 'StartTLS' : 'TLS'}`;
  }

  private plain(): boolean {
    return /^ldap:\/\//i.test(this.s.url) && !this.s.startTls;
  }
}

function copySecret(s: Secret): Secret {
  return s.use((b) => Secret.adopt(Buffer.from(b)));
}

export const ldapKind: ConnectorKind<LdapSettings> = {
  kind: 'ldap',
  description: 'An LDAP directory (OpenLDAP, 389, eDirectory…): Password Modify extended operation or userPassword replace, over ldaps or StartTLS',
  create: (name, settings, env) => new LdapConnector(name, settings, env),
};
