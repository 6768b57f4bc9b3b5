import { PolicyViolationError } from './extension.ts';
import type { Secret } from './secret.ts';

/**
 * pwsync's own password policy for one connector, checked before anything is sent to the
 * connected system. It matters where the system cannot check for itself: a client-side SCRAM
 * verifier or a stored hash hides the password from the server's own policy.
 *
 * The password is read as code points from the Secret's bytes; no string of the whole password
 * is made (only one-character strings, to classify and fold each code point).
 */
export interface PasswordPolicy {
  /** In characters (Unicode code points). */
  readonly minLength?: number;
  readonly maxLength?: number;
  /** At least this many of: lower-case letters, upper-case letters, digits, other characters. */
  readonly minClasses?: number;
  /** Each of these classes at least once. */
  readonly requireClasses?: readonly CharacterClass[];
  /** Refuse a password that contains the account's sAMAccountName (ignoring case; names under 3 characters are not checked, as AD does). */
  readonly notContainingAccountName?: boolean;
  /** A regular-expression character class every character must match, e.g. `[\x20-\x7E]`. */
  readonly allowedCharacters?: string;
}

export type CharacterClass = 'lower' | 'upper' | 'digit' | 'other';

const CLASS_NAMES: Readonly<Record<CharacterClass, string>> = {
  lower: 'lower-case letter', upper: 'upper-case letter', digit: 'digit', other: 'character that is not a letter or digit',
};

function classOf(ch: string): CharacterClass {
  if (/\p{Ll}/u.test(ch)) return 'lower';
  if (/\p{Lu}/u.test(ch)) return 'upper';
  if (/\p{Nd}/u.test(ch)) return 'digit';
  return 'other';
}

/** The character class as a RegExp matching one character, or an error message saying what is wrong. */
export function allowedCharactersPattern(cls: string): RegExp | string {
  if (!/^\[.*\]$/su.test(cls)) return `allowedCharacters ${JSON.stringify(cls)} is not a character class: write it in brackets, such as [\\x20-\\x7E]`;
  try {
    return new RegExp(`^${cls}$`, 'u');
  } catch (e) {
    return `allowedCharacters ${JSON.stringify(cls)} is not a valid character class (${(e as Error).message})`;
  }
}

/** UTF-8 bytes → one-character strings; undefined for invalid UTF-8 (refused: it cannot be checked). */
function characters(bytes: Buffer): string[] | undefined {
  const out: string[] = [];
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i]!;
    const n = b < 0x80 ? 1 : b >= 0xf0 && b < 0xf8 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 && b < 0xe0 ? 2 : 0;
    if (n === 0 || i + n > bytes.length) return undefined;
    let cp = n === 1 ? b : b & (0xff >> (n + 1));
    for (let k = 1; k < n; k++) {
      const c = bytes[i + k]!;
      if ((c & 0xc0) !== 0x80) return undefined;
      cp = (cp << 6) | (c & 0x3f);
    }
    if ((n === 3 && cp < 0x800) || (n === 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff)) return undefined;
    out.push(String.fromCodePoint(cp));
    i += n;
  }
  return out;
}

/**
 * Throws PolicyViolationError (6927) naming the connector and the first rule the password breaks,
 * never the password. `accountName` is the sAMAccountName the change is for.
 */
export function checkPasswordPolicy(policy: PasswordPolicy | undefined, password: Secret, accountName: string, connector: string): void {
  if (!policy) return;
  const refuse = (rule: string): never => {
    throw new PolicyViolationError(`${rule} (pwsync policy of connector ${connector})`);
  };
  password.use((bytes) => {
    const chars = characters(bytes) ?? refuse('the password is not valid UTF-8');
    if (policy.minLength !== undefined && chars.length < policy.minLength) refuse(`too short: fewer than ${policy.minLength} characters`);
    if (policy.maxLength !== undefined && chars.length > policy.maxLength) refuse(`too long: more than ${policy.maxLength} characters`);
    if (policy.allowedCharacters !== undefined) {
      const allowed = allowedCharactersPattern(policy.allowedCharacters);
      if (typeof allowed === 'string') refuse(allowed);
      else {
        const at = chars.findIndex((c) => !allowed.test(c));
        if (at >= 0) refuse(`character ${at + 1} is not one of the allowed characters ${policy.allowedCharacters}`);
      }
    }
    const classes = new Set(chars.map(classOf));
    for (const c of policy.requireClasses ?? []) if (!classes.has(c)) refuse(`it has no ${CLASS_NAMES[c]}`);
    if (policy.minClasses !== undefined && classes.size < policy.minClasses) {
      refuse(`it has ${classes.size} of the 4 kinds of characters (lower case, upper case, digits, others), fewer than ${policy.minClasses}`);
    }
    if (policy.notContainingAccountName && [...accountName].length >= 3) {
      const name = [...accountName.toLowerCase()];
      const folded = chars.map((c) => c.toLowerCase());
      const found = folded.some((_, i) => name.every((n, k) => folded[i + k] === n));
      if (found) refuse('it contains the account name');
    }
  });
}
