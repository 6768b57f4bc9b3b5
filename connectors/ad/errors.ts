import { ResultCodeError } from 'ldapts';
import { PwsyncError } from '../../core/errors.ts';
import type { EventId } from '../../core/events.ts';
import { ObjectNotFoundError, PolicyViolationError, TargetUnavailableError } from '../../core/extension.ts';
import { LdapError } from '../../core/ldap.ts';
import { mapLdapError, type LdapFailureContext } from '../ldap/errors.ts';

/**
 * The one table from what an AD DC (Windows, AD LDS, Samba) answers to pwsync's events. The LDAP
 * result code alone says little (a password policy refusal is 19 on Samba and 19 or 53 on
 * Windows), so rows match on the AD extended error too: the Win32 code in hex at the start of the
 * diagnostic text ("0000052D: ..."), and on the text where it says more (Samba names the policy
 * rule that refused; a bind's "data 775" says why the account could not log on).
 */

/** "Reset Password" (User-Force-Change-Password): what an admin set (unicodePwd replace) needs. */
export const RESET_PASSWORD = { name: 'the "Reset Password" right', guid: '00299570-246d-11d0-a768-00aa006e0529' } as const;
/** "Change Password" (User-Change-Password): what a change with the old password needs. */
export const CHANGE_PASSWORD = { name: 'the "Change Password" right', guid: 'ab721a53-1e2f-11d0-9819-00aa0040529b' } as const;
const USER_CLASS = 'bf967aba-0de6-11d0-a285-00aa003049e2';

type Outcome =
  | { kind: 'policy'; reason: string | ((m: RegExpExecArray) => string) }
  | { kind: 'no-object' }
  | { kind: 'rights' }
  | { kind: 'account'; what: string }
  | { kind: 'retry'; what: string }
  | { kind: 'fail'; event: EventId; what: string };

export interface AdErrorRow {
  /** The LDAP result code; any when absent. */
  readonly ldap?: number;
  /** The AD extended error (the Win32 code at the start of the diagnostic); any when absent. */
  readonly extended?: number;
  /** A pattern the diagnostic text must match; its groups go to a reason function. */
  readonly text?: RegExp;
  readonly outcome: Outcome;
}

const NO_REASON = 'it does not meet the domain\'s password policy (length, complexity, history or minimum age; the DC does not say which)';
const policy = (reason: Extract<Outcome, { kind: 'policy' }>['reason']): Outcome => ({ kind: 'policy', reason });
const bindRefused = (what: string): Outcome => ({ kind: 'account', what });

