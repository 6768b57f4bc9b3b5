import { readFileSync } from 'node:fs';

/**
 * What an MIT keytab file (format 0x0502, the one ktutil, kadmin, `samba-tool domain exportkeytab`
 * and ktpass write) holds: which principals, key version numbers and encryption types. Enough to
 * tell an admin, before any caller arrives, that the key for an SPN is missing, outdated or RC4
 * only. The keys themselves are skipped, never returned.
 */
export interface KeytabEntry {
  /** `PWSYNC/hub.example.com@EXAMPLE.COM` */
  principal: string;
  /** The name without the realm, components joined by `/`. */
  name: string;
  realm: string;
  kvno: number;
  enctype: number;
}

/** RFC 3961/4120 numbers, with the names MIT and AD tools print. */
const ENCTYPES: Record<number, string> = {
  1: 'des-cbc-crc', 3: 'des-cbc-md5', 16: 'des3-cbc-sha1', 17: 'aes128-cts-hmac-sha1-96', 18: 'aes256-cts-hmac-sha1-96',
  19: 'aes128-cts-hmac-sha256-128', 20: 'aes256-cts-hmac-sha384-192', 23: 'rc4-hmac', 24: 'rc4-hmac-exp',
  25: 'camellia128-cts-cmac', 26: 'camellia256-cts-cmac',
};

export function enctypeName(enctype: number): string {
  return ENCTYPES[enctype] ?? `enctype ${enctype}`;
}

/** AES keys (17–20); what an AD account with msDS-SupportedEncryptionTypes 24 gets tickets in. */
export function isAes(enctype: number): boolean {
  return enctype >= 17 && enctype <= 20;
}

export class KeytabFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeytabFormatError';
  }
}

export function parseKeytab(bytes: Buffer): KeytabEntry[] {
  if (bytes.length < 2 || bytes[0] !== 0x05) throw new KeytabFormatError('not a keytab file (it does not start with 0x05)');
  if (bytes[1] !== 0x02) {
    throw new KeytabFormatError(`keytab format 0x05${bytes[1]!.toString(16).padStart(2, '0')} is not supported (only 0x0502): export the keytab again with a current tool`);
  }
  const entries: KeytabEntry[] = [];
  let at = 2;
  while (at + 4 <= bytes.length) {
    const size = bytes.readInt32BE(at);
    at += 4;
    if (size === 0) break;
    // A negative size is a hole left by a deleted entry.
    if (size < 0) {
      at += -size;
      continue;
    }
    if (at + size > bytes.length) throw new KeytabFormatError(`an entry at byte ${at - 4} runs past the end of the file (truncated keytab)`);
    entries.push(parseEntry(bytes.subarray(at, at + size), at));
    at += size;
  }
  return entries;
}

function parseEntry(e: Buffer, offset: number): KeytabEntry {
  let at = 0;
  const need = (n: number): void => {
    if (at + n > e.length) throw new KeytabFormatError(`the entry at byte ${offset - 4} is shorter than its fields (damaged keytab)`);
  };
  const u16 = (): number => { need(2); const v = e.readUInt16BE(at); at += 2; return v; };
  const u32 = (): number => { need(4); const v = e.readUInt32BE(at); at += 4; return v; };
  const text = (): string => { const n = u16(); need(n); const v = e.toString('utf8', at, at + n); at += n; return v; };
  const count = u16();
  const realm = text();
  const components = Array.from({ length: count }, text);
  u32(); // name type
  u32(); // timestamp
  need(1);
  let kvno = e[at]!;
  at += 1;
  const enctype = u16();
  const keyLength = u16();
  need(keyLength);
  at += keyLength;
  // The 8-bit kvno wraps at 256; newer writers add the full 32-bit one after the key.
  if (at + 4 <= e.length) {
    const kvno32 = e.readUInt32BE(at);
    if (kvno32 !== 0) kvno = kvno32;
  }
  const name = components.join('/');
  return { principal: `${name}@${realm}`, name, realm, kvno, enctype };
}

export function readKeytab(file: string): KeytabEntry[] {
  return parseKeytab(readFileSync(file));
}
