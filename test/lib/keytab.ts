import { randomBytes } from 'node:crypto';

/**
 * Writes MIT keytab files (format 0x0502) with chosen principals, kvnos and enctypes, for the
 * cases kadmin.local will not produce for an existing principal: an RC4-only keytab for an SPN whose
 * tickets are AES (the keytab an old ktpass exports), or a key that does not match the KDC's.
 */
export interface WrittenKey {
  /** `PWSYNC/hub.pwsync.test@PWSYNC.TEST` */
  principal: string;
  kvno: number;
  enctype: number;
  /** Random key bytes of the enctype's length when absent. */
  key?: Buffer;
}

const KEY_LENGTH: Record<number, number> = { 17: 16, 18: 32, 19: 16, 20: 32, 23: 16 };

export function encodeKeytab(keys: readonly WrittenKey[]): Buffer {
  const parts: Buffer[] = [Buffer.from([0x05, 0x02])];
  for (const k of keys) {
    const [name, realm] = k.principal.split('@') as [string, string];
    const str = (s: string): Buffer => {
      const b = Buffer.from(s, 'utf8');
      const len = Buffer.alloc(2);
      len.writeUInt16BE(b.length);
      return Buffer.concat([len, b]);
    };
    const components = name.split('/');
    const head = Buffer.alloc(2);
    head.writeUInt16BE(components.length);
    const fixed = Buffer.alloc(4 + 4 + 1 + 2);
    fixed.writeUInt32BE(1, 0); // KRB5_NT_PRINCIPAL
    fixed.writeUInt32BE(Math.floor(Date.now() / 1000), 4);
    fixed.writeUInt8(k.kvno & 0xff, 8);
    fixed.writeUInt16BE(k.enctype, 9);
    const key = k.key ?? randomBytes(KEY_LENGTH[k.enctype] ?? 16);
    const keyLength = Buffer.alloc(2);
    keyLength.writeUInt16BE(key.length);
    const kvno32 = Buffer.alloc(4);
    kvno32.writeUInt32BE(k.kvno);
    const entry = Buffer.concat([head, str(realm), ...components.map(str), fixed, keyLength, key, kvno32]);
    const size = Buffer.alloc(4);
    size.writeInt32BE(entry.length);
    parts.push(size, entry);
  }
  return Buffer.concat(parts);
}