/** First match wins: specific rows (extended error and text) before the rows for a bare result code. */
export const AD_ERRORS: readonly AdErrorRow[] = [
  // ERROR_PASSWORD_RESTRICTION. Samba's texts name the rule; Windows' do not.
  { extended: 0x52d, text: /too short\b.*?(\d+) characters/i, outcome: policy((m) => `too short: the domain requires at least ${m[1]} characters`) },
  { extended: 0x52d, text: /complexity/i, outcome: policy('not complex enough: it does not meet the domain\'s complexity rules (or the DC\'s check password script refused it)') },
  { extended: 0x52d, text: /already used \(in history\)/i, outcome: policy('in history: it is one of the account\'s previous passwords') },
  { extended: 0x52d, text: /already used \(previous password\)/i, outcome: policy('in history: it is the account\'s current password') },
  { extended: 0x52d, text: /too young/i, outcome: policy('too young: the domain\'s minimum password age has not passed since the last change') },
  { extended: 0x52d, text: /miscellaneous/i, outcome: policy('refused by a miscellaneous restriction (on Samba: the check password script refused it or timed out)') },
  { extended: 0x52d, outcome: policy(NO_REASON) },
  // ERROR_INVALID_PASSWORD (Windows and Samba on a change), ERROR_WRONG_PASSWORD.
  { extended: 0x56, outcome: policy('the old password is wrong') },
  { extended: 0x52b, outcome: policy('the old password is wrong') },
  { extended: 0x775, outcome: policy('the account is locked out: the DC permits no password change until it is unlocked') },
  // A bind refused (the service account's, or a user's): "AcceptSecurityContext error, data 52e".
  { ldap: 49, text: /\bdata 52e\b/i, outcome: bindRefused('wrong password') },
  { ldap: 49, text: /\bdata 525\b/i, outcome: bindRefused('no such account') },
  { ldap: 49, text: /\bdata 530\b/i, outcome: bindRefused('not permitted to log on at this time') },
  { ldap: 49, text: /\bdata 531\b/i, outcome: bindRefused('not permitted to log on from this host') },
  { ldap: 49, text: /\bdata 532\b/i, outcome: bindRefused('its password has expired') },
  { ldap: 49, text: /\bdata 533\b/i, outcome: bindRefused('the account is disabled') },
  { ldap: 49, text: /\bdata 701\b/i, outcome: bindRefused('the account has expired') },
  { ldap: 49, text: /\bdata 773\b/i, outcome: bindRefused('its password must be changed first (reset with "must change at next logon")') },
  { ldap: 49, text: /\bdata 775\b/i, outcome: bindRefused('the account is locked out') },
  { ldap: 49, outcome: bindRefused('invalid credentials') },
  // ERROR_ACCESS_DENIED, ERROR_DS_INSUFF_ACCESS_RIGHTS; Samba sends 50 without an extended error.
  { extended: 0x5, outcome: { kind: 'rights' } },
  { extended: 0x2098, outcome: { kind: 'rights' } },
  { ldap: 50, outcome: { kind: 'rights' } },
  // ERROR_DS_NO_SUCH_OBJECT (Samba), ERROR_DS_OBJ_NOT_FOUND (Windows).
  { extended: 0x2030, outcome: { kind: 'no-object' } },
  { extended: 0x208d, outcome: { kind: 'no-object' } },
  { ldap: 32, outcome: { kind: 'no-object' } },
  { ldap: 53, text: /NT hash password directly/i, outcome: { kind: 'fail', event: 6950, what: 'the DC did not take the value as a password (unicodePwd must be the password in double quotes, UTF-16LE)' } },
  // Windows answers a unicodePwd write over a connection without 128-bit encryption so (0000001F: WILL_NOT_PERFORM).
  { ldap: 53, outcome: { kind: 'fail', event: 6951, what: 'the DC is unwilling to write unicodePwd: it takes passwords only over an encrypted connection (LDAPS, or StartTLS, with a 128-bit cipher)' } },
  { ldap: 8, outcome: { kind: 'fail', event: 6951, what: 'the DC requires an encrypted connection' } },
  { ldap: 13, outcome: { kind: 'fail', event: 6951, what: 'the DC requires confidentiality (TLS)' } },
  { ldap: 19, outcome: policy(NO_REASON) },
  { extended: 0x2024, outcome: { kind: 'retry', what: 'the DC is busy' } },
  { ldap: 3, outcome: { kind: 'retry', what: 'the DC\'s time limit was exceeded' } },
  { ldap: 51, outcome: { kind: 'retry', what: 'the DC is busy' } },
  { ldap: 52, outcome: { kind: 'retry', what: 'the DC is unavailable' } },
  { ldap: 17, outcome: { kind: 'fail', event: 6950, what: 'the DC does not know the attribute (is this an AD DC? use kind ldap for other directories)' } },
  { ldap: 21, outcome: { kind: 'fail', event: 6950, what: 'the DC refused the value\'s syntax' } },
];

/** The server's diagnostic without ldapts' " Code: 0x13" suffix. */
export function diagnosticText(e: Error): string {
  return e.message.replace(/\s*Code: 0x[0-9a-f]+$/i, '').trim();
}

/** The AD extended error at the start of a diagnostic ("0000052D: ..."), if there is one. */
export function extendedError(text: string): number | undefined {
  const m = /^([0-9A-Fa-f]{8}):/.exec(text);
  return m ? parseInt(m[1]!, 16) : undefined;
}

export interface AdAnswer {
  readonly row: AdErrorRow | undefined;
  readonly match: RegExpExecArray | undefined;
  readonly text: string;
}

/** The table's row for an LDAP result code and diagnostic text. */
export function classifyAdAnswer(code: number, text: string): AdAnswer {
  const extended = extendedError(text);
  for (const row of AD_ERRORS) {
    if (row.ldap !== undefined && row.ldap !== code) continue;
    if (row.extended !== undefined && row.extended !== extended) continue;
    const match = row.text ? row.text.exec(text) ?? undefined : undefined;
    if (row.text && !match) continue;
    return { row, match, text };
  }
  return { row: undefined, match: undefined, text };
}

