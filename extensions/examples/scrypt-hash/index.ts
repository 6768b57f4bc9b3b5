import { randomBytes } from 'node:crypto';
import {
  defineExtension, PolicyViolationError,
  type ExtensionConnection, type OperationContext, type RecordSet, type Secret, type TargetObject,
} from '../../sdk/mod.ts';
import { formatHash, scryptAsync, type ScryptParams } from './scrypt.ts';

/**
 * The example password extension: stores an scrypt hash of the new password in one attribute of
 * the target's record (a CSV column, an LDIF attribute, a DSML attr…), for an application that
 * verifies logins against that file. It never holds the password as a string: it counts
 * characters on the bytes and hashes the bytes inside `password.use`, which wipes them after.
 */

interface Settings extends ScryptParams {
  readonly attribute: string;
  /** Fewer Unicode characters than this is refused (6927); 0 leaves policy to the domain. */
  readonly minLength: number;
}

/** Each set-operation hashes on the thread pool; four at once must not exhaust the host. */
const MAX_MEMORY = 256 * 2 ** 20;

const DEFAULTS: Settings = { attribute: 'pwdHash', cost: 16384, blockSize: 8, parallelization: 1, minLength: 0 };

function readSettings(raw: Readonly<Record<string, unknown>>): Settings {
  const unknown = Object.keys(raw).filter((k) => !Object.hasOwn(DEFAULTS, k));
  if (unknown.length > 0) {
    throw new Error(`unknown setting${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; the settings are ${Object.keys(DEFAULTS).join(', ')}`);
  }
  const s = { ...DEFAULTS, ...raw } as Record<keyof Settings, unknown>;
  if (typeof s.attribute !== 'string' || s.attribute.trim() === '') throw new Error('attribute must be the name of the attribute that stores the hash, e.g. pwdHash');
  const int = (name: keyof Settings, min: number, max: number): number => {
    const v = s[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new Error(`${name} must be a whole number from ${min} to ${max}`);
    return v;
  };
  const cost = int('cost', 2, 2 ** 20);
  if ((cost & (cost - 1)) !== 0) throw new Error(`cost must be a power of two (scrypt's N), such as 16384 or 32768, not ${cost}`);
  const blockSize = int('blockSize', 1, 64);
  const memory = 128 * cost * blockSize;
  if (memory > MAX_MEMORY) {
    throw new Error(`cost ${cost} with blockSize ${blockSize} needs ${memory / 2 ** 20} MiB per hash (128·N·r), more than ${MAX_MEMORY / 2 ** 20} MiB: lower cost or blockSize`);
  }
  return {
    attribute: s.attribute, cost, blockSize,
    parallelization: int('parallelization', 1, 16), minLength: int('minLength', 0, 1024),
  };
}

/** Unicode characters in UTF-8 bytes: every byte that is not a continuation byte (10xxxxxx). */
function codePoints(utf8: Buffer): number {
  let n = 0;
  for (const b of utf8) if ((b & 0xc0) !== 0x80) n++;
  return n;
}

export default defineExtension(() => {
  let settings = DEFAULTS;
  let records: RecordSet | undefined;

  return {
    // Hashing runs on libuv's thread pool (4 threads by default): overlap that many per batch.
    concurrentSets: 4,

    async init(raw) {
      settings = readSettings(raw);
      // Node checks N, r and p together (and their memory) only when deriving: find out now.
      (await scryptAsync(Buffer.alloc(0), Buffer.alloc(16), settings)).fill(0);
    },

    beginConnection(connection: ExtensionConnection) {
      if (connection.kind !== 'records') throw new Error(`the scrypt-hash extension needs a file or DSML connector (records), not ${String(connection.kind)}`);
      records = connection.records;
    },

    async setPassword(object: TargetObject, password: Secret, ctx: OperationContext) {
      if (!records) throw new Error('setPassword was called outside a batch (before beginConnection)');
      const { minLength } = settings;
      if (minLength > 0 && password.use(codePoints) < minLength) {
        throw new PolicyViolationError(`shorter than ${minLength} characters (the scrypt-hash extension's minLength)`);
      }
      const salt = randomBytes(16);
      const hash = await password.use((bytes) => scryptAsync(bytes, salt, settings));
      try {
        records.set(object.id, settings.attribute, formatHash(settings, salt, hash));
      } finally {
        hash.fill(0);
      }
      ctx.log.debug({ object: object.id, attribute: settings.attribute }, 'scrypt hash staged');
    },

    async endConnection() {
      const batch = records;
      records = undefined;
      await batch?.commit();
    },
  };
});
