import { recordsOf } from '../../core/extension.ts';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { XMLParser } from 'fast-xml-parser';
import { all, assertEvent, batch, fileConnector } from './helpers.ts';

const PREFIXED = `<?xml version="1.0" encoding="UTF-8"?>
<!-- exported by the directory; a <searchResultEntry> in a comment is not an entry -->
<dsml:batchResponse xmlns:dsml="urn:oasis:names:tc:DSML:2:0:core" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <dsml:searchResponse>
    <dsml:searchResultEntry dn="uid=alice,ou=People,dc=example,dc=com">
      <dsml:attr name="cn"><dsml:value>Zo&#233; &amp; €£ç</dsml:value></dsml:attr>
      <dsml:attr name="uid"><dsml:value>alice</dsml:value></dsml:attr>
      <dsml:attr name="mail">
        <dsml:value>alice@example.com</dsml:value>
        <dsml:value>zoe@example.com</dsml:value>
      </dsml:attr>
      <dsml:attr name="pwdHash"><dsml:value>old</dsml:value></dsml:attr>
    </dsml:searchResultEntry>
    <dsml:searchResultEntry dn="uid=bob,ou=People,dc=example,dc=com">
      <dsml:attr name="uid"><dsml:value>bob</dsml:value></dsml:attr>
      <dsml:attr name="description"><dsml:value xsi:type="xsd:base64Binary">${Buffer.from('Ærø é€', 'utf8').toString('base64')}</dsml:value></dsml:attr>
    </dsml:searchResultEntry>
    <dsml:searchResultEntry dn="uid=carol,ou=People,dc=example,dc=com"/>
    <dsml:searchResultDone><dsml:resultCode code="0"/></dsml:searchResultDone>
  </dsml:searchResponse>
</dsml:batchResponse>
`;

const UNPREFIXED = `<batchResponse xmlns="urn:oasis:names:tc:DSML:2:0:core">
<searchResponse>
<searchResultEntry dn="uid=dave"><attr name="uid"><value>dave</value></attr></searchResultEntry>
</searchResponse>
</batchResponse>`;

test('dsml: entries, the dsml: prefix, entities and base64Binary values', async () => {
  const { connector } = fileConnector('dsml', PREFIXED, {}, 'people.xml');
  const objects = await all(connector);
  assert.deepEqual(objects.map((o) => o.id), ['uid=alice,ou=People,dc=example,dc=com', 'uid=bob,ou=People,dc=example,dc=com', 'uid=carol,ou=People,dc=example,dc=com']);
  assert.deepEqual(objects[0]!.attributes, { dn: objects[0]!.id, cn: 'Zoé & €£ç', uid: 'alice', mail: 'alice@example.com', pwdHash: 'old' });
  assert.equal(objects[1]!.attributes.description, 'Ærø é€');
  assert.deepEqual((await connector.find('UID', 'BOB', true)).map((o) => o.id), ['uid=bob,ou=People,dc=example,dc=com']);
  const plain = fileConnector('dsml', UNPREFIXED).connector;
  assert.deepEqual((await all(plain)).map((o) => o.attributes.uid), ['dave'], 'the default namespace works as well as the prefix');
});

test('dsml: the file round-trips: set values are escaped, everything else keeps its bytes', async () => {
  const { connector, file } = fileConnector('dsml', PREFIXED, {}, 'people.xml');
  const alice = 'uid=alice,ou=People,dc=example,dc=com';
  const hash = 'é€£ç <&> "quoted" \'single\'';
  await batch(connector, (r) => {
    r.set(alice, 'pwdhash', hash);
    r.set(alice, 'mail', 'new@example.com');
    r.set('uid=carol,ou=People,dc=example,dc=com', 'pwdHash', 'c€');
  });
  const text = readFileSync(file, 'utf8');
  const expected = PREFIXED
    .replace('<dsml:attr name="pwdHash"><dsml:value>old</dsml:value></dsml:attr>',
      '<dsml:attr name="pwdHash"><dsml:value>é€£ç &lt;&amp;&gt; &quot;quoted&quot; &apos;single&apos;</dsml:value></dsml:attr>')
    .replace(/<dsml:attr name="mail">[\s\S]*?<\/dsml:attr>/, '<dsml:attr name="mail"><dsml:value>new@example.com</dsml:value></dsml:attr>')
    .replace('<dsml:searchResultEntry dn="uid=carol,ou=People,dc=example,dc=com"/>',
      '<dsml:searchResultEntry dn="uid=carol,ou=People,dc=example,dc=com">\n      <dsml:attr name="pwdHash"><dsml:value>c€</dsml:value></dsml:attr>\n    </dsml:searchResultEntry>');
  assert.equal(text, expected, 'only the set attr elements changed; bob\'s entry, the comment and the layout are byte-identical');

  const objects = await all(connector);
  assert.equal(objects[0]!.attributes.pwdHash, hash);
  assert.equal(objects[0]!.attributes.mail, 'new@example.com');
  assert.equal(objects[2]!.attributes.pwdHash, 'c€');
  const parsed = new XMLParser({ removeNSPrefix: true }).parse(text) as { batchResponse: { searchResponse: { searchResultEntry: unknown[] } } };
  assert.equal(parsed.batchResponse.searchResponse.searchResultEntry.length, 3, 'still well-formed DSML');
});

test('dsml: an attribute added to an entry follows its layout', async () => {
  const { connector, file } = fileConnector('dsml', UNPREFIXED);
  await batch(connector, (r) => r.set('uid=dave', 'pwdHash', 'h'));
  assert.equal(readFileSync(file, 'utf8'), UNPREFIXED.replace('</attr></searchResultEntry>', '</attr><attr name="pwdHash"><value>h</value></attr></searchResultEntry>'), 'an entry on one line stays on one line');
  assert.equal((await all(connector))[0]!.attributes.pwdHash, 'h');
});

test('dsml: a foreign namespace, broken XML and values XML cannot carry are refused', async () => {
  await assert.rejects(fileConnector('dsml', '<batchResponse xmlns="urn:other"/>').connector.attributes(), /namespace is urn:other/);
  await assert.rejects(fileConnector('dsml', '<batchResponse><searchResponse></batchResponse>').connector.attributes(), /not well-formed XML/);
  await assert.rejects(fileConnector('dsml', '<searchRequest/>').connector.attributes(), /root element is <searchRequest>/);
  const { connector } = fileConnector('dsml', UNPREFIXED);
  const { connection, release } = await connector.connect();
  try {
    assert.throws(() => recordsOf(connection).set('uid=dave', 'pwdHash', 'a\u0001b'), (e) => assertEvent(e, 6950, /control character/));
  } finally {
    await release();
  }
});