/**
 * A refusal that may be this very password already in place: a retry whose first attempt landed
 * but whose answer was lost. A change (`isChange`) is then refused because the old password is no
 * longer the current one; a set, where the DC checks history at all, as already used.
 */
export function adRefusedAsAlreadyUsed(e: unknown, isChange: boolean): boolean {
  if (!(e instanceof ResultCodeError)) return false;
  const text = diagnosticText(e);
  const extended = extendedError(text);
  if (isChange && (extended === 0x56 || extended === 0x52b)) return true;
  return extended === 0x52d && /already used/i.test(text);
}

/** How to grant a password right to the service account, on Windows and on Samba. */
function grantHint(ctx: LdapFailureContext): string {
  const right = [RESET_PASSWORD, CHANGE_PASSWORD].find((r) => r.name === ctx.right);
  if (!right) return `grant ${ctx.bindDn} ${ctx.right}`;
  const how = right === RESET_PASSWORD
    ? 'Active Directory Users and Computers → the OU → Delegate Control → "Reset user passwords and force password change at next logon"'
    : 'it is granted to Everyone by default: look for a Deny ACE or "User cannot change password" on the account';
  return `grant it on the OU that holds the users (${how}; Samba: samba-tool dsacl set --objectdn=OU --sddl='(OA;CIIO;CR;${right.guid};${USER_CLASS};SID of ${ctx.bindDn})'), then \`pwsync retry\``;
}

export function mapAdError(e: unknown, ctx: LdapFailureContext): PwsyncError {
  if (e instanceof PwsyncError) return e;
  const where = `connector ${ctx.connector} (${ctx.url})`;
  // The service account's own bind (core/ldap.ts): say why AD refused it.
  if (e instanceof LdapError && e.cause instanceof ResultCodeError && e.cause.code === 49) {
    const { row } = classifyAdAnswer(49, diagnosticText(e.cause));
    const why = row?.outcome.kind === 'account' ? row.outcome.what : 'invalid credentials';
    return new PwsyncError(6942, `${where}: cannot ${ctx.operation} for ${ctx.dn}: the DC refused the bind as ${ctx.bindDn} (${why}): check the service account's password file and that the account is enabled and not locked out`, { cause: e });
  }
  // Other connect and bind failures, a lost connection, a timeout: as for any LDAP directory.
  if (!(e instanceof ResultCodeError)) return mapLdapError(e, ctx);
  const { row, match, text } = classifyAdAnswer(e.code, diagnosticText(e));
  const answer = `LDAP ${e.code}${text ? `: ${text}` : ''}`;
  const outcome = row?.outcome;
  switch (outcome?.kind) {
    case 'policy': {
      const reason = typeof outcome.reason === 'string' ? outcome.reason : outcome.reason(match!);
      return new PolicyViolationError(`${reason} (${where}, ${ctx.dn}: ${text || 'constraint violation'})`, { cause: e });
    }
    case 'no-object':
      return new ObjectNotFoundError(ctx.dn, `${where} (it was deleted or moved: check the join)`, { cause: e });
    case 'rights':
      return new PwsyncError(6942, `${where}: cannot ${ctx.operation} for ${ctx.dn}: ${ctx.bindDn} lacks ${ctx.right} there (insufficient access rights; ${answer}): ${grantHint(ctx)}`, { cause: e });
    case 'account':
      return new PwsyncError(6942, `${where}: cannot ${ctx.operation} for ${ctx.dn}: the DC refused a bind as ${ctx.bindDn} (${outcome.what})`, { cause: e });
    case 'retry':
      return new TargetUnavailableError(`${where}: ${ctx.operation} for ${ctx.dn}: ${outcome.what} (${answer}); retried`, { cause: e });
    case 'fail':
      return new PwsyncError(outcome.event, `${where}: ${ctx.operation} for ${ctx.dn}: ${outcome.what} (${answer})`, { cause: e });
    default:
      return new TargetUnavailableError(`${where}: ${ctx.operation} for ${ctx.dn}: the DC answered ${answer}; retried`, { cause: e });
  }
}
