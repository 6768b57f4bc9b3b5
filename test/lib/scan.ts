import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { TEST_PASSWORD_PREFIX } from './passwords.ts';

/**
 * Looks for test passwords in files. Every test password starts with TEST_PASSWORD_PREFIX, so
 * searching for the prefix finds any of them: in UTF-8, in UTF-16LE, and as the start of the
 * base64 / base64url encoding of a password (the first 9 bytes encode to 12 fixed characters).
 */
export function needles(): Array<{ encoding: string; bytes: Buffer }> {
  const utf8 = Buffer.from(TEST_PASSWORD_PREFIX, 'utf8');
  const head = utf8.subarray(0, utf8.length - (utf8.length % 3));
  const all = [
    { encoding: 'utf8', bytes: utf8 },
    { encoding: 'utf16le', bytes: Buffer.from(TEST_PASSWORD_PREFIX, 'utf16le') },
    { encoding: 'base64', bytes: Buffer.from(head.toString('base64'), 'ascii') },
    { encoding: 'base64url', bytes: Buffer.from(head.toString('base64url'), 'ascii') },
  ];
  // base64 and base64url agree unless the encoding holds '+' or '/': search each distinct one once.
  return all.filter((n, i) => all.findIndex((m) => m.bytes.equals(n.bytes)) === i);
}

export interface Hit {
  file: string;
  encoding: string;
  offset: number;
}

export function scanTree(root: string): { files: string[]; hits: Hit[] } {
  const files: string[] = [];
  const hits: Hit[] = [];
  const ns = needles();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = path.join(dir, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) {
        files.push(p);
        const data = readFileSync(p);
        for (const n of ns) {
          const at = data.indexOf(n.bytes);
          if (at >= 0) hits.push({ file: p, encoding: n.encoding, offset: at });
        }
      }
    }
  };
  walk(root);
  return { files, hits };
}
