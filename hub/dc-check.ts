import path from 'node:path';
import type { DomainConfig } from '../config/schema.ts';
import { resolveSecret } from '../core/secret-ref.ts';
import { describeError, UsageError } from '../core/errors.ts';
import { EVENTS } from '../core/events.ts';
import {
  dnIsUnder, domainDn, escapeFilterValue, LdapDirectory, LdapError, type DirectorySearch, type LdapEntry,
} from '../core/ldap.ts';
import type { Logger } from '../core/log.ts';
import type { CallerIdentity } from '../proto/auth.ts';
import { HubRefusal } from '../proto/refusal.ts';
import type { DomainAuthorizer } from './ingest.ts';

/**
 * The DC check: a caller may report for a domain only when it is a writable domain controller of
 * that domain: in the directory a computer with SERVER_TRUST_ACCOUNT, primaryGroupID 516, in
 * OU=Domain Controllers. A Kerberos caller is found by its principal (the machine account NAME$@REALM
 * of the domain's realm), a caller with a client certificate by the DNS name the certificate holds
 * (the computer's dNSHostName). Read-only DCs only when the domain allows them. Answers are cached
 * (dcCacheTtl; refusals a shorter time, so a fix is seen soon). A caller authenticated by TLS alone
 * has no name to check: the hub hears it only on loopback or when its YAML says so (6952).
 */

const SERVER_TRUST_ACCOUNT = 0x2000;
const ACCOUNTDISABLE = 0x2;
const PARTIAL_SECRETS_ACCOUNT = 0x4000000;
const DOMAIN_CONTROLLERS_GROUP = 516;
const READ_ONLY_DCS_GROUP = 521;
const NEGATIVE_TTL_MS = 60_000;
/** A directory that cannot answer is logged at warn at most this often per domain. */
const REPEAT_LOG_MS = 60_000;

const DC_ATTRIBUTES = ['objectClass', 'userAccountControl', 'primaryGroupID', 'msDS-isRODC'];

const CERTIFICATE_FIX = 'issue the DC\'s certificate for its dNSHostName (`pwsync tls client --dc HOST`)';

export type DcVerdict = { ok: true; readOnly: boolean; dn: string } | { ok: false; reason: string };

/** The domain's realm: domains[].realm, else its name in upper case. */
export function realmOf(domain: Pick<DomainConfig, 'name' | 'realm'>): string {
  return (domain.realm ?? domain.name).toUpperCase();
}

/** Where the domain is searched and where its Domain Controllers OU lives. */
export function domainBase(domain: Pick<DomainConfig, 'name' | 'directory'>): string {
  return domain.directory?.baseDn ?? domainDn(domain.name);
}

/**
 * The part of the check that needs no directory: the principal must be a machine account (NAME$)
 * of the domain's realm. Returns the sAMAccountName to look up, or why not.
 */
export function machineAccountOf(principal: string, domain: Pick<DomainConfig, 'name' | 'realm'>): { sam: string } | { reason: string } {
  const at = principal.lastIndexOf('@');
  const name = at < 0 ? principal : principal.slice(0, at);
  const realm = at < 0 ? '' : principal.slice(at + 1);
  const want = realmOf(domain);
  if (realm.toUpperCase() !== want) {
    return {
      reason: `${principal} is a principal of realm ${realm || '(none)'}, but domain ${domain.name} is realm ${want}: only that domain's DCs may report for it. `
        + `Point this DC's notifier at a hub that serves its own domain, or set domains[].realm if ${domain.name}'s realm is not ${want}`,
    };
  }
  if (!name.endsWith('$') || name.includes('/')) {
    return {
      reason: `${principal} is not a machine account (a DC authenticates as NAME$@${want}): a user's or service's principal may not report for ${domain.name}. `
        + `Run the notifier with the DC's machine keytab (notifier.kerberos.keytab, principal DC1$@${want})`,
    };
  }
  return { sam: name };
}

