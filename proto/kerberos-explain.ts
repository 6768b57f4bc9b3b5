import { existsSync } from 'node:fs';
import { formatTime } from '../core/change-time.ts';
import { enctypeName, readKeytab, type KeytabEntry } from '../core/keytab.ts';

/**
 * MIT GSSAPI failures, said so an admin knows what to fix: each names the principal, the SPN and
 * the fix. The texts matched here are MIT krb5's own (1.20); anything unknown is passed on whole.
 */

/** `PWSYNC@hub.example.com` (GSS host-based name) → `PWSYNC/hub.example.com` (the SPN). */
export function spnOf(service: string): string {
  const at = service.indexOf('@');
  return at < 0 ? service : `${service.slice(0, at)}/${service.slice(at + 1).toLowerCase()}`;
}

/** The minor status, without the GSS major text that says nothing. */
export function gssDetail(message: string): string {
  return message
    .replace(/^Unspecified GSS failure\.\s+Minor code may provide more information:\s*/, '')
    .replace(/^No credentials were supplied, or the credentials were unavailable or inaccessible:\s*/, '')
    .trim();
}

/** Kerberos' default `clockskew`. */
export const ALLOWED_SKEW_S = 300;

const TIME_FIX = 'synchronize both with the domain\'s time source (the PDC emulator: w32tm /resync on Windows, chrony or ntpd elsewhere)';

/** "the notifier's clock is 600 s behind the hub's (hub time …)"; `skewMs` = notifier − hub. */
export function describeSkew(skewMs: number | undefined, hubTimeMs: number): string {
  const hub = `hub time ${formatTime(hubTimeMs)}`;
  if (skewMs === undefined) return `the notifier did not send its time (${hub})`;
  const s = Math.round(Math.abs(skewMs) / 1000);
  if (s === 0) return `the notifier's clock agrees with the hub's (${hub})`;
  return `the notifier's clock is ${s} s ${skewMs > 0 ? 'ahead of' : 'behind'} the hub's (${hub})`;
}

export interface AcceptorContext {
  /** `PWSYNC@hub.example.com` */
  service: string;
  /** The hub's keytab, to say what it holds. */
  keytab?: string;
  /** The caller's address. */
  peer: string;
  /** The notifier's clock when it made the token (x-pwsync-client-time), if it sent it. */
  clientTimeMs?: number;
  hubTimeMs: number;
}

function exportFix(spn: string, keytab: string | undefined): string {
  const file = keytab ?? 'KEYTAB';
  return `export the key again: \`samba-tool domain exportkeytab ${file} --principal=${spn}\` on a Samba DC, or \`ktpass /princ ${spn}@REALM /mapuser ACCOUNT /crypto AES256-SHA1 /ptype KRB5_NT_PRINCIPAL /out ${file}\` on Windows, and restart the hub`;
}

/** What the keytab holds, for a message; never throws. */
function holdings(keytab: string | undefined): string {
  if (!keytab) return '';
  let entries: KeytabEntry[];
  try {
    entries = readKeytab(keytab);
  } catch {
    return '';
  }
  if (entries.length === 0) return ` (the keytab ${keytab} is empty)`;
  const byKey = new Map<string, string[]>();
  for (const e of entries) {
    const k = `${e.principal} kvno ${e.kvno}`;
    byKey.set(k, [...(byKey.get(k) ?? []), enctypeName(e.enctype)]);
  }
  return ` (the keytab ${keytab} holds: ${[...byKey].map(([k, types]) => `${k} (${[...new Set(types)].join(', ')})`).join('; ')})`;
}

