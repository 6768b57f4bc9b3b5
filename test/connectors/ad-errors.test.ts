import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  BusyError, ConstraintViolationError, InsufficientAccessError, InvalidCredentialsError, NoSuchObjectError, UnknownStatusCodeError,
  StrongAuthRequiredError, UnavailableError, UnwillingToPerformError, type ResultCodeError,
} from 'ldapts';
import {
  AD_ERRORS, adRefusedAsAlreadyUsed, CHANGE_PASSWORD, classifyAdAnswer, extendedError, mapAdError, RESET_PASSWORD,
} from '../../connectors/ad/errors.ts';
import type { LdapFailureContext } from '../../connectors/ldap/errors.ts';
import { PwsyncError } from '../../core/errors.ts';
import { ObjectNotFoundError, PolicyViolationError, TargetUnavailableError } from '../../core/extension.ts';
import { ldapErrorOf } from '../../core/ldap.ts';

/**
 * The AD error table against what DCs really answer. The Samba texts were captured from the test
 * DC (Samba 4.17, test/env/samba-dc.sh) with ldapmodify over LDAPS; the Windows ones are the forms
 * Windows Server DCs send (extended error, then the DSID and problem), as logged by admins.
 */
const SAMBA = {
  tooShort: '0000052D: Constraint violation - check_password_restrictions: the password is too short. It should be equal or longer than 7 characters!',
  complexity: '0000052D: Constraint violation - check_password_restrictions: the password does not meet the complexity criteria!',
  history: '0000052D: Constraint violation - check_password_restrictions: the password was already used (in history)!',
  current: '0000052D: Constraint violation - check_password_restrictions: the password was already used (previous password)!',
  tooYoung: '0000052D: Constraint violation - check_password_restrictions: password is too young to change!',
  script: '0000052D: Constraint violation - check_password_restrictions: the password doesn\'t fit due to a miscellaneous restriction!',
  wrongOld: '00000056: Constraint violation - check_password_restrictions: The old password specified doesn\'t match!',
  lockedChange: '00000775: Password change not permitted, account locked out! at ../../source4/dsdb/samdb/ldb_modules/password_hash.c:3929:setup_io',
  noObject: '00002030: No such Base DN: CN=nobody,OU=People,DC=pwsync,DC=test',
  denied: 'error in module acl: insufficient access rights during LDB_MODIFY (50)',
  ntHash: '00002035: setup_io: it\'s not allowed to set the NT hash password directly\'',
  strongAuth: 'BindSimple: Transport encryption required.',
  bind: (data: string) => `80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data ${data}, v1db1`,
};
const WINDOWS = {
  policy53: '0000052D: SvcErr: DSID-031A12D2, problem 5003 (WILL_NOT_PERFORM), data 0\n',
  policy19: '0000052D: AtrErr: DSID-03191083, #1:\n\t0: 0000052D: DSID-03191083, problem 1005 (CONSTRAINT_ATT_TYPE), data 0, Att 9005a (unicodePwd)\n',
  wrongOld: '00000056: AtrErr: DSID-03190F80, #1:\n\t0: 00000056: DSID-03190F80, problem 1005 (CONSTRAINT_ATT_TYPE), data 0, Att 9005a (unicodePwd)\n',
  noObject: '0000208D: NameErr: DSID-0310020A, problem 2001 (NO_OBJECT), data 0, best match of:\n\t\'OU=People,DC=corp,DC=example,DC=com\'\n',
  denied: '00000005: SecErr: DSID-03152492, problem 4003 (INSUFF_ACCESS_RIGHTS), data 0\n',
  unencrypted: '0000001F: SvcErr: DSID-031A12D2, problem 5003 (WILL_NOT_PERFORM), data 0\n',
  busy: '00002024: SvcErr: DSID-03100838, problem 5001 (BUSY), data 0\n',
};

const DN = 'CN=frank,OU=People,DC=pwsync,DC=test';
const SVC = 'pwsync-svc@pwsync.test';
const set: LdapFailureContext = { connector: 'corp-ad', url: 'ldaps://dc1.pwsync.test', bindDn: SVC, dn: DN, operation: 'set the password', right: RESET_PASSWORD.name };
const change: LdapFailureContext = { ...set, operation: 'change the password', right: CHANGE_PASSWORD.name };

function mapped(e: ResultCodeError | Error, ctx = set): PwsyncError {
  const m = mapAdError(e, ctx);
  assert.ok(m instanceof PwsyncError);
  return m;
}

function policy(e: ResultCodeError, reason: RegExp, ctx = set): void {
  const m = mapped(e, ctx);
  assert.ok(m instanceof PolicyViolationError, m.message);
  assert.equal(m.eventId, 6927);
  assert.equal(m.retryable, false);
  assert.match(m.reason, reason);
  assert.ok(m.message.includes(DN), 'names the object');
}

