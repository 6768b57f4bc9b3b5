import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import {
  checkLdapOptions, dnIsUnder, domainDn, escapeFilterValue, guidToBytes, guidToString, LdapDirectory, LdapError, normalizeDn, sidToString,
} from '../../core/ldap.ts';
import { Secret } from '../../core/secret.ts';
import { generateTlsMaterial, type TlsMaterial } from '../../core/tls-gen.ts';
import { testDir } from '../lib/dirs.ts';
import { testPassword } from '../lib/passwords.ts';

/**
 * What core/ldap.ts decides without a directory (filter escaping, SIDs, GUIDs, DNs, refusing a
 * plain connection), and how it fails against servers that are not what they should be: a TLS
 * server whose certificate names another host or comes from another CA, a closed port, a server
 * that never answers. The real directory is tested in test/samba/.
 */

let dir: string;
let material: TlsMaterial;
let otherCa: TlsMaterial;
const servers: Array<net.Server> = [];

async function listen(server: net.Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

function directory(url: string, over: { ca?: string; serverName?: string; timeoutMs?: number } = {}): LdapDirectory {
  return new LdapDirectory({
    url, startTls: false, ca: over.ca ?? path.join(dir, 'ca.pem'), bindDn: 'CN=reader,DC=example,DC=com',
    password: Secret.adopt(testPassword('ldap-unit')), timeoutMs: over.timeoutMs ?? 3000,
    ...(over.serverName ? { serverName: over.serverName } : {}),
  });
}

before(async () => {
  dir = testDir('ldap');
  material = await generateTlsMaterial({ hosts: ['dc1.example.com'] });
  otherCa = await generateTlsMaterial({ hosts: ['dc1.example.com'] });
  writeFileSync(path.join(dir, 'ca.pem'), material.caCertPem);
  writeFileSync(path.join(dir, 'other-ca.pem'), otherCa.caCertPem);
});

after(async () => {
  for (const s of servers) s.close();
});

test('filter values are escaped as RFC 4515 says, strings and bytes', () => {
  assert.equal(escapeFilterValue('a*b(c)d\\e\0f'), 'a\\2ab\\28c\\29d\\5ce\\00f');
  assert.equal(escapeFilterValue('DC1$'), 'DC1$');
  assert.equal(escapeFilterValue('Zoë'), 'Zoë');
  // A DN inside an extensible match keeps its own escapes, escaped once more.
  assert.equal(escapeFilterValue('CN=Smith\\, Jo (ops),DC=x'), 'CN=Smith\\5c, Jo \\28ops\\29,DC=x');
});

test('SIDs and GUIDs convert between their bytes and their text', () => {
  // S-1-5-21-1-2-3-513: revision 1, 5 sub-authorities, authority 5 (NT), little-endian sub-authorities.
  const sid = Buffer.from('010500000000000515000000010000000200000003000000' + '01020000', 'hex');
  assert.equal(sidToString(sid), 'S-1-5-21-1-2-3-513');
  assert.throws(() => sidToString(Buffer.from('0105', 'hex')), /not a binary SID/);
  const guid = '33f49538-d640-4ce7-8a54-93c1fe258725';
  const bytes = guidToBytes(guid);
  assert.equal(bytes.toString('hex'), '3895f43340d6e74c8a5493c1fe258725');
  assert.equal(guidToString(bytes), guid);
  assert.equal(guidToString(guidToBytes(`{${guid.toUpperCase()}}`)), guid);
  assert.throws(() => guidToBytes('not-a-guid'), /not a GUID/);
});

test('DNs: the domain\'s naming context, and "is under" without regard to case or spaces', () => {
  assert.equal(domainDn('pwsync.test'), 'DC=pwsync,DC=test');
  assert.equal(normalizeDn('CN=DC1, OU=Domain Controllers , DC = pwsync,DC=test'), 'cn=dc1,ou=domain controllers,dc=pwsync,dc=test');
  assert.ok(dnIsUnder('CN=DC1,OU=Domain Controllers,DC=pwsync,DC=test', 'ou=domain controllers, dc=pwsync, dc=test'));
  assert.ok(!dnIsUnder('CN=DC1,OU=Not Domain Controllers,DC=pwsync,DC=test', 'OU=Domain Controllers,DC=pwsync,DC=test'));
  // One RDN "x,OU=Domain Controllers" at the domain root is not in the OU its name spells.
  assert.ok(!dnIsUnder('CN=x\\,OU=Domain Controllers,DC=pwsync,DC=test', 'OU=Domain Controllers,DC=pwsync,DC=test'));
});

test('a plain connection is refused before anything is sent: the bind password would travel in clear', () => {
  assert.throws(() => checkLdapOptions({ url: 'ldap://dc1.example.com', startTls: false }), (e: unknown) =>
    e instanceof LdapError && /plain connection.*in clear.*ldaps:\/\/dc1\.example\.com.*startTls: true/.test(e.message));
  assert.throws(() => checkLdapOptions({ url: 'ldaps://dc1.example.com', startTls: true }), /startTls is for ldap:\/\/ URLs/);
  assert.throws(() => checkLdapOptions({ url: 'http://dc1.example.com', startTls: false }), /not an LDAP URL/);
  assert.deepEqual(checkLdapOptions({ url: 'ldaps://dc1.example.com', startTls: false }), { secure: true, host: 'dc1.example.com', port: 636 });
  assert.deepEqual(checkLdapOptions({ url: 'ldap://[::1]', startTls: true }), { secure: false, host: '::1', port: 389 });
});

test('a missing CA file is named when the directory is set up, and the password is not kept', () => {
  const password = Secret.adopt(testPassword('ldap-unit-ca'));
  assert.throws(() => new LdapDirectory({
    url: 'ldaps://dc1.example.com', startTls: false, ca: path.join(dir, 'nope.pem'), bindDn: 'x', password, timeoutMs: 1000,
  }), /cannot read the CA file .*nope\.pem \(ENOENT\)/);
  assert.ok(password.disposed);
});

test('a certificate that names another host: the error says to set serverName', async () => {
  const port = await listen(tls.createServer({ cert: material.certPem, key: material.keyPem }, (s) => s.end()));
  const d = directory(`ldaps://127.0.0.1:${port}`);
  await assert.rejects(d.search('DC=example,DC=com', { scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'] }), (e: unknown) => {
    assert.ok(e instanceof LdapError);
    assert.match(e.message, new RegExp(`ldaps://127\\.0\\.0\\.1:${port} \\(bind as CN=reader,DC=example,DC=com\\): the directory's certificate does not name 127\\.0\\.0\\.1.*set serverName`));
    assert.equal(e.retryable, false);
    assert.doesNotMatch(e.message, /Zé€/);
    return true;
  });
  await d.close();
});

test('a certificate from another CA: the error names the CA file', async () => {
  const port = await listen(tls.createServer({ cert: material.certPem, key: material.keyPem }, (s) => s.end()));
  const d = directory(`ldaps://127.0.0.1:${port}`, { ca: path.join(dir, 'other-ca.pem'), serverName: 'dc1.example.com' });
  await assert.rejects(d.search('DC=example,DC=com', { scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'] }),
    /certificate is not signed by the CA in .*other-ca\.pem.*point ca at the CA that issued it/);
  await d.close();
});

test('a closed port and a server that never answers fail within the timeout, as retryable', async () => {
  const closed = await listen(net.createServer());
  servers.pop()!.close();
  await new Promise((r) => setTimeout(r, 50));
  const refused = directory(`ldaps://127.0.0.1:${closed}`, { serverName: 'dc1.example.com' });
  await assert.rejects(refused.search('DC=x', { scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'] }), (e: unknown) =>
    e instanceof LdapError && e.retryable && /cannot reach the directory \(ECONNREFUSED\)/.test(e.message));
  await refused.close();

  const held: net.Socket[] = [];
  const silent = await listen(tls.createServer({ cert: material.certPem, key: material.keyPem }, (s) => { held.push(s); }));
  const mute = directory(`ldaps://127.0.0.1:${silent}`, { serverName: 'dc1.example.com', timeoutMs: 300 });
  await assert.rejects(mute.search('DC=x', { scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'] }), (e: unknown) =>
    e instanceof LdapError && e.retryable && /no answer within the directory timeout/.test(e.message));
  await mute.close();
  for (const s of held) s.destroy();
});

test('StartTLS against a server that is not LDAP fails cleanly, never falling back to clear text', async () => {
  const seen: Buffer[] = [];
  const port = await listen(net.createServer((s) => {
    s.on('data', (d: Buffer) => { seen.push(d); s.destroy(); });
  }));
  const d = new LdapDirectory({
    url: `ldap://127.0.0.1:${port}`, startTls: true, ca: path.join(dir, 'ca.pem'), serverName: 'dc1.example.com',
    bindDn: 'CN=reader,DC=example,DC=com', password: Secret.adopt(testPassword('ldap-unit-starttls')), timeoutMs: 2000,
  });
  await assert.rejects(d.search('DC=x', { scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'] }), (e: unknown) =>
    e instanceof LdapError && /StartTLS/.test(e.message));
  await d.close();
  // Only the StartTLS request (its OID) went out: no bind, so no password, in clear.
  const sent = Buffer.concat(seen);
  assert.ok(sent.includes(Buffer.from('1.3.6.1.4.1.1466.20037')));
  assert.ok(!sent.includes(Buffer.from('CN=reader')));
});
