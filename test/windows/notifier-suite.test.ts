import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { constants, createHash, generateKeyPairSync, publicEncrypt } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { keyringOf, open, parseHeader, privateRecipientFromPem, SUITE_TEST_RSA_PKCS1, testRecipientFromPem } from '../../core/envelope.ts';
import { PwsyncError } from '../../core/errors.ts';
import { Ingest, allowConfiguredDomains } from '../../hub/ingest.ts';
import { loadKeyring } from '../../hub/service.ts';
import { openSqliteBroker } from '../../core/broker-sqlite.ts';
import { silentLogger } from '../../core/log.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';
import { dllBinding, rsaTestKey, sealTestSuite } from './helpers.ts';

/**
 * The test-only suite 241 (RSA PKCS#1 v1.5 key wrap, for the DLL's tests under Wine): refused by
 * default everywhere (parse, open, hub keys, notifier keys, the hub's ingest), opened only by a
 * process started with PWSYNC_TEST_ONLY_SUITES=1.
 */
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function refused(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof PwsyncError && e.eventId === 6946 && message.test(e.message));
}

test('by default a suite-241 envelope is refused: parse, hub keys, notifier keys; setting the variable later changes nothing', () => {
  assert.equal(process.env.PWSYNC_TEST_ONLY_SUITES, undefined, 'this test runs without the variable');
  const k = rsaTestKey();
  const env = sealTestSuite(k.publicKey, dllBinding(), testPassword('suite-off'));
  refused(() => parseHeader(env), /test-only suite 241.*PWSYNC_TEST_ONLY_SUITES=1/);
  const dir = testDir('suite');
  writeFileSync(path.join(dir, 'rsa.key'), k.privatePem, { mode: 0o600 });
  assert.throws(() => loadKeyring([path.join(dir, 'rsa.key')]), /RSA keys open only the test-only suite 241.*PWSYNC_TEST_ONLY_SUITES=1/);
  refused(() => testRecipientFromPem(k.publicPem), /test-only suite 241/);
  process.env.PWSYNC_TEST_ONLY_SUITES = '1';
  try {
    refused(() => parseHeader(env), /test-only suite 241/);
  } finally {
    delete process.env.PWSYNC_TEST_ONLY_SUITES;
  }
});

test('the hub does not accept a suite-241 change by default, even under a key id it holds', async () => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const p256 = privateRecipientFromPem(privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const k = rsaTestKey();
  const b = dllBinding();
  const env = sealTestSuite(k.publicKey, b, testPassword('suite-hub'));
  // Same bytes but naming the hub's own key id: still refused for its suite.
  p256.keyId.copy(env, 7);
  const broker = openSqliteBroker({ file: path.join(testDir('suite-hub'), 'hub.db') });
  try {
    const ingest = new Ingest(broker, keyringOf([p256]), [{ name: 'corp.example.com', allowReadOnlyDCs: false, dcCacheTtl: 1, dcSilentAfter: 1 }], allowConfiguredDomains, silentLogger(), 300_000);
    const [ack] = await ingest.submit([{
      changeId: b.changeId, domain: b.domain, sourceDc: b.sourceHost, changeTimeMs: b.changeTime, sealedPassword: env,
      account: { samAccountName: b.samAccountName, objectGuid: '', objectSid: '', userPrincipalName: '', distinguishedName: '' },
    }], { principal: 'dc1', mechanism: 'tls', peer: 'test' } as never);
    assert.equal(ack!.status, 'REJECTED');
    assert.match(String(ack!.reason), /test-only suite 241/);
  } finally {
    await broker.close();
  }
  refused(() => open(env, keyringOf([p256])), /test-only suite/);
});

test('with PWSYNC_TEST_ONLY_SUITES=1 at start, a suite-241 envelope opens; altered ones and wrong padding do not', async () => {
  const dir = testDir('suite-on');
  const k = rsaTestKey();
  writeFileSync(path.join(dir, 'rsa.key'), k.privatePem, { mode: 0o600 });
  const passwords = ['ok é€ 🔑', '', 'x'.repeat(256)].map((s, i) => testPassword(`${i}-${s}`));
  const b = dllBinding();
  const good = passwords.map((pw) => sealTestSuite(k.publicKey, { ...b }, pw));
  const tampered = Buffer.from(good[0]!);
  tampered[tampered.length - 20]! ^= 1;
  const relabelled = Buffer.from(good[0]!);
  relabelled[60]! ^= 1; // inside the account name: the associated data
  // A key wrap whose block is 00 02 and no separator: refused for its padding before any AES.
  const { headerEnd } = { headerEnd: good[0]!.indexOf(Buffer.from('dc1.corp.example.com')) + 'dc1.corp.example.com'.length };
  const badPadding = Buffer.from(good[0]!);
  const block = Buffer.alloc(256, 0x11);
  block[0] = 0;
  block[1] = 2;
  publicEncrypt({ key: k.publicKey, padding: constants.RSA_NO_PADDING }, block).copy(badPadding, headerEnd + 2);
  const files = [...good, tampered, relabelled, badPadding].map((e, i) => {
    const f = path.join(dir, `${i}.env`);
    writeFileSync(f, e);
    return f;
  });
  const script = `
    import { readFileSync } from 'node:fs';
    import { createHash } from 'node:crypto';
    import { loadKeyring } from './hub/service.ts';
    import { open } from './core/envelope.ts';
    const keyring = loadKeyring([process.argv[1]]);
    for (const f of process.argv.slice(2)) {
      try {
        const { header, password } = open(readFileSync(f), keyring);
        const h = password.use((b) => createHash('sha256').update(b).digest('hex'));
        console.log(JSON.stringify({ ok: true, suite: header.suite, sam: header.samAccountName, sha: h }));
      } catch (e) { console.log(JSON.stringify({ ok: false, err: e.message })); }
    }`;
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, path.join(dir, 'rsa.key'), ...files],
      { cwd: REPO, env: { ...process.env, PWSYNC_TEST_ONLY_SUITES: '1' }, timeout: 60_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
  });
  const rows = out.trim().split('\n').map((l) => JSON.parse(l) as { ok: boolean; suite?: number; sam?: string; sha?: string; err?: string });
  assert.equal(rows.length, 6);
  passwords.forEach((pw, i) => {
    assert.deepEqual(rows[i], { ok: true, suite: SUITE_TEST_RSA_PKCS1, sam: 'alice', sha: sha(pw) }, `password ${i}`);
  });
  assert.equal(rows[3]!.ok, false);
  assert.match(rows[3]!.err!, /failed authentication/);
  assert.equal(rows[4]!.ok, false);
  assert.equal(rows[5]!.ok, false);
  assert.match(rows[5]!.err!, /bad padding/);
});
