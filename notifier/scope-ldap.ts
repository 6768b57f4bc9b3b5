import path from 'node:path';
import type { NotifierConfig } from '../config/schema.ts';
import { resolveSecret } from '../core/secret-ref.ts';
import { describeError, UsageError } from '../core/errors.ts';
import type { AccountRef } from '../core/extension.ts';
import {
  binaryEquals, domainDn, escapeFilterValue, guidToBytes, LdapDirectory, LdapError, normalizeDn, sidToString, type DirectorySearch,
} from '../core/ldap.ts';
import type { Logger } from '../core/log.ts';
import { includeAll, ScopeUnavailable, type Scope, type ScopeDecision } from './scope.ts';

/**
 * The scope of each target over the domain's directory (PCNS): an account is sent when it is a
 * member of the target's inclusion group and not of its exclusion group. Membership counts nested
 * groups (LDAP_MATCHING_RULE_IN_CHAIN) and the primary group (through tokenGroups, where in-chain
 * never finds it). Groups are named by sAMAccountName or DN. Answers are cached for
 * scopeCacheTtl. A group that does not exist or a directory that does not answer makes the
 * decision impossible: ScopeUnavailable, and the change waits sealed instead of being filtered.
 */

export interface ScopeRule {
  include: string;
  exclude?: string;
}

export interface LdapScopeOptions {
  directory: DirectorySearch;
  /** Where accounts and groups are searched: directory.baseDn, else the domain's naming context. */
  baseDn: string;
  /** Each target's rule by target name; a target without one receives every account. */
  rules: ReadonlyMap<string, ScopeRule>;
  cacheTtlMs: number;
  log: Logger;
  now?: () => number;
}

const IN_CHAIN = '1.2.840.113556.1.4.1941';
const MAX_CACHED = 10_000;

interface Group {
  dn: string;
  sid: string | undefined;
}

/** A TTL cache that also shares a lookup in flight, so that targets deciding at once ask once. */
class Memo<T> {
  private readonly done = new Map<string, { value: T; expiresAt: number }>();
  private readonly pending = new Map<string, Promise<T>>();

  constructor(private readonly ttlMs: number, private readonly now: () => number) {}

  get(key: string, load: () => Promise<T>): Promise<T> {
    const hit = this.done.get(key);
    if (hit && hit.expiresAt > this.now()) return Promise.resolve(hit.value);
    let p = this.pending.get(key);
    if (!p) {
      p = load().then((value) => {
        if (this.done.size >= MAX_CACHED) this.prune();
        this.done.set(key, { value, expiresAt: this.now() + this.ttlMs });
        return value;
      }).finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return p;
  }

  private prune(): void {
    const now = this.now();
    for (const [k, v] of this.done) if (v.expiresAt <= now) this.done.delete(k);
    if (this.done.size >= MAX_CACHED) this.done.clear();
  }
}

const looksLikeDn = (s: string): boolean => /^[A-Za-z][A-Za-z0-9-]*=/.test(s.trim());

export class LdapScope implements Scope {
  private readonly groups: Memo<Group>;
  private readonly accounts: Memo<string | undefined>;
  private readonly tokens: Memo<Set<string>>;
  private readonly members: Memo<boolean>;

  constructor(private readonly opts: LdapScopeOptions) {
    const now = opts.now ?? Date.now;
    this.groups = new Memo(opts.cacheTtlMs, now);
    this.accounts = new Memo(opts.cacheTtlMs, now);
    this.tokens = new Memo(opts.cacheTtlMs, now);
    this.members = new Memo(opts.cacheTtlMs, now);
  }

  async decide(account: AccountRef, target: string): Promise<ScopeDecision> {
    const rule = this.opts.rules.get(target);
    if (!rule) return { send: true };
    const who = `${account.domain}\\${account.samAccountName}`;
    try {
      const dn = await this.accountDn(account);
      if (!dn) {
        return { send: false, reason: `out of scope: the account was not found in the directory under ${this.opts.baseDn} (deleted or renamed since the change?)` };
      }
      if (rule.exclude && await this.isMember(dn, await this.group(rule.exclude, target, 'exclude'))) {
        return { send: false, reason: `out of scope: member of exclusion group ${rule.exclude}` };
      }
      if (!await this.isMember(dn, await this.group(rule.include, target, 'include'))) {
        return { send: false, reason: `out of scope: not a member of inclusion group ${rule.include}` };
      }
      return { send: true };
    } catch (e) {
      if (e instanceof ScopeUnavailable) throw e;
      throw new ScopeUnavailable(`cannot decide whether ${who} is in the scope of target ${target}: ${describeError(e)}`, { cause: e });
    }
  }

  async close(): Promise<void> {
    await this.opts.directory.close();
  }

