import { pbkdf2, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describeError } from '../../core/errors.ts';
import { PolicyViolationError } from '../../core/extension.ts';

/**
 * The password hashes builtin:sql-table stores, as PHC strings an application can verify with
 * its usual library: argon2id (@node-rs/argon2), bcrypt (bcryptjs), scrypt and PBKDF2
 * (node:crypto), or the application's own scheme through a hook module. Each hashes the bytes it
 * is given; the caller wipes them.
 */

export type HashFn = (password: Buffer) => Promise<string>;

const b64 = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');

function int(raw: Record<string, unknown>, name: string, dflt: number, min: number, max: number): number {
  const v = raw[name] ?? dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new Error(`hash.${name} must be a whole number from ${min} to ${max}`);
  return v;
}

function only(raw: Record<string, unknown>, allowed: readonly string[], scheme: string): void {
  const unknown = Object.keys(raw).filter((k) => k !== 'scheme' && !allowed.includes(k));
  if (unknown.length > 0) throw new Error(`hash: unknown setting ${unknown.join(', ')} for ${scheme}; it takes ${allowed.join(', ') || 'none'}`);
}

/** bcrypt reads at most 72 bytes: a longer password would be cut silently, so it is refused. */
export const BCRYPT_MAX_BYTES = 72;

/** Builds the hash function from the `hash:` settings; a bad setting throws saying which. */
export async function hashFromSettings(raw: unknown, resolvePath: (p: string) => string): Promise<HashFn> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new Error('hash must be { scheme: argon2id | bcrypt | scrypt | pbkdf2, … } or { module: PATH }');
  }
  const s = raw as Record<string, unknown>;
  if (s.module !== undefined) {
    if (Object.keys(s).length > 1) throw new Error('hash: with module, no other setting');
    if (typeof s.module !== 'string' || s.module === '') throw new Error('hash.module must be a path to the module');
    const file = resolvePath(s.module);
    let mod: { default?: unknown };
    try {
      mod = await import(isAbsolute(file) ? pathToFileURL(file).href : file) as { default?: unknown };
    } catch (e) {
      throw new Error(`hash.module ${file} cannot be loaded: ${describeError(e)}`);
    }
    const fn = mod.default;
    if (typeof fn !== 'function') throw new Error(`hash.module ${file} must export default (password: Buffer) => string | Promise<string>`);
    return async (password) => {
      const out: unknown = await (fn as (p: Buffer) => unknown)(password);
      if (typeof out !== 'string' || out === '') throw new Error(`hash.module ${file} returned ${typeof out}, not a non-empty string`);
      return out;
    };
  }
  switch (s.scheme) {
    case 'argon2id': {
      only(s, ['memoryCost', 'timeCost', 'parallelism'], 'argon2id');
      const { hash } = await import('@node-rs/argon2');
      // Algorithm is a const enum in the typings: 2 is Argon2id.
      const options = {
        algorithm: 2, memoryCost: int(s, 'memoryCost', 19456, 1024, 4 * 1024 * 1024),
        timeCost: int(s, 'timeCost', 2, 1, 100), parallelism: int(s, 'parallelism', 1, 1, 16),
      } as Parameters<typeof hash>[1];
      return (password) => hash(password, options);
    }
    case 'bcrypt': {
      only(s, ['cost'], 'bcrypt');
      const cost = int(s, 'cost', 12, 4, 20);
      const bcrypt = await import('bcryptjs');
      return async (password) => {
        if (password.length > BCRYPT_MAX_BYTES) {
          throw new PolicyViolationError(`longer than ${BCRYPT_MAX_BYTES} bytes in UTF-8, and bcrypt ignores everything after byte ${BCRYPT_MAX_BYTES}; use argon2id or scrypt for long passwords`);
        }
        // bcryptjs takes only strings; the string lives for this call.
        return bcrypt.hash(password.toString('utf8'), cost);
      };
    }
    case 'scrypt': {
      only(s, ['cost', 'blockSize', 'parallelization'], 'scrypt');
      const N = int(s, 'cost', 32768, 2, 2 ** 20);
      if ((N & (N - 1)) !== 0) throw new Error(`hash.cost must be a power of two (scrypt's N), not ${N}`);
      const r = int(s, 'blockSize', 8, 1, 64);
      const p = int(s, 'parallelization', 1, 1, 16);
      if (128 * N * r > 256 * 2 ** 20) throw new Error(`hash.cost ${N} with blockSize ${r} needs more than 256 MiB per hash: lower them`);
      return async (password) => {
        const salt = randomBytes(16);
        const key = await scryptAsync(password, salt, N, r, p);
        return `$scrypt$ln=${Math.log2(N)},r=${r},p=${p}$${b64(salt)}$${b64(key)}`;
      };
    }
    case 'pbkdf2': {
      only(s, ['iterations', 'digest'], 'pbkdf2');
      const iterations = int(s, 'iterations', 600000, 1000, 10_000_000);
      const digest = s.digest ?? 'sha256';
      if (digest !== 'sha256' && digest !== 'sha512') throw new Error('hash.digest must be sha256 or sha512');
      return async (password) => {
        const salt = randomBytes(16);
        const key = await pbkdf2Async(password, salt, iterations, digest === 'sha256' ? 32 : 64, digest);
        return `$pbkdf2-${digest}$i=${iterations}$${b64(salt)}$${b64(key)}`;
      };
    }
    default:
      throw new Error(`hash.scheme ${JSON.stringify(s.scheme)} is not known: write argon2id, bcrypt, scrypt or pbkdf2, or give hash.module`);
  }
}

function scryptAsync(password: Buffer, salt: Buffer, N: number, r: number, p: number, length = 32): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, length, { N, r, p, maxmem: 256 * N * r + 2 ** 20 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function pbkdf2Async(password: Buffer, salt: Buffer, iterations: number, length: number, digest: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(password, salt, iterations, length, digest, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** Checks a password against a stored hash of any of the built-in schemes (for tests and tools). */
export async function verifyPassword(stored: string, password: Buffer): Promise<boolean> {
  if (stored.startsWith('$argon2')) return (await import('@node-rs/argon2')).verify(stored, password);
  if (/^\$2[aby]\$/.test(stored)) return (await import('bcryptjs')).compare(password.toString('utf8'), stored);
  let m = /^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([^$]+)\$([^$]+)$/.exec(stored);
  if (m) {
    const want = Buffer.from(m[5]!, 'base64');
    const got = await scryptAsync(password, Buffer.from(m[4]!, 'base64'), 2 ** Number(m[1]), Number(m[2]), Number(m[3]), want.length);
    return timingSafeEqual(want, got);
  }
  m = /^\$pbkdf2-(sha256|sha512)\$i=(\d+)\$([^$]+)\$([^$]+)$/.exec(stored);
  if (m) {
    const want = Buffer.from(m[4]!, 'base64');
    const got = await pbkdf2Async(password, Buffer.from(m[3]!, 'base64'), Number(m[2]), want.length, m[1]!);
    return timingSafeEqual(want, got);
  }
  throw new Error('not a hash of a built-in scheme');
}