describe('AD errors: one table from result code, extended error and text to the event', () => {
  test('the extended error is read from the start of the diagnostic only', () => {
    assert.equal(extendedError(SAMBA.tooShort), 0x52d);
    assert.equal(extendedError(WINDOWS.denied), 0x5);
    assert.equal(extendedError(SAMBA.denied), undefined);
    assert.equal(extendedError(`x ${SAMBA.tooShort}`), undefined);
  });

  test('Samba\'s password restrictions → 6927 with the reason in words', () => {
    policy(new ConstraintViolationError(SAMBA.tooShort), /^too short: the domain requires at least 7 characters \(/);
    policy(new ConstraintViolationError(SAMBA.complexity), /not complex enough/);
    policy(new ConstraintViolationError(SAMBA.history), /in history: .*previous passwords/);
    policy(new ConstraintViolationError(SAMBA.current), /in history: .*current password/);
    policy(new ConstraintViolationError(SAMBA.tooYoung), /minimum password age/);
    policy(new ConstraintViolationError(SAMBA.script), /check password script/);
  });

  test('Windows\' 0000052D, on 19 or on 53, → 6927 saying the DC gave no reason', () => {
    policy(new ConstraintViolationError(WINDOWS.policy19), /does not meet the domain's password policy .*does not say which/);
    policy(new UnwillingToPerformError(WINDOWS.policy53), /does not meet the domain's password policy/);
  });

  test('a wrong old password on a change (00000056) → 6927 "the old password is wrong"', () => {
    policy(new ConstraintViolationError(SAMBA.wrongOld), /^the old password is wrong \(/, change);
    policy(new ConstraintViolationError(WINDOWS.wrongOld), /^the old password is wrong \(/, change);
    policy(new ConstraintViolationError(SAMBA.lockedChange), /locked out/, change);
  });

  test('no such object (00002030, 0000208D, 32) → 6923', () => {
    for (const text of [SAMBA.noObject, WINDOWS.noObject, '']) {
      const m = mapped(new NoSuchObjectError(text));
      assert.ok(m instanceof ObjectNotFoundError);
      assert.equal(m.eventId, 6923);
      assert.equal(m.retryable, false);
      assert.ok(m.message.includes(DN));
    }
  });

  test('access denied (50; 00000005) → 6942 naming the bind account and the right, not retried', () => {
    for (const text of [SAMBA.denied, WINDOWS.denied]) {
      const s = mapped(new InsufficientAccessError(text));
      assert.equal(s.eventId, 6942);
      assert.equal(s.retryable, false);
      assert.ok(s.message.includes(SVC), s.message);
      assert.ok(s.message.includes('"Reset Password"'), s.message);
      assert.ok(s.message.includes(RESET_PASSWORD.guid), 'says which extended right to grant');
      const c = mapped(new InsufficientAccessError(text), change);
      assert.ok(c.message.includes('"Change Password"'), c.message);
      assert.ok(c.message.includes(CHANGE_PASSWORD.guid));
    }
  });

  test('unicodePwd refused over an unencrypted connection (53, 0000001F) or without TLS (8) → 6951', () => {
    for (const e of [new UnwillingToPerformError(WINDOWS.unencrypted), new StrongAuthRequiredError(SAMBA.strongAuth)]) {
      const m = mapped(e);
      assert.equal(m.eventId, 6951);
      assert.equal(m.retryable, false);
    }
    assert.equal(mapped(new UnwillingToPerformError(SAMBA.ntHash)).eventId, 6950, 'a value that is not a quoted password');
  });

  test('busy, unavailable, a lost connection, a timeout → retried (6940)', () => {
    for (const e of [new BusyError(WINDOWS.busy), new UnavailableError(''), new Error('Connection closed'), new UnknownStatusCodeError(80, '00000000: something new')]) {
      const m = mapped(e);
      assert.ok(m instanceof TargetUnavailableError, m.message);
      assert.equal(m.retryable, true);
    }
    const timeout = ldapErrorOf(new Error('timed out after 5000 ms'), { url: set.url, bindDn: SVC, ca: 'ca.pem', step: 'connect' });
    assert.equal(mapped(timeout).retryable, true);
  });

  test('the service account\'s bind refused → 6942 with AD\'s reason from "data NNN"', () => {
    for (const [data, why] of [['52e', /wrong password/], ['775', /locked out/], ['533', /disabled/], ['532', /expired/]] as const) {
      const e = ldapErrorOf(new InvalidCredentialsError(SAMBA.bind(data)), { url: set.url, bindDn: SVC, ca: 'ca.pem', step: `bind as ${SVC}` });
      const m = mapped(e);
      assert.equal(m.eventId, 6942);
      assert.equal(m.retryable, false);
      assert.ok(m.message.includes(SVC));
      assert.match(m.message, why);
    }
  });

  test('an error already mapped passes through', () => {
    const e = new PwsyncError(6950, 'the password is not valid UTF-8');
    assert.equal(mapAdError(e, set), e);
  });

  test('what may be this very password already in place: history or current on a set; also a wrong old one on a change', () => {
    assert.equal(adRefusedAsAlreadyUsed(new ConstraintViolationError(SAMBA.history), false), true);
    assert.equal(adRefusedAsAlreadyUsed(new ConstraintViolationError(SAMBA.current), false), true);
    assert.equal(adRefusedAsAlreadyUsed(new ConstraintViolationError(SAMBA.wrongOld), true), true);
    assert.equal(adRefusedAsAlreadyUsed(new ConstraintViolationError(WINDOWS.wrongOld), true), true);
    assert.equal(adRefusedAsAlreadyUsed(new ConstraintViolationError(SAMBA.wrongOld), false), false);
    assert.equal(adRefusedAsAlreadyUsed(new ConstraintViolationError(SAMBA.tooShort), true), false, 'a reason that rules it out');
    assert.equal(adRefusedAsAlreadyUsed(new Error('Connection closed'), true), false);
  });

  test('every row can be reached: no row is hidden behind an earlier, broader one', () => {
    AD_ERRORS.forEach((row, i) => {
      const earlier = AD_ERRORS.slice(0, i).find((r) => (r.ldap === undefined || r.ldap === row.ldap)
        && (r.extended === undefined || r.extended === row.extended) && (r.text === undefined || (row.text !== undefined && r.text.source === row.text.source)));
      assert.equal(earlier, undefined, `row ${i} (${JSON.stringify({ ...row, text: row.text?.source })}) is shadowed`);
    });
    assert.equal(classifyAdAnswer(19, SAMBA.history).row?.outcome.kind, 'policy');
  });
});
