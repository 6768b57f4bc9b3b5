import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { UsageError } from '../../core/errors.ts';
import { extensionEnv } from '../../hub/targets.ts';
import { PolicyViolationError, recordsOf, type ExtensionEnv, type OperationContext, type PasswordExtension, type RecordSet } from '../../core/extension.ts';
import { silentLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { verifyPassword } from '../../extensions/examples/scrypt-hash/verify.ts';
import { loadExtension } from '../../extensions/loader.ts';
import { all, assertEvent, fileConnector, type FileConnector } from '../connectors/helpers.ts';
import { testPassword } from '../lib/passwords.ts';

const MODULE = path.resolve(import.meta.dirname, '../../extensions/examples/scrypt-hash/index.ts');
const env: ExtensionEnv = extensionEnv('hr', process.cwd(), silentLogger());
const CSV = 'uid,name,pwdHash\nalice,Zoé,\nbob,François,\n';

function ctx(): OperationContext {
  return {
    operationId: 'op-1', changeId: 'ch-1', changeTime: Date.now(), connector: 'hr', log: silentLogger(),
    account: { domain: 'corp.example.com', samAccountName: 'alice', objectGuid: '', objectSid: '', upn: '', dn: '' },
  };
}

async function load(settings: Record<string, unknown>): Promise<PasswordExtension> {
  return (await loadExtension({ module: MODULE, settings }, env)).extension;
}

/** One batch the way the hub runs it, counting commits. */
async function run(connector: FileConnector, ext: PasswordExtension, sets: Array<[string, Buffer]>): Promise<{ commits: number; errors: unknown[] }> {
  const { connection, release } = await connector.connect();
  let commits = 0;
  const records: RecordSet = {
    location: recordsOf(connection).location,
    get: (id) => recordsOf(connection).get(id),
    set: (id, a, v) => recordsOf(connection).set(id, a, v),
    commit: async () => { commits++; await recordsOf(connection).commit(); },
  };
  const errors: unknown[] = [];
  try {
    await ext.beginConnection!({ kind: 'records', records });
    for (const [id, bytes] of sets) {
      const secret = Secret.adopt(bytes);
      try {
        await ext.setPassword!({ id, attributes: {} }, secret, ctx());
      } catch (e) {
        errors.push(e);
      } finally {
        secret.dispose();
      }
    }
    await ext.endConnection!();
  } finally {
    await release();
  }
  return { commits, errors };
}

test('scrypt-hash: stores a hash that verifyPassword accepts, and rejects a wrong password', async () => {
  const { connector, file } = fileConnector('delimited', CSV, { anchor: 'uid' });
  const ext = await load({ cost: 1024 });
  const result = await run(connector, ext, [['alice', testPassword('alice')], ['bob', testPassword('bob')]]);
  assert.deepEqual(result, { commits: 1, errors: [] }, 'one commit for the whole batch');
  const [alice, bob] = await all(connector);
  assert.match(alice!.attributes.pwdHash!, /^\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
  assert.equal(await verifyPassword(alice!.attributes.pwdHash!, testPassword('alice')), true);
  assert.equal(await verifyPassword(alice!.attributes.pwdHash!, testPassword('alicf')), false);
  assert.equal(await verifyPassword(bob!.attributes.pwdHash!, testPassword('alice')), false);
  assert.notEqual(alice!.attributes.pwdHash, bob!.attributes.pwdHash);
  assert.ok(!readFileSync(file, 'utf8').includes('pw-alice'), 'the file holds hashes, not passwords');
  await assert.rejects(verifyPassword('plain-text', testPassword('x')), /not an scrypt hash/);
});

test('scrypt-hash: the default cost is N=16384, and the attribute comes from the settings', async () => {
  const { connector } = fileConnector('ldif', 'dn: uid=alice,dc=example\nuid: alice\n', { anchor: 'uid' });
  const ext = await load({ attribute: 'userPassword' });
  assert.deepEqual((await run(connector, ext, [['alice', testPassword('ldif')]])).errors, []);
  const stored = (await all(connector))[0]!.attributes.userPassword!;
  assert.match(stored, /^\$scrypt\$ln=14,r=8,p=1\$/);
  assert.equal(await verifyPassword(stored, testPassword('ldif')), true);
});

test('scrypt-hash: minLength counts Unicode characters and refuses shorter passwords with 6927', async () => {
  const { connector, file } = fileConnector('delimited', CSV, { anchor: 'uid' });
  const short = testPassword('ab'); // 9 characters, 12 UTF-8 bytes: a byte count would pass minLength 10
  assert.equal(short.length, 12);
  const strict = await load({ cost: 1024, minLength: 10 });
  const refused = await run(connector, strict, [['alice', Buffer.from(short)]]);
  assert.equal(refused.errors.length, 1);
  const e = refused.errors[0];
  assert.ok(e instanceof PolicyViolationError);
  assert.equal(e.eventId, 6927);
  assert.equal(e.retryable, false);
  assert.match(e.message, /shorter than 10 characters/);
  assert.equal(readFileSync(file, 'utf8'), CSV, 'nothing written');

  const exact = await load({ cost: 1024, minLength: 9 });
  assert.deepEqual((await run(connector, exact, [['alice', short]])).errors, [], 'nine characters meet minLength 9');
});

test('scrypt-hash: an unknown object is 6923; setPassword outside a batch is an error', async () => {
  const { connector } = fileConnector('delimited', CSV, { anchor: 'uid' });
  const ext = await load({ cost: 1024 });
  const { errors } = await run(connector, ext, [['mallory', testPassword('m')]]);
  assert.equal(errors.length, 1);
  assertEvent(errors[0], 6923, /mallory/);
  const secret = Secret.adopt(testPassword('outside'));
  await assert.rejects(Promise.resolve().then(() => ext.setPassword!({ id: 'alice', attributes: {} }, secret, ctx())), /outside a batch/);
  secret.dispose();
});

test('scrypt-hash: invalid settings are refused at load with a clear message', async () => {
  for (const [settings, message] of [
    [{ cost: 1000 }, /cost must be a power of two/],
    [{ cost: 'high' }, /cost must be a whole number/],
    [{ attribute: '' }, /attribute must be the name/],
    [{ minLength: -1 }, /minLength must be a whole number from 0/],
    [{ costs: 1024 }, /unknown setting costs/],
    [{ cost: 2 ** 20, blockSize: 8 }, /needs 1024 MiB per hash/],
  ] as const) {
    await assert.rejects(load(settings), (e: unknown) => e instanceof UsageError && message.test(e.message), JSON.stringify(settings));
  }
});
