import { Attribute, Change, PasswordPolicyControl, type Client } from 'ldapts';
import { parseDuration } from '../../config/schema.ts';
import { resolveSecret } from '../../config/secret-ref.ts';
import { PwsyncError, UsageError } from '../../core/errors.ts';
import type { OperationContext, TargetObject } from '../../core/extension.ts';
import { escapeFilterValue, LdapDirectory, LdapError, LdapEntry, type LdapOptions, type LdapQuery } from '../../core/ldap.ts';
import { Secret } from '../../core/secret.ts';
import type { Connector, ConnectorEnv, ConnectorKind, NativePasswordSetter, ObjectSource, SecurityLevel } from '../contract.ts';
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


interface ServerFeatures {
  passwordModify: boolean;
  ppolicy: boolean;
}

/**
 * An LDAP directory as a target: objects are the entries under baseDn that match the filter,
 * anchored by DN; passwords are set natively so the server hashes them and applies its policy.
 * Every connection is ldaps or StartTLS with a verified certificate (core/ldap.ts); a plain URL is
 * refused at open, before a byte is sent.
 */
export class LdapConnector implements Connector, ObjectSource, NativePasswordSetter {
  readonly kind = 'ldap';
  private readonly timeoutMs: number;
  private readonly attrs: readonly string[];
  private pool: LdapDirectory[] = [];
  private next = 0;
  private features: Promise<ServerFeatures> | undefined;

  constructor(readonly name: string, private readonly s: LdapSettings, private readonly env: ConnectorEnv) {
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
    // `dn` is the anchor, always present; the rest as configured, without duplicates.
    this.attrs = [...new Set(s.attributes.filter((a) => a.toLowerCase() !== 'dn'))];
  }

  securityLevel(): SecurityLevel {
    return this.plain() ? 'plain' : 'encrypted';
  }

  async open(): Promise<void> {
    if (this.plain()) {
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
    return `${this.s.url} as ${this.s.bindDn}: bound over TLS; ${f.passwordModify ? 'Password Modify extended operation offered' : 'no Password Modify extended operation: userPassword is replaced'}; ${f.ppolicy ? 'password policy control offered' : 'no password policy control'}; ${n} objects under ${this.s.baseDn}`;
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
      entries = await this.search(`(&${this.s.filter}(${attribute}=${escapeFilterValue(value)}))`, [...this.attrs, attribute], `find ${attribute}`);
    }
    const objects = entries.map((e) => this.object(e));
    // The server matched with the attribute's own rule (often caseIgnore): an exact join checks again.
    if (ignoreCase) return objects;
    return objects.filter((o) => attribute.toLowerCase() === 'dn' ? true : entries.find((e) => e.dn === o.id)?.strings(attribute).includes(value));
  }

  /** Changes with any add, modify, rename or delete under baseDn: the count and the latest modifyTimestamp. */
  async version(): Promise<string> {
    const entries = await this.search(this.s.filter, ['modifyTimestamp'], 'read modifyTimestamp');
    let latest = '';
    for (const e of entries) {
      const t = e.string('modifyTimestamp') ?? '';
      if (t > latest) latest = t;
    }
    return `${entries.length}:${latest}`;
  }

  async attributes(): Promise<readonly string[]> {
    return ['dn', ...this.attrs];
  }

  async setPassword(object: TargetObject, password: Secret, ctx: OperationContext): Promise<void> {
    const dn = object.id;
    const fail = this.failure(dn, 'set the password');
    const features = await this.serverFeatures('read the root DSE');
    const control = features.ppolicy ? new PasswordPolicyControl() : undefined;
    try {
      await this.directory().use((client) => password.use((bytes) => this.apply(client, dn, bytes, features, control)));
    } catch (e) {
      if (this.s.verifyBind && refusedAsAlreadyUsed(e, control?.value) && await this.bindsAs(dn, password, fail)) {
        // A retry whose first attempt landed but whose answer was lost: the password is in place.
        ctx.log.info({ dn }, 'refused as already used, but a bind as the user with it works: the password is in place');
        return;
      }
      throw mapLdapError(e, fail, control?.value);
    }
  }

  private async apply(client: Client, dn: string, bytes: Buffer, f: ServerFeatures, control: PasswordPolicyControl | undefined): Promise<void> {
    if (f.passwordModify) {
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

  /** A simple bind as the user: true when it works, false on invalid credentials; anything else cannot confirm and throws. */
  private async bindsAs(dn: string, password: Secret, fail: LdapFailureContext): Promise<boolean> {
    const dir = new LdapDirectory(this.options(dn, copySecret(password)));
    try {
      await dir.use(async () => undefined);
      return true;
    } catch (e) {
      if (e instanceof LdapError && (e.cause as { code?: unknown } | undefined)?.code === 49) return false;
      throw mapLdapError(e, { ...fail, operation: 'confirm the password by a bind as the user' });
    } finally {
      await dir.close();
    }
  }

  private serverFeatures(step: string): Promise<ServerFeatures> {
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
        throw mapLdapError(e, this.failure('(root DSE)', step));
      });
    return this.features;
  }

  private async search(filter: string, attributes: string[], step: string): Promise<LdapEntry[]> {
    return this.query(this.s.baseDn, { scope: 'sub', filter, attributes }, step);
  }

  /** One entry by DN, if it exists and matches the filter. */
  private async read(dn: string, filter: string, attributes: string[], step: string): Promise<LdapEntry[]> {
    return this.query(dn, { scope: 'base', filter, attributes }, step);
  }

  private async query(base: string, q: LdapQuery, step: string): Promise<LdapEntry[]> {
    try {
      return await this.directory().search(base, q);
    } catch (e) {
      throw mapLdapError(e, this.failure(base, step, 'read access to the entries under baseDn'));
    }
  }

  private object(e: LdapEntry): TargetObject {
    const attributes: Record<string, string> = { dn: e.dn };
    for (const a of this.attrs) {
      const v = e.string(a);
      if (v !== undefined) attributes[a] = v;
    }
    return { id: e.dn, attributes };
  }

  private directory(): LdapDirectory {
    if (this.pool.length === 0) throw new PwsyncError(6940, `connector ${this.name} is not open`, { retryable: true });
    return this.pool[this.next++ % this.pool.length]!;
  }

  private failure(dn: string, operation: string, right = 'write on userPassword'): LdapFailureContext {
    return { connector: this.name, url: this.s.url, bindDn: this.s.bindDn, dn, operation, right };
  }

  private options(bindDn: string, password: Secret): LdapOptions {
    return {
      url: this.s.url, startTls: this.s.startTls, ca: this.env.resolvePath(this.s.ca), bindDn, password,
      timeoutMs: this.timeoutMs, pageSize: this.s.pageSize,
      ...(this.s.serverName ? { serverName: this.s.serverName } : {}),
    };
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
