/**
 * Every password a test uses starts with this prefix (non-ASCII on purpose: é and € catch
 * string round-trips that lose characters). The secrecy scan (test/secrecy/) searches every file
 * a run wrote for the prefix in UTF-8, UTF-16LE and base64, so any test password leaking anywhere
 * is found without keeping a list of them on disk.
 */
export const TEST_PASSWORD_PREFIX = 'Zé€-pw-';

/** A test password, as bytes: `TEST_PASSWORD_PREFIX` + label. */
export function testPassword(label: string): Buffer {
  return Buffer.from(TEST_PASSWORD_PREFIX + label, 'utf8');
}
