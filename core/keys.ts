import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { keyIdOf } from './envelope.ts';
import { UsageError } from './errors.ts';

/**
 * Recipient keys: the P-256 pair a hub (or a connector worker) opens sealed passwords with. The
 * public half goes to every notifier (`targets[].publicKey`); the private half never leaves the
 * host that opens, and is written readable by its owner only.
 */
export interface RecipientKeyPair {
  privatePem: string;
  publicPem: string;
  /** Hex of the first 16 bytes of SHA-256(SPKI): what an envelope names as its recipient. */
  keyId: string;
}

export function generateRecipientKeys(): RecipientKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey).toString('hex'),
  };
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Writes `content` to `path` all at once: a temporary file with the final mode, synced, then
 * moved into place. Without `force` an existing file is never replaced (a hard link refuses
 * atomically, so two writers cannot both win); with it, a replaced file also gets the new mode.
 */
export function writeKeyFile(path: string, content: string, opts: { mode: number; force?: boolean }): void {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const fd = openSync(tmp, 'wx', opts.mode);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    if (opts.force) {
      renameSync(tmp, path);
      return;
    }
    try {
      linkSync(tmp, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new UsageError(`${path} already exists: not overwritten (pass --force to replace it)`);
      }
      throw e;
    }
    unlinkSync(tmp);
  } catch (e) {
    try { unlinkSync(tmp); } catch { /* already moved or removed */ }
    throw e;
  }
}

export interface WrittenKeyPair {
  keyId: string;
  privatePath: string;
  publicPath: string;
}

/** Writes DIR/NAME.key (mode 0600) and DIR/NAME.pub; creates DIR (mode 0700) when missing. */
export function writeKeyPair(dir: string, name: string, opts: { force?: boolean } = {}): WrittenKeyPair {
  if (!NAME.test(name)) {
    throw new UsageError(`key name "${name}" is not usable as a file name: use letters, digits, '.', '_' or '-' (at most 64)`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pair = generateRecipientKeys();
  const privatePath = join(dir, `${name}.key`);
  const publicPath = join(dir, `${name}.pub`);
  writeKeyFile(privatePath, pair.privatePem, { mode: 0o600, force: opts.force });
  writeKeyFile(publicPath, pair.publicPem, { mode: 0o644, force: true });
  return { keyId: pair.keyId, privatePath, publicPath };
}