  private group(spec: string, target: string, which: 'include' | 'exclude'): Promise<Group> {
    return this.groups.get(spec.toLowerCase(), async () => {
      const entries = looksLikeDn(spec)
        ? await this.opts.directory.search(spec, { scope: 'base', filter: '(objectClass=group)', attributes: ['objectSid'], binary: ['objectSid'] })
        : await this.opts.directory.search(this.opts.baseDn, {
          scope: 'sub', filter: `(&(objectClass=group)(sAMAccountName=${escapeFilterValue(spec)}))`, attributes: ['objectSid'], binary: ['objectSid'], sizeLimit: 2,
        });
      const g = entries[0];
      if (!g) {
        throw new ScopeUnavailable(`the ${which === 'include' ? 'inclusion' : 'exclusion'} group ${spec} of target ${target} does not exist `
          + `${looksLikeDn(spec) ? '' : `under ${this.opts.baseDn} `}(${this.opts.directory.description}): create it, or correct targets[].scope.${which} `
          + '(a group\'s sAMAccountName or DN); changes for this target wait until then');
      }
      const sid = g.buffers('objectSid')[0];
      const group = { dn: g.dn, sid: sid ? sidToString(sid) : undefined };
      this.opts.log.debug({ target, [which]: spec, ...group }, 'scope group found');
      return group;
    });
  }

  /** The account's DN: the one the change carries if it still exists, else found by objectGUID or sAMAccountName. */
  private accountDn(a: AccountRef): Promise<string | undefined> {
    const key = a.objectGuid ? `guid:${a.objectGuid.toLowerCase()}` : `name:${a.domain.toLowerCase()}\\${a.samAccountName.toLowerCase()}`;
    return this.accounts.get(`${key}\n${normalizeDn(a.dn)}`, async () => {
      const dir = this.opts.directory;
      if (a.dn) {
        const [e] = await dir.search(a.dn, { scope: 'base', filter: '(objectClass=user)', attributes: ['1.1'] });
        if (e) return e.dn;
      }
      let guid: Buffer | undefined;
      try {
        guid = a.objectGuid ? guidToBytes(a.objectGuid) : undefined;
      } catch {
        guid = undefined;
      }
      if (guid) {
        const [e] = await dir.search(this.opts.baseDn, { scope: 'sub', filter: binaryEquals('objectGUID', guid), attributes: ['1.1'], sizeLimit: 1 });
        if (e) return e.dn;
      }
      if (!a.samAccountName) return undefined;
      const [e] = await dir.search(this.opts.baseDn, {
        scope: 'sub', filter: `(&(objectClass=user)(sAMAccountName=${escapeFilterValue(a.samAccountName)}))`, attributes: ['1.1'], sizeLimit: 2,
      });
      return e?.dn;
    });
  }

  /** tokenGroups holds every security group the account is in, nested and primary: one base search per account. */
  private tokenGroups(dn: string): Promise<Set<string>> {
    return this.tokens.get(normalizeDn(dn), async () => {
      const [e] = await this.opts.directory.search(dn, { scope: 'base', filter: '(objectClass=*)', attributes: ['tokenGroups'], binary: ['tokenGroups'] });
      return new Set((e?.buffers('tokenGroups') ?? []).map(sidToString));
    });
  }

  private isMember(dn: string, group: Group): Promise<boolean> {
    return this.members.get(`${normalizeDn(dn)}\n${normalizeDn(group.dn)}`, async () => {
      if (group.sid && (await this.tokenGroups(dn)).has(group.sid)) return true;
      // Distribution groups are not in tokenGroups; in-chain finds them, nested.
      const hits = await this.opts.directory.search(dn, {
        scope: 'base', filter: `(memberOf:${IN_CHAIN}:=${escapeFilterValue(group.dn)})`, attributes: ['1.1'],
      });
      return hits.length > 0;
    });
  }
}

/**
 * The notifier's scope from its YAML: LdapScope over notifier.directory when any target has a
 * scope, else every account to every target. A scope without a directory is a UsageError.
 */
export function scopeFromConfig(config: Pick<NotifierConfig, 'notifier' | 'targets'>, baseDir: string, log: Logger, now?: () => number): Scope {
  const rules = new Map<string, ScopeRule>();
  for (const t of config.targets) if (t.scope) rules.set(t.name, t.scope);
  if (rules.size === 0) return includeAll;
  const d = config.notifier.directory;
  if (!d) {
    throw new UsageError(`targets ${[...rules.keys()].join(', ')} have a scope, but notifier.directory is not set: the notifier needs the domain's directory to check group membership (an LDAPS URL, its CA and a read-only account)`);
  }
  const password = resolveSecret(d.password, 'notifier.directory.password', baseDir);
  let directory: LdapDirectory;
  try {
    directory = new LdapDirectory({
      url: d.url, startTls: d.startTls, ca: path.resolve(baseDir, d.ca), bindDn: d.bindDn, password, timeoutMs: d.timeout,
      ...(d.serverName ? { serverName: d.serverName } : {}),
    });
  } catch (e) {
    if (e instanceof LdapError) throw new UsageError(`notifier.directory: ${e.message}`, { cause: e });
    throw e;
  }
  return new LdapScope({
    directory, baseDn: d.baseDn ?? domainDn(config.notifier.domain), rules, cacheTtlMs: config.notifier.scopeCacheTtl,
    log: log.child({ component: 'scope' }), ...(now ? { now } : {}),
  });
}
