import { timingSafeEqual } from 'node:crypto';
import { parseHash, scryptAsync } from './scrypt.ts';

/**
 * Whether `password` (its UTF-8 bytes) is the one `stored` was made from. Throws when `stored` is
 * not an scrypt hash of this extension's form, so a wrong attribute is not mistaken for a wrong
 * password. The caller zero-fills `password`.
 */
export async function verifyPassword(stored: string, password: Buffer): Promise<boolean> {
  const parsed = parseHash(stored);
  if (!parsed || parsed.hash.length === 0) throw new Error('not an scrypt hash of the form $scrypt$ln=…,r=…,p=…$salt$hash');
  const actual = await scryptAsync(password, parsed.salt, parsed.params, parsed.hash.length);
  try {
    return timingSafeEqual(actual, parsed.hash);
  } finally {
    actual.fill(0);
  }
}