/** Why the hub could not accept a caller's token (initializeServer or step failed). */
export function explainAcceptorFailure(message: string, ctx: AcceptorContext): string {
  const detail = gssDetail(message);
  const spn = spnOf(ctx.service);
  const skew = ctx.clientTimeMs === undefined ? undefined : ctx.clientTimeMs - ctx.hubTimeMs;
  const who = `the caller at ${ctx.peer}`;
  let m: RegExpExecArray | null;

  if (/Clock skew too great/i.test(detail)) {
    return `${who} was refused: clock skew: ${describeSkew(skew, ctx.hubTimeMs)}; Kerberos allows ${ALLOWED_SKEW_S} s: ${TIME_FIX} (${detail})`;
  }
  if (/Ticket not yet valid/i.test(detail)) {
    return `${who} was refused: its ticket for ${spn} is not valid yet by the hub's clock, so the hub's clock is behind the KDC's: ${describeSkew(skew, ctx.hubTimeMs)}; Kerberos allows ${ALLOWED_SKEW_S} s: ${TIME_FIX} (${detail})`;
  }
  if (/Ticket expired/i.test(detail)) {
    const clocks = skew !== undefined && Math.abs(skew) > ALLOWED_SKEW_S * 1000 / 5 ? `${describeSkew(skew, ctx.hubTimeMs)}: ${TIME_FIX}; or ` : '';
    return `${who} was refused: its ticket for ${spn} has expired by the hub's clock: ${clocks}the notifier uses an old ticket: with notifier.kerberos.ccache renew it (kinit -k), or give the notifier a keytab (notifier.kerberos.keytab) so that it renews tickets itself (${detail})`;
  }
  if (/Request is a replay/i.test(detail)) {
    return `${who} was refused: it sent a Kerberos token for ${spn} that the hub has already seen (a replay): someone resent a captured request. A pwsync notifier makes a new token for every call, so its own changes are not affected (${detail})`;
  }
  if ((m = /Request ticket server (\S+) kvno (\d+) not found in keytab; keytab is likely out of date/i.exec(detail))) {
    return `${who} was refused: its ticket for ${m[1]} is encrypted with key version ${m[2]}, which the hub's keytab does not hold${holdings(ctx.keytab)}: the account's password changed after the keytab was exported; ${exportFix(spn, ctx.keytab)}`;
  }
  if ((m = /Request ticket server (\S+) kvno (\d+) not found in keytab; ticket is likely out of date/i.exec(detail))) {
    return `${who} was refused: its ticket for ${m[1]} has key version ${m[2]}, older than the hub's keytab${holdings(ctx.keytab)}: the notifier holds a ticket from before the key changed; it gets a new one within the ticket lifetime (restart the notifier to get it now)`;
  }
  if ((m = /Request ticket server (\S+) kvno (\d+) found in keytab but not with enctype (\S+)/i.exec(detail))) {
    return `${who} was refused: the KDC encrypted its ticket for ${m[1]} with ${m[3]}, but the hub's keytab has no ${m[3]} key for kvno ${m[2]}${holdings(ctx.keytab)}. This is the RC4-only trap: set msDS-SupportedEncryptionTypes to 24 (AES128 + AES256) on the account that holds ${spn}, so that an export holds AES keys; then ${exportFix(spn, ctx.keytab)}`;
  }
  if ((m = /Request ticket server (\S+)(?: kvno \d+)?(?: enctype \S+)? found in keytab but cannot decrypt ticket/i.exec(detail))) {
    return `${who} was refused: the hub's key for ${m[1]} does not decrypt the ticket, so the keytab holds another key than the KDC${holdings(ctx.keytab)}: the account was reset or re-created with the same key version; ${exportFix(spn, ctx.keytab)}`;
  }
  if ((m = /Request ticket server (\S+) not found in keytab/i.exec(detail))) {
    const asked = m[1]!;
    const askedSpn = asked.replace(/@.*$/, '');
    if (askedSpn.toLowerCase() !== spn.toLowerCase()) {
      return `${who} was refused: it presented a ticket for ${asked}, but this hub is ${spn} (hub.kerberos.service ${ctx.service}): set targets[].kerberos.service: ${ctx.service} in that notifier's YAML (if ${askedSpn} is meant to be this hub, set hub.kerberos.service to it and ${exportFix(askedSpn, ctx.keytab)})`;
    }
    return `${who} was refused: the hub's keytab has no key for ${asked}${holdings(ctx.keytab)}: ${exportFix(spn, ctx.keytab)}`;
  }
  if ((m = /Key table file '([^']+)' not found/i.exec(detail))) {
    return `the hub cannot accept Kerberos callers: its keytab ${m[1]} does not exist (hub.kerberos.keytab): ${exportFix(spn, m[1])}`;
  }
  if (/No key table entry found/i.test(detail)) {
    return `the hub cannot accept Kerberos callers: its keytab${ctx.keytab ? ` ${ctx.keytab}` : ''} has no key for ${spn}${holdings(ctx.keytab)}: ${exportFix(spn, ctx.keytab)}`;
  }
  if (/Permission denied|Unsupported key table format|Bad format in keytab/i.test(detail)) {
    return `the hub cannot accept Kerberos callers: its keytab${ctx.keytab ? ` ${ctx.keytab}` : ''} cannot be read (${detail}): give the hub's service account read access (mode 0600, owned by it), or ${exportFix(spn, ctx.keytab)}`;
  }
  if (/unsupported mechanism|Invalid token|Defective token|ASN\.1|Decrypt integrity check failed|Message stream modified|wrong message type|Success$/i.test(detail) || /Invalid token/i.test(message)) {
    return `${who} was refused: its token is not a valid Kerberos AP-REQ for ${spn} (${detail}): it was damaged or forged; a pwsync notifier sends a fresh, valid one with each call`;
  }
  return `${who} was refused: Kerberos authentication for ${spn} failed: ${detail}`;
}

