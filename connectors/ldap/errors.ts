import { ResultCodeError, type PasswordPolicyValue } from 'ldapts';
import { describeError, PwsyncError } from '../../core/errors.ts';
import type { EventId } from '../../core/events.ts';
import { ObjectNotFoundError, PolicyViolationError, TargetUnavailableError } from '../../core/extension.ts';
import { LdapError } from '../../core/ldap.ts';

/**
 * The one table from what an LDAP directory answers to pwsync's events (README: "LDAP errors").
 * slapd's diagnostic texts do not say why a password was refused ("fails quality checking policy"
 * for a short one), so the reason comes from the ppolicy response control when the server sent it.
 */

export interface LdapFailureContext {
  readonly connector: string;
  /** The URL as configured, for messages. */
  readonly url: string;
  /** The service account: named when the directory refuses it or its rights. */
  readonly bindDn: string;
  /** The object the operation was for. */
  readonly dn: string;
  /** What was asked, in words: "set the password". */
  readonly operation: string;
  /** The right the operation needs, named when it is missing: "write on userPassword". */
  readonly right: string;
}

type Row =
  | { kind: 'policy' }
  | { kind: 'no-object' }
  | { kind: 'retry'; what: string }
  | { kind: 'account'; what: string }
  | { kind: 'fail'; event: EventId; what: string };

/** LDAP result code → what it means for a set-operation. A code not listed here is retried (6940, then 6941). */
export const RESULT_CODES: Readonly<Record<number, Row>> = {
  3: { kind: 'retry', what: 'the directory\'s time limit was exceeded' },
  8: { kind: 'fail', event: 6951, what: 'the directory requires a stronger (encrypted) connection' },
  13: { kind: 'fail', event: 6951, what: 'the directory requires confidentiality (TLS)' },
  17: { kind: 'fail', event: 6950, what: 'the directory does not know the attribute' },
  19: { kind: 'policy' },
  21: { kind: 'fail', event: 6950, what: 'the directory refused the value\'s syntax' },
  32: { kind: 'no-object' },
  49: { kind: 'account', what: 'the directory refused the service account\'s credentials (invalid credentials): check its password file and that the account is not locked' },
  50: { kind: 'account', what: 'lacks the right' },
  51: { kind: 'retry', what: 'the directory is busy' },
  52: { kind: 'retry', what: 'the directory is unavailable' },
  53: { kind: 'retry', what: 'the directory is unwilling to perform the operation now' },
  65: { kind: 'fail', event: 6950, what: 'the entry\'s object classes do not allow userPassword' },
};

/** ppolicy response control error → the reason an admin reads in the 6927 event. */
export const PPOLICY_REASONS: Readonly<Record<number, string>> = {
  0: 'the password has expired',
  1: 'the account is locked',
  2: 'the password must be changed after a reset',
  3: 'password changes are not allowed for this account',
  4: 'the old password must be supplied',
  5: 'insufficient password quality',
  6: 'too short',
  7: 'too young (changed too recently)',
  8: 'in history',
};

/** A refusal meaning "this value is the current or a recent password": after a lost response it may be our own first attempt. */
export function refusedAsAlreadyUsed(e: unknown, policy: PasswordPolicyValue | undefined): boolean {
  if (!(e instanceof ResultCodeError) || e.code !== 19) return false;
  return policy?.error === 8 || /not being changed from existing value|in history/i.test(e.message);
}

/** The server's diagnostic without ldapts' " Code: 0x13" suffix. */
function diagnostic(e: Error): string {
  return e.message.replace(/\s*Code: 0x[0-9a-f]+$/i, '').trim();
}

export function mapLdapError(e: unknown, ctx: LdapFailureContext, policy?: PasswordPolicyValue): PwsyncError {
  if (e instanceof PwsyncError) return e;
  const where = `connector ${ctx.connector} (${ctx.url})`;
  // Connecting or binding the service account failed (core/ldap.ts already said what to fix).
  if (e instanceof LdapError) {
    const cause = e.cause;
    if (cause instanceof ResultCodeError && cause.code === 49) {
      return new PwsyncError(6942, `${where}: cannot ${ctx.operation} for ${ctx.dn}: the directory refused the bind as ${ctx.bindDn} (invalid credentials): check the service account's password file and that the account is enabled`, { cause: e });
    }
    if (e.retryable) return new TargetUnavailableError(`${where}: cannot ${ctx.operation} for ${ctx.dn}: ${e.message}`, { cause: e });
    // What core/ldap.ts says about TLS (the URL itself, ldaps:// or not, says nothing).
    const tlsProblem = /certificate|StartTLS|encrypted|plain connection/i.test(e.message.replace(/ldaps?:\/\/\S+/gi, ''));
    return new PwsyncError(tlsProblem ? 6951 : 6942, `${where}: cannot ${ctx.operation} for ${ctx.dn}: ${e.message}`, { cause: e });
  }
  if (!(e instanceof ResultCodeError)) {
    // ldapts reports a lost connection, a reset or a timeout as a plain Error: the set may or may not have landed.
    return new TargetUnavailableError(`${where}: ${ctx.operation} for ${ctx.dn} got no answer (${describeError(e)}); retried on a new connection`, { cause: e });
  }
  const row = RESULT_CODES[e.code];
  const text = diagnostic(e);
  switch (row?.kind) {
    case 'policy': {
      const reason = (policy?.error !== undefined ? PPOLICY_REASONS[policy.error] : undefined)
        ?? (text || 'constraint violation');
      return new PolicyViolationError(`${reason} (${where}, ${ctx.dn}: ${text || 'constraint violation'})`, { cause: e });
    }
    case 'no-object':
      return new ObjectNotFoundError(ctx.dn, `${where} (it was deleted or renamed: check the join)`, { cause: e });
    case 'account':
      return new PwsyncError(6942, e.code === 50
        ? `${where}: ${ctx.bindDn} lacks ${ctx.right} of ${ctx.dn} (insufficient access rights): grant it in the directory's ACL (slapd: \`access to attrs=userPassword by dn.exact="${ctx.bindDn}" write\`), then \`pwsync retry\``
        : `${where}: ${row.what} (${ctx.bindDn})`, { cause: e });
    case 'retry':
      return new TargetUnavailableError(`${where}: ${ctx.operation} for ${ctx.dn}: ${row.what} (LDAP ${e.code}${text ? `: ${text}` : ''}); retried`, { cause: e });
    case 'fail':
      return new PwsyncError(row.event, `${where}: ${ctx.operation} for ${ctx.dn}: ${row.what} (LDAP ${e.code}${text ? `: ${text}` : ''})`, { cause: e });
    default:
      return new TargetUnavailableError(`${where}: ${ctx.operation} for ${ctx.dn}: the directory answered LDAP result ${e.code}${text ? ` (${text})` : ''}; retried`, { cause: e });
  }
}