/** Decides from the directory's entry (or its absence) whether the account is a DC the domain accepts. */
export function classifyDc(entry: LdapEntry | undefined, ctx: {
  principal: string;
  /** How the account was looked for, for the message: `DC1$`, or `with dNSHostName dc1.example.com`. */
  account: string;
  domain: Pick<DomainConfig, 'name' | 'allowReadOnlyDCs' | 'directory'>;
  directory: string;
}): DcVerdict {
  const { principal, account, domain } = ctx;
  const base = domainBase(domain);
  const dcOu = `OU=Domain Controllers,${base}`;
  const notDc = (why: string, fix = `only ${domain.name}'s domain controllers may report; run the notifier on a DC (its machine account in ${dcOu})`): DcVerdict => ({
    ok: false, reason: `${principal} is not a writable domain controller of ${domain.name}: ${why}. Fix: ${fix}`,
  });
  if (!entry) return notDc(`no account ${account} under ${base} (${ctx.directory})`);
  const classes = entry.strings('objectClass').map((c) => c.toLowerCase());
  if (!classes.includes('computer')) return notDc(`${entry.dn} is not a computer account`);
  const uac = Number(entry.string('userAccountControl') ?? '0');
  const group = Number(entry.string('primaryGroupID') ?? '0');
  const rodc = entry.string('msDS-isRODC')?.toUpperCase() === 'TRUE' || group === READ_ONLY_DCS_GROUP || (uac & PARTIAL_SECRETS_ACCOUNT) !== 0;
  if (!dnIsUnder(entry.dn, dcOu)) return notDc(`${entry.dn} is not in ${dcOu}`);
  if (rodc && !domain.allowReadOnlyDCs) {
    return notDc(`${entry.dn} is a read-only domain controller`, `set allowReadOnlyDCs: true for domain ${domain.name} to accept changes from RODCs`);
  }
  if (!rodc && (!(uac & SERVER_TRUST_ACCOUNT) || group !== DOMAIN_CONTROLLERS_GROUP)) {
    return notDc(`${entry.dn} has userAccountControl ${uac} and primaryGroupID ${group}, not SERVER_TRUST_ACCOUNT (0x2000) and 516 (Domain Controllers)`);
  }
  if (uac & ACCOUNTDISABLE) return notDc(`${entry.dn} is disabled`, 'enable the DC\'s computer account, or retire this notifier');
  return { ok: true, readOnly: rodc, dn: entry.dn };
}

/** What the Kerberos check needs to know about the hub's SPN. */
export interface SpnOwners {
  /** DNs of the accounts that hold the SPN: exactly one is right. */
  owners: string[];
  /** msDS-KeyVersionNumber of the single owner: the keytab must hold this kvno. */
  kvno?: number;
  /** msDS-SupportedEncryptionTypes of the single owner (unset: RC4 only on the service ticket). */
  supportedEnctypes?: number;
}

/** Accepts `SERVICE/host`, `SERVICE/host@REALM` or the GSS form `SERVICE@host`. */
export function parseSpn(spn: string): { spn: string; realm?: string } {
  if (!spn.includes('/')) {
    const at = spn.indexOf('@');
    return { spn: at < 0 ? spn : `${spn.slice(0, at)}/${spn.slice(at + 1)}` };
  }
  const at = spn.lastIndexOf('@');
  return at < 0 ? { spn } : { spn: spn.slice(0, at), realm: spn.slice(at + 1).toUpperCase() };
}

