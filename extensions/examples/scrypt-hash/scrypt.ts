import { scrypt, type ScryptOptions } from 'node:crypto';

/**
 * scrypt on the thread pool, and the stored form both sides of the example agree on: the PHC
 * string `$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>` (base64 without padding).
 */
export interface ScryptParams {
  /** N, the CPU/memory cost: a power of two. */
  readonly cost: number;
  readonly blockSize: number;
  readonly parallelization: number;
}

export const HASH_BYTES = 32;

export function scryptAsync(password: Buffer, salt: Buffer, p: ScryptParams, length = HASH_BYTES): Promise<Buffer> {
  const options: ScryptOptions = {
    N: p.cost, r: p.blockSize, p: p.parallelization,
    // Node refuses more than 32 MiB by default; scrypt needs 128·N·r bytes, so allow that and some.
    maxmem: 256 * p.cost * p.blockSize + 1024 * 1024,
  };
  return new Promise((resolve, reject) => {
    scrypt(password, salt, length, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

const b64 = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');

export function formatHash(p: ScryptParams, salt: Buffer, hash: Buffer): string {
  return `$scrypt$ln=${Math.log2(p.cost)},r=${p.blockSize},p=${p.parallelization}$${b64(salt)}$${b64(hash)}`;
}

const STORED = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,4}),p=(\d{1,4})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

export function parseHash(stored: string): { params: ScryptParams; salt: Buffer; hash: Buffer } | undefined {
  const m = STORED.exec(stored);
  if (!m) return undefined;
  const params = { cost: 2 ** Number(m[1]), blockSize: Number(m[2]), parallelization: Number(m[3]) };
  return { params, salt: Buffer.from(m[4]!, 'base64'), hash: Buffer.from(m[5]!, 'base64') };
}
