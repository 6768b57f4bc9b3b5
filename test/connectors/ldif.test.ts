import { recordsOf } from '../../core/extension.ts';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { all, assertEvent, batch, fileConnector } from './helpers.ts';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

const LDIF = [
  'version: 1',
  '# exported from the HR directory',
  'dn: uid=alice,ou=People,dc=example,dc=com',
  'objectClass: inetOrgPerson',
  'objectClass: person',
  `cn:: ${b64('Zoé €£ç')}`,
  'description: a long description that goes on and on and is folded by the ex',
  ' porting tool at seventy-six columns',
  'uid: alice',
  '',
  `dn:: ${b64('uid=françois,ou=People,dc=example,dc=com')}`,
  '# a comment inside a record',
  'UID: francois',
  'userPassword: old',
  '',
].join('\n');

test('ldif: records, folded lines, base64 values and the DN as the anchor', async () => {
  const { connector } = fileConnector('ldif', LDIF, {}, 'people.ldif');
  const objects = await all(connector);
  assert.deepEqual(objects.map((o) => o.id), ['uid=alice,ou=People,dc=example,dc=com', 'uid=françois,ou=People,dc=example,dc=com']);
  assert.equal(objects[0]!.attributes.cn, 'Zoé €£ç');
  assert.equal(objects[0]!.attributes.objectClass, 'inetOrgPerson');
  assert.equal(objects[0]!.attributes.description, 'a long description that goes on and on and is folded by the exporting tool at seventy-six columns');
  assert.deepEqual((await connector.find('uid', 'FRANCOIS', true)).map((o) => o.attributes.UID), ['francois'], 'attribute names ignore case, as in LDAP');
  assert.ok((await connector.attributes()).includes('description'));
});

test('ldif: a set value replaces only its lines; non-ASCII is written base64; the rest keeps its bytes', async () => {
  const { connector, file } = fileConnector('ldif', LDIF, {}, 'people.ldif');
  const alice = 'uid=alice,ou=People,dc=example,dc=com';
  const francois = 'uid=françois,ou=People,dc=example,dc=com';
  await batch(connector, (r) => {
    r.set(francois, 'userpassword', '$scrypt$ln=14,r=8,p=1$c2FsdA$aGFzaA');
    r.set(francois, 'displayName', 'François Ærø é€£ç and a name long enough to be folded by the writer');
  });
  const text = readFileSync(file, 'utf8');
  const [first, second] = text.split('\n\n');
  assert.equal(first + '\n', LDIF.split('\n\n')[0] + '\n', 'the untouched record is byte-identical');
  const lines = second!.split('\n');
  assert.equal(lines[0], `dn:: ${b64(francois)}`);
  assert.equal(lines[1], '# a comment inside a record');
  assert.equal(lines[2], 'UID: francois');
  assert.equal(lines[3], 'userPassword: $scrypt$ln=14,r=8,p=1$c2FsdA$aGFzaA', 'a safe ASCII value is written plain, under the file\'s spelling');
  assert.match(lines[4]!, /^displayName:: /);
  assert.ok(lines[4]!.length <= 76 && lines[5]!.startsWith(' '), 'long lines are folded with a leading space');
  assert.ok(text.endsWith('\n') && !text.endsWith('\n\n'));

  const reread = (await all(connector))[1]!;
  assert.equal(reread.attributes.displayName, 'François Ærø é€£ç and a name long enough to be folded by the writer');
  assert.equal(reread.attributes.UID, 'francois');
  await batch(connector, (r) => r.set(alice, 'objectClass', 'account'));
  const again = readFileSync(file, 'utf8');
  assert.ok(!again.includes('objectClass: person') && again.includes('objectClass: account\n'), 'a multi-valued attribute becomes the one value set');
});

test('ldif: values that are not SAFE-STRINGs are base64 (leading space, colon, trailing space)', async () => {
  const { connector, file } = fileConnector('ldif', 'dn: cn=a\ncn: a\n');
  await batch(connector, (r) => {
    r.set('cn=a', 'description', ' lead');
    r.set('cn=a', 'title', ':colon');
    r.set('cn=a', 'sn', 'trail ');
    r.set('cn=a', 'empty', '');
  });
  assert.equal(readFileSync(file, 'utf8'), `dn: cn=a\ncn: a\ndescription:: ${b64(' lead')}\ntitle:: ${b64(':colon')}\nsn:: ${b64('trail ')}\nempty:\n`);
  const o = (await all(connector))[0]!;
  assert.deepEqual([o.attributes.description, o.attributes.title, o.attributes.sn, o.attributes.empty], [' lead', ':colon', 'trail ', '']);
});

test('ldif: change records, records without dn and bad attribute names are refused', async () => {
  await assert.rejects(fileConnector('ldif', 'dn: cn=a\nchangetype: modify\n').connector.attributes(), /:2: LDIF change records are not supported/);
  await assert.rejects(fileConnector('ldif', 'cn: a\n').connector.attributes(), /:1: a record must start with `dn:`/);
  const { connector } = fileConnector('ldif', 'dn: cn=a\ncn: a\n');
  const { connection, release } = await connector.connect();
  try {
    assert.throws(() => recordsOf(connection).set('cn=a', 'bad name', 'x'), (e) => assertEvent(e, 6950, /not an LDAP attribute name/));
    assert.throws(() => recordsOf(connection).set('cn=b', 'cn', 'x'), (e) => assertEvent(e, 6923));
  } finally {
    await release();
  }
});