/** Looks up which accounts hold an SPN, over a domain's directory. */
export async function lookupSpnIn(directory: DirectorySearch, base: string, spn: string): Promise<SpnOwners> {
  const entries = await directory.search(base, {
    scope: 'sub', filter: `(servicePrincipalName=${escapeFilterValue(spn)})`,
    attributes: ['msDS-KeyVersionNumber', 'msDS-SupportedEncryptionTypes'],
  });
  const owners = entries.map((e) => e.dn);
  const one = entries.length === 1 ? entries[0]! : undefined;
  if (!one) return { owners };
  // msDS-KeyVersionNumber is constructed: some servers answer it only to a base search.
  const kvnoText = one.string('msDS-KeyVersionNumber')
    ?? (await directory.search(one.dn, { scope: 'base', filter: '(objectClass=*)', attributes: ['msDS-KeyVersionNumber'] }))[0]?.string('msDS-KeyVersionNumber');
  const enc = one.string('msDS-SupportedEncryptionTypes');
  return {
    owners,
    ...(kvnoText !== undefined ? { kvno: Number(kvnoText) } : {}),
    ...(enc !== undefined ? { supportedEnctypes: Number(enc) } : {}),
  };
}

export interface DcCheckOptions {
  domains: readonly DomainConfig[];
  /** The hub YAML's folder: relative secret files are resolved against it. */
  baseDir: string;
  log: Logger;
  now?: () => number;
  /** How long a refusal is remembered; default 60 s (or dcCacheTtl when shorter). */
  negativeTtlMs?: number;
  /** The directory of a domain; default: LDAP to domains[].directory. */
  directoryFor?: (domain: DomainConfig, index: number) => DirectorySearch | undefined;
}

export interface DcAuthorizer extends DomainAuthorizer {
  /** Who holds an SPN, over the directory of the domain of the SPN's realm (else the first with a directory). */
  lookupSpn(spn: string): Promise<SpnOwners>;
  close(): Promise<void>;
}

/** Opens the LDAP directory of domains[index]; the YAML's mistakes are UsageErrors naming the setting. */
export function openDomainDirectory(domain: DomainConfig, index: number, baseDir: string): DirectorySearch | undefined {
  const d = domain.directory;
  if (!d) return undefined;
  const where = `domains[${index}] (${domain.name}).directory`;
  const password = resolveSecret(d.password, `${where}.password`, baseDir);
  try {
    return new LdapDirectory({
      url: d.url, startTls: d.startTls, ca: path.resolve(baseDir, d.ca), bindDn: d.bindDn, password, timeoutMs: d.timeout,
      ...(d.serverName ? { serverName: d.serverName } : {}),
    });
  } catch (e) {
    if (e instanceof LdapError) throw new UsageError(`${where}: ${e.message}`, { cause: e });
    throw e;
  }
}

interface Cached {
  verdict: DcVerdict;
  expiresAt: number;
}

/** The DomainAuthorizer of a hub whose domains have directories. */
export function createDcAuthorizer(opts: DcCheckOptions): DcAuthorizer {
  return new DcCheck(opts);
}

class DcCheck implements DcAuthorizer {
  private readonly now: () => number;
  /** By domain name in lower case. */
  private readonly directories = new Map<string, DirectorySearch>();
  private readonly cache = new Map<string, Cached>();
  private readonly inFlight = new Map<string, Promise<DcVerdict>>();
  private readonly lastWarned = new Map<string, number>();

  constructor(private readonly opts: DcCheckOptions) {
    this.now = opts.now ?? Date.now;
    const open = opts.directoryFor ?? ((d: DomainConfig, i: number) => openDomainDirectory(d, i, opts.baseDir));
    try {
      opts.domains.forEach((d, i) => {
        const dir = open(d, i);
        if (dir) this.directories.set(d.name.toLowerCase(), dir);
      });
    } catch (e) {
      void this.close();
      throw e;
    }
  }

  async authorize(caller: CallerIdentity, domain: DomainConfig): Promise<void> {
    if (caller.mechanism === 'tls') return;
    const verdict = await this.verdict(caller, domain);
    if (verdict.ok) return;
    this.opts.log.error({ eventId: 6953, principal: caller.principal, domain: domain.name, peer: caller.peer, reason: verdict.reason, fix: EVENTS[6953].fix }, EVENTS[6953].text);
    throw new HubRefusal('forbidden', verdict.reason);
  }

