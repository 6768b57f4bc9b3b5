import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { PolicyViolationError } from '../../core/extension.ts';

/**
 * A PostgreSQL SCRAM-SHA-256 verifier computed here, so the clear password never reaches the
 * server (and so never its log: log_statement and log_min_error_statement print the statement).
 * The password is normalised as PostgreSQL and pg normalise it at login (the SASLprep subset of
 * RFC 4013 both apply); passwords whose SASLprep outcome we cannot reproduce exactly are refused.
 */

const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g;
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B\u180C\u180D\u200C\u200D\u2060\uFE00-\uFE0F\uFEFF]/g;

/**
 * What RFC 4013 prohibits (PostgreSQL then falls back to the raw bytes, which pg would not send),
 * and right-to-left scripts (its bidi rule): refused rather than guessed. Unassigned code points
 * too: a later Unicode version could map them differently on the server.
 */
const REFUSED: ReadonlyArray<readonly [RegExp, string]> = [
  [/[\u0000-\u001F\u007F-\u009F]/u, 'it contains a control character'],
  [/[\u2028\u2029\u200E\u200F\u202A-\u202E\u206A-\u206F\u2FF0-\u2FFB\uFFF9-\uFFFD]/u, 'it contains a formatting or replacement character SASLprep prohibits'],
  [/[\uE000-\uF8FF\u{F0000}-\u{FFFFD}\u{100000}-\u{10FFFD}]/u, 'it contains a private-use character'],
  [/[\uFDD0-\uFDEF\uFFFE\uFFFF\u{1FFFE}\u{1FFFF}\u{E0001}\u{E0020}-\u{E007F}]/u, 'it contains a non-character or tag character'],
  [/\p{Cn}/u, 'it contains a code point Unicode has not assigned'],
  [/[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}]/u, 'it contains right-to-left characters, whose SASLprep bidi rules the client-side verifier does not reproduce'],
];

/** PostgreSQL's SASLprep of a password, or a PolicyViolationError saying why it cannot be done here. */
export function saslprep(password: string): string {
  for (const [re, reason] of REFUSED) {
    if (re.test(password)) throw new PolicyViolationError(`${reason}; PostgreSQL's SCRAM login would not match a verifier computed from it`);
  }
  const prepared = password.replace(NON_ASCII_SPACE, ' ').replace(MAPPED_TO_NOTHING, '').normalize('NFKC');
  if (prepared.length === 0) throw new PolicyViolationError('it is empty once normalised (SASLprep)');
  return prepared;
}

/** The verifier of a password given as UTF-8 bytes; invalid UTF-8 is refused (6927). */
export function scramSha256Verifier(utf8: Buffer, iterations = 4096, salt: Buffer = randomBytes(16)): string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(utf8);
  } catch {
    throw new PolicyViolationError('it is not valid UTF-8');
  }
  const prepared = Buffer.from(saslprep(text), 'utf8');
  const salted = pbkdf2Sync(prepared, salt, iterations, 32, 'sha256');
  prepared.fill(0);
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  salted.fill(0);
  clientKey.fill(0);
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

const B64 = '[A-Za-z0-9+/]+={0,2}';
const VERIFIER = new RegExp(`^SCRAM-SHA-256\\$(\\d+):(${B64})\\$(${B64}):(${B64})$`);

/**
 * True when PostgreSQL will store `v` as a verifier. A malformed one is not refused by the server:
 * it is taken as a clear password and hashed (the recipe's gotcha 7), so check before sending.
 */
export function isValidScramVerifier(v: string): boolean {
  const m = VERIFIER.exec(v);
  if (!m) return false;
  const iterations = Number(m[1]);
  return Number.isSafeInteger(iterations) && iterations > 0
    && Buffer.from(m[2]!, 'base64').length > 0
    && Buffer.from(m[3]!, 'base64').length === 32 && Buffer.from(m[4]!, 'base64').length === 32;
}
