import fs from 'node:fs';
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { UsageError } from './errors.ts';
import { Secret } from './secret.ts';

/** The YAML shape of a secret, shared by the config schema and the connectors' connection schemas. */
export const SecretRef = Type.Union([
  Type.Object({ fromFile: Type.String({ minLength: 1, description: 'A file holding the secret (mode 0600); a trailing newline is dropped. Relative paths are relative to the YAML file.' }) }, { additionalProperties: false }),
  Type.Object({ fromEnv: Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$', description: 'An environment variable holding the secret.' }) }, { additionalProperties: false }),
], { description: 'Where a secret comes from: {fromFile: PATH} or {fromEnv: NAME}; never inline.' });
export type SecretRef = Static<typeof SecretRef>;

/** Larger than any credential; a bigger file is the wrong file. */
const MAX_SECRET_BYTES = 64 * 1024;

/**
 * Turns a `{fromFile: PATH}` / `{fromEnv: NAME}` reference from the YAML into a Secret (a service
 * account's password, a key passphrase). `where` names the setting for errors, best as
 * `configLocation(config, path)`; relative files are resolved against `baseDir`. Errors name the
 * file or variable, never what it holds.
 */
export function resolveSecret(ref: unknown, where: string, baseDir: string): Secret {
  if (typeof ref === 'string' || typeof ref === 'number') {
    throw secretError(where, 'a secret may not be written inline in the YAML', 'use {fromFile: PATH} (a file of mode 0600) or {fromEnv: NAME}');
  }
  if (!Value.Check(SecretRef, ref)) {
    throw secretError(where, 'expected a secret reference', 'write {fromFile: PATH} (a file of mode 0600) or {fromEnv: NAME}, and nothing else');
  }
  return 'fromFile' in ref ? fromFile(path.resolve(baseDir, ref.fromFile), where) : fromEnv(ref.fromEnv, where);
}

function fromFile(file: string, where: string): Secret {
  let fd: number;
  try {
    // Without blocking: a FIFO named by mistake is refused below instead of waiting for a writer.
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw secretError(where, `the secret file ${file} does not exist`, 'create it with mode 0600, or correct the path (a relative path is relative to the YAML file\'s folder)', e);
    if (code === 'EACCES') throw secretError(where, `the secret file ${file} cannot be read by this process`, 'make the service account its owner, with mode 0600', e);
    throw secretError(where, `the secret file ${file} cannot be opened (${code ?? 'error'})`, 'check the path and its permissions', e);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw secretError(where, `${file} is not a regular file`, 'point `fromFile` at the file that holds the secret');
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw secretError(where, `the secret file ${file} is readable by group or others (mode ${mode})`, `run \`chmod 600 ${file}\` so that only the service account can read it`);
    }
    if (st.size > MAX_SECRET_BYTES) throw secretError(where, `the secret file ${file} is larger than ${MAX_SECRET_BYTES} bytes`, 'point `fromFile` at a file that holds only the secret');
    const bytes = readAll(fd, st.size, file, where);
    if (bytes.length === 0) throw secretError(where, `the secret file ${file} is empty`, 'write the secret into it');
    return Secret.adopt(bytes);
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads into an unpooled buffer (so it can be wiped alone) and drops one trailing newline. */
function readAll(fd: number, size: number, file: string, where: string): Buffer {
  const buf = Buffer.allocUnsafeSlow(size);
  let got = 0;
  while (got < size) {
    const n = fs.readSync(fd, buf, got, size - got, got);
    if (n === 0) break;
    got += n;
  }
  if (got !== size) {
    buf.fill(0);
    throw secretError(where, `the secret file ${file} changed while it was read`, 'try again once it is written');
  }
  let end = size;
  if (end > 0 && buf[end - 1] === 0x0a) end--;
  if (end > 0 && end < size && buf[end - 1] === 0x0d) end--;
  if (end === size) return buf;
  const trimmed = Buffer.allocUnsafeSlow(end);
  buf.copy(trimmed, 0, 0, end);
  buf.fill(0);
  return trimmed;
}

function fromEnv(name: string, where: string): Secret {
  const v = process.env[name];
  if (v === undefined || v === '') {
    throw secretError(where, `the environment variable ${name} is not set`, `set ${name} in the service's environment, or use {fromFile: PATH}`);
  }
  return Secret.adopt(Buffer.from(v, 'utf8'));
}

function secretError(where: string, what: string, fix: string, cause?: unknown): UsageError {
  return new UsageError(`${where}: ${what} — ${fix}`, cause === undefined ? undefined : { cause });
}