export interface InitiatorContext {
  service: string;
  /** The notifier's principal, when configured or read from its keytab. */
  principal?: string;
  keytab?: string;
  ccache?: string;
  hubAddress: string;
}

const SPN_FIX = (spn: string) => `register it on the hub's service account: \`samba-tool spn add ${spn} ACCOUNT\` on a Samba DC, or \`setspn -S ${spn} ACCOUNT\` on Windows; if it is registered on two accounts the KDC cannot choose: \`setspn -X\` lists duplicates, remove one with \`setspn -D ${spn} OTHER-ACCOUNT\` (\`samba-tool spn delete\`)`;

/** Why the notifier could not make a token for the hub (initializeClient or the first step failed). */
export function explainInitiatorFailure(message: string, ctx: InitiatorContext): string {
  const detail = gssDetail(message);
  const spn = spnOf(ctx.service);
  const me = ctx.principal ?? 'this notifier';
  const creds = ctx.keytab ? `notifier.kerberos.keytab ${ctx.keytab}` : ctx.ccache ? `notifier.kerberos.ccache ${ctx.ccache}` : 'notifier.kerberos';
  let m: RegExpExecArray | null;

  if ((m = /Server krbtgt\/([^@\s]+)@(\S+) not found in Kerberos database/i.exec(detail))) {
    return `${me} cannot get a ticket for ${spn}: the hub's host maps to realm ${m[1]}, which the KDC of ${m[2]} does not trust: set targets[].kerberos.service to the host name registered in the SPN, or map that host to ${m[2]} under [domain_realm] in krb5.conf (notifier.kerberos.krb5Config) (${detail})`;
  }
  if ((m = /Server (\S+) not found in Kerberos database/i.exec(detail))) {
    return `${me} cannot get a ticket for ${m[1]}: the KDC knows no account with the SPN ${spn} (targets[].kerberos.service ${ctx.service}). Check that it is the hub's hub.kerberos.service; if so, ${SPN_FIX(spn)} (${detail})`;
  }
  if (/multiple entries|not unique/i.test(detail)) {
    return `${me} cannot get a ticket for ${spn}: the SPN is registered on more than one account: \`setspn -X\` lists duplicates; keep it only on the hub's service account (\`setspn -D ${spn} OTHER-ACCOUNT\`, \`samba-tool spn delete\`) (${detail})`;
  }
  if ((m = /Key table file '([^']+)' not found/i.exec(detail))) {
    return `${me} has no credentials: the keytab ${m[1]} does not exist (${creds}): export this DC's machine account key there (\`samba-tool domain exportkeytab ${m[1]} --principal=${ctx.principal ?? 'DC1$'}\`) or correct the path (${detail})`;
  }
  if ((m = /Can't find client principal (\S+) in cache collection/i.exec(detail))) {
    return `${m[1]} has no key in ${creds}${holdings(ctx.keytab)}: set notifier.kerberos.principal to a principal the keytab holds, or export that principal's key into it (${detail})`;
  }
  if (/No Kerberos credentials available/i.test(detail) && ctx.keytab && !existsSync(ctx.keytab)) {
    return `${me} has no Kerberos credentials: the keytab ${ctx.keytab} (notifier.kerberos.keytab) does not exist: export this DC's machine account key there (\`samba-tool domain exportkeytab ${ctx.keytab} --principal=${ctx.principal ?? 'DC1$'}\`) or correct the path (${detail})`;
  }
  if (/No Kerberos credentials available/i.test(detail)) {
    return `${me} has no Kerberos credentials (${creds})${holdings(ctx.keytab)}: ${ctx.ccache && !ctx.keytab ? `run kinit for the DC's machine account into ${ctx.ccache}, or set notifier.kerberos.keytab` : 'check that the keytab exists, is readable by the notifier\'s service account and holds the DC\'s machine account key (DC1$@REALM)'} (${detail})`;
  }
  if (/Ticket expired|Credentials cache .*expired|Ticket has expired/i.test(detail)) {
    return `${me} holds only expired tickets in ${creds}: renew them (kinit), or set notifier.kerberos.keytab so that the notifier renews them itself (${detail})`;
  }
  if (/Clock skew too great/i.test(detail)) {
    return `${me} cannot get a ticket for ${spn}: this DC's clock differs from the KDC's by more than ${ALLOWED_SKEW_S} s: ${TIME_FIX} (${detail})`;
  }
  if (/Preauthentication failed|Password incorrect|Decrypt integrity check failed/i.test(detail)) {
    return `${me} was refused by the KDC: the key in ${creds} is not the account's current key (the machine password changed after the keytab was exported): export it again (\`samba-tool domain exportkeytab\`) (${detail})`;
  }
  if ((m = /Client '?([^' ]+)'? not found in Kerberos database/i.exec(detail))) {
    return `the KDC knows no account ${m[1]}: set notifier.kerberos.principal to this DC's machine account (DC1$@REALM) and export its key (${detail})`;
  }
  if ((m = /Cannot find KDC for realm "?([^"]+)"?/i.exec(detail))) {
    return `${me} cannot find a KDC for realm ${m[1]}: add the realm's KDCs under [realms] in krb5.conf (notifier.kerberos.krb5Config), or enable dns_lookup_kdc (${detail})`;
  }
  if (/Cannot contact any KDC|Cannot resolve network address for KDC/i.test(detail)) {
    return `${me} cannot reach a KDC to get a ticket for ${spn}: check the KDC addresses in krb5.conf and the network; the change stays queued (${detail})`;
  }
  return `${me} cannot get a Kerberos ticket for ${spn} to call the hub at ${ctx.hubAddress}: ${detail}`;
}

/** Why a hub's answer did not prove it is the hub (no AP-REP, or one that does not verify). */
export function explainReplyFailure(problem: { missing: true } | { message: string }, ctx: InitiatorContext): string {
  const spn = spnOf(ctx.service);
  if ('missing' in problem) {
    return `no Kerberos reply token (AP-REP) for ${spn} came back: the answer comes from a server that does not hold ${spn}'s key (an impostor holding the hub's TLS certificate) or from a hub running with TLS alone: set hub.kerberos on the hub (service ${ctx.service})`;
  }
  return `the reply token does not verify for ${spn} (${gssDetail(problem.message)}): the answer may come from an impostor; check that the hub's keytab holds ${spn}'s current key`;
}
