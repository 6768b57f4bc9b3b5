import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Console } from 'node:console';
import { Writable } from 'node:stream';
import { inspect } from 'node:util';
import { Secret } from '../../core/secret.ts';
import { TEST_PASSWORD_PREFIX, testPassword } from '../lib/passwords.ts';

const zeroed = (b: Buffer) => b.every((x) => x === 0);

test('use() hands the clear bytes and zero-fills them after a synchronous fn', () => {
  const secret = Secret.adopt(testPassword('sync'));
  let seen: Buffer | undefined;
  const length = secret.use((clear) => {
    seen = clear;
    assert.deepEqual(clear, testPassword('sync'));
    return clear.length;
  });
  assert.equal(length, testPassword('sync').length);
  assert.ok(seen && seen.length > 0 && zeroed(seen));
});

test('use() zero-fills after an async fn resolves, not before', async () => {
  const secret = Secret.adopt(testPassword('async'));
  let seen: Buffer | undefined;
  let duringAwait = false;
  await secret.use(async (clear) => {
    seen = clear;
    await new Promise((resolve) => setImmediate(resolve));
    duringAwait = clear.equals(testPassword('async'));
  });
  assert.equal(duringAwait, true);
  assert.ok(seen && zeroed(seen));
});

test('use() zero-fills when fn throws or its promise rejects, and passes the error on', async () => {
  const secret = Secret.adopt(testPassword('throw'));
  let seen: Buffer | undefined;
  assert.throws(() => secret.use((clear) => {
    seen = clear;
    throw new Error('driver refused');
  }), /driver refused/);
  assert.ok(seen && zeroed(seen));
  seen = undefined;
  await assert.rejects(secret.use(async (clear) => {
    seen = clear;
    await Promise.resolve();
    throw new Error('async driver refused');
  }), /async driver refused/);
  assert.ok(seen && zeroed(seen));
  secret.use((clear) => assert.deepEqual(clear, testPassword('throw')));
});

test('every way of printing a Secret prints [REDACTED]', () => {
  const secret = Secret.adopt(testPassword('print'));
  const prefix = TEST_PASSWORD_PREFIX;
  const printed = [
    JSON.stringify({ password: secret }),
    inspect(secret),
    inspect({ nested: { secret } }, { depth: 5 }),
    `${secret}`,
    String(secret),
    'x' + secret,
  ];
  for (const text of printed) {
    assert.match(text, /\[REDACTED\]/);
    assert.ok(!text.includes(prefix));
  }
  assert.equal(JSON.stringify(secret), '"[REDACTED]"');
});

test('console.log of a Secret prints [REDACTED]', () => {
  const secret = Secret.adopt(testPassword('console'));
  const written: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      written.push(chunk.toString());
      done();
    },
  });
  const console = new Console({ stdout: sink, stderr: sink });
  console.log(secret);
  console.log('%s and %o', secret, { secret });
  console.error({ secret });
  const text = written.join('');
  assert.equal(text.match(/\[REDACTED\]/g)?.length, 4);
  assert.ok(!text.includes(TEST_PASSWORD_PREFIX));
});

test('dispose() makes the Secret unusable', () => {
  const secret = Secret.adopt(testPassword('dispose'));
  assert.equal(secret.disposed, false);
  secret.dispose();
  assert.equal(secret.disposed, true);
  assert.throws(() => secret.use(() => 1), /after dispose/);
});

test('equals() compares contents, not identity', () => {
  const a = Secret.adopt(testPassword('same'));
  assert.equal(a.equals(Secret.adopt(testPassword('same'))), true);
  assert.equal(a.equals(Secret.adopt(testPassword('diff'))), false);
  assert.equal(a.equals(Secret.adopt(testPassword('same-but-longer'))), false);
  assert.equal(Secret.adopt(Buffer.alloc(0)).equals(Secret.adopt(Buffer.alloc(0))), true);
});

test('adopt() zero-fills its input and keeps a copy', () => {
  const input = testPassword('adopt');
  const secret = Secret.adopt(input);
  assert.ok(zeroed(input));
  assert.equal(secret.length, testPassword('adopt').length);
  secret.use((clear) => assert.deepEqual(clear, testPassword('adopt')));
});
