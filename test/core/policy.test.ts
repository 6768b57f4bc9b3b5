import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PolicyViolationError } from '../../core/extension.ts';
import { allowedCharactersPattern, checkPasswordPolicy, type PasswordPolicy } from '../../core/policy.ts';
import { Secret } from '../../core/secret.ts';
import { testPassword } from '../lib/passwords.ts';

/** The rule a password breaks, or undefined when it passes. */
function broken(policy: PasswordPolicy, password: Buffer, account = 'alice'): string | undefined {
  const s = Secret.adopt(Buffer.from(password));
  try {
    checkPasswordPolicy(policy, s, account, 'app-db');
    return undefined;
  } catch (e) {
    assert.ok(e instanceof PolicyViolationError, String(e));
    assert.equal(e.eventId, 6927);
    assert.equal(e.retryable, false);
    assert.match(e.message, /pwsync policy of connector app-db/);
    assert.ok(!e.message.includes(password.toString('utf8')), 'the message never holds the password');
    return e.reason;
  } finally {
    s.dispose();
  }
}

const pw = (s: string): Buffer => Buffer.from(s, 'utf8');

test('length counts characters, not bytes', () => {
  assert.match(broken({ minLength: 8 }, pw('日本語日本語日'))!, /too short: fewer than 8 characters/);
  assert.equal(broken({ minLength: 7 }, pw('日本語日本語日')), undefined);
  assert.match(broken({ maxLength: 10 }, testPassword('long-enough-to-break'))!, /too long: more than 10 characters/);
});

test('character classes: at least N of four, or each named one', () => {
  assert.equal(broken({ minClasses: 3 }, pw('Abcdef12')), undefined);
  assert.match(broken({ minClasses: 3 }, pw('abcdef12'))!, /2 of the 4 kinds/);
  assert.equal(broken({ minClasses: 3 }, pw('Élève-été')), undefined, 'Unicode letters have case; - is other');
  assert.match(broken({ requireClasses: ['digit'] }, pw('NoDigits-here'))!, /it has no digit/);
  assert.match(broken({ requireClasses: ['other'] }, pw('Letters123'))!, /not a letter or digit/);
});

test('the account name, ignoring case, anywhere in the password', () => {
  assert.match(broken({ notContainingAccountName: true }, pw('xxALICExx-1'))!, /contains the account name/);
  assert.equal(broken({ notContainingAccountName: true }, pw('al-ice-x')), undefined);
  assert.equal(broken({ notContainingAccountName: true }, pw('boboboB'), 'bo'), undefined, 'names under 3 characters are not checked');
  assert.match(broken({ notContainingAccountName: true }, pw('pw-ÉMILIE-2'), 'émilie')!, /account name/);
});

test('allowed characters: one class, each character checked', () => {
  assert.equal(broken({ allowedCharacters: '[\\x20-\\x7E]' }, pw('Plain ASCII ~!')), undefined);
  assert.match(broken({ allowedCharacters: '[\\x20-\\x7E]' }, pw('ascii-then-é'))!, /character 12 is not one of the allowed characters/);
  assert.equal(typeof allowedCharactersPattern('x-y'), 'string');
  assert.equal(typeof allowedCharactersPattern('[\\p{L}'), 'string');
  assert.ok(allowedCharactersPattern('[\\p{L}\\p{N}]') instanceof RegExp);
});

test('invalid UTF-8 is refused, not guessed at', () => {
  assert.match(broken({ minLength: 1 }, Buffer.from([0x61, 0xc3]))!, /not valid UTF-8/);
  assert.match(broken({ minLength: 1 }, Buffer.from([0xed, 0xa0, 0x80]))!, /not valid UTF-8/, 'a surrogate');
  assert.match(broken({ minLength: 1 }, Buffer.from([0xc0, 0xaf]))!, /not valid UTF-8/, 'an overlong form');
});

test('no policy, or an empty one, passes anything', () => {
  assert.equal(broken({}, pw('a')), undefined);
  const s = Secret.adopt(pw('a'));
  checkPasswordPolicy(undefined, s, 'alice', 'app-db');
  s.dispose();
});