  async lookupSpn(spn: string): Promise<SpnOwners> {
    const parsed = parseSpn(spn);
    const has = (d: DomainConfig): boolean => this.directories.has(d.name.toLowerCase());
    const domain = this.opts.domains.find((d) => has(d) && (!parsed.realm || realmOf(d) === parsed.realm)) ?? this.opts.domains.find(has);
    if (!domain) throw new UsageError(`cannot look up the SPN ${parsed.spn}: no domain has a directory (domains[].directory)`);
    return lookupSpnIn(this.directories.get(domain.name.toLowerCase())!, domainBase(domain), parsed.spn);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.directories.values()].map((d) => d.close()));
  }

  private async verdict(caller: CallerIdentity, domain: DomainConfig): Promise<DcVerdict> {
    const key = `${domain.name.toLowerCase()}\n${caller.mechanism}\n${caller.principal}`;
    const hit = this.cache.get(key);
    if (hit && hit.expiresAt > this.now()) return hit.verdict;
    let p = this.inFlight.get(key);
    if (!p) {
      p = this.lookUp(caller, domain).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, p);
    }
    const verdict = await p;
    const ttl = verdict.ok ? domain.dcCacheTtl : Math.min(domain.dcCacheTtl, this.opts.negativeTtlMs ?? NEGATIVE_TTL_MS);
    if (this.cache.size > 1000) for (const [k, v] of this.cache) if (v.expiresAt <= this.now()) this.cache.delete(k);
    this.cache.set(key, { verdict, expiresAt: this.now() + ttl });
    return verdict;
  }

  private async lookUp(caller: CallerIdentity, domain: DomainConfig): Promise<DcVerdict> {
    const { principal } = caller;
    const search = this.searchFor(caller, domain);
    if ('reason' in search) return { ok: false, reason: search.reason };
    const directory = this.directories.get(domain.name.toLowerCase());
    if (!directory) {
      return {
        ok: false,
        reason: `domain ${domain.name} has no directory, so the hub cannot check that ${principal} is one of its domain controllers: set domains[].directory (an LDAPS URL, CA and a read-only account)`,
      };
    }
    let entries: LdapEntry[];
    try {
      entries = await directory.search(domainBase(domain), { scope: 'sub', filter: search.filter, attributes: DC_ATTRIBUTES, sizeLimit: 2 });
    } catch (e) {
      const message = `the hub cannot check whether ${principal} is a domain controller of ${domain.name} now: ${describeError(e)}; the notifier keeps its changes and retries`;
      const last = this.lastWarned.get(domain.name) ?? 0;
      if (this.now() - last >= REPEAT_LOG_MS) {
        this.lastWarned.set(domain.name, this.now());
        this.opts.log.warn({ principal, domain: domain.name, directory: directory.description, err: describeError(e) }, 'DC check: the directory cannot answer');
      }
      throw new HubRefusal('unavailable', message, { cause: e });
    }
    if (entries.length > 1) {
      return { ok: false, reason: `${principal} is not one domain controller of ${domain.name}: ${entries.map((e) => e.dn).join(' and ')} both match ${search.account}. Fix: ${caller.mechanism === 'certificate' ? CERTIFICATE_FIX : 'remove the duplicate account'}` };
    }
    return classifyDc(entries[0], { principal, account: search.account, domain, directory: directory.description });
  }

  /** The directory filter that finds the caller's computer account, or why no account could be its. */
  private searchFor(caller: CallerIdentity, domain: DomainConfig): { filter: string; account: string } | { reason: string } {
    if (caller.mechanism === 'certificate') {
      return { filter: `(&(objectClass=computer)(dNSHostName=${escapeFilterValue(caller.principal)}))`, account: `with dNSHostName ${caller.principal}` };
    }
    const machine = machineAccountOf(caller.principal, domain);
    if ('reason' in machine) return machine;
    return { filter: `(sAMAccountName=${escapeFilterValue(machine.sam)})`, account: machine.sam };
  }
}
