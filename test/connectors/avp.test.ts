import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { all, assertEvent, batch, fileConnector } from './helpers.ts';

const FILE = [
  '# people exported from HR',
  '# one block per person',
  '',
  'id: alice',
  'name:   Zoé €£ç',
  '# the old hash, kept for audit',
  'pwdHash: old',
  'mail: a@example.com',
  '',
  '',
  'id: bob',
  'name: François',
  'mail: first@example.com',
  'mail: second@example.com',
].join('\n');

test('avp: blocks are records, comments are not attributes, values are trimmed', async () => {
  const { connector } = fileConnector('avp', FILE);
  const objects = await all(connector);
  assert.deepEqual(objects.map((o) => o.id), ['alice', 'bob']);
  assert.deepEqual(objects[0]!.attributes, { id: 'alice', name: 'Zoé €£ç', pwdHash: 'old', mail: 'a@example.com' });
  assert.equal(objects[1]!.attributes.mail, 'first@example.com', 'a repeated attribute shows its first value');
  assert.deepEqual(await connector.attributes(), ['id', 'name', 'pwdHash', 'mail']);
});

test('avp: set replaces the line in place or adds one at the end of the record; the rest keeps its bytes', async () => {
  const { connector, file } = fileConnector('avp', FILE);
  await batch(connector, (r) => {
    r.set('alice', 'pwdHash', 'é€£ç');
    r.set('bob', 'pwdHash', 'new€');
    r.set('bob', 'mail', 'only@example.com');
  });
  assert.equal(readFileSync(file, 'utf8'), [
    '# people exported from HR',
    '# one block per person',
    '',
    'id: alice',
    'name:   Zoé €£ç',
    '# the old hash, kept for audit',
    'pwdHash: é€£ç',
    'mail: a@example.com',
    '',
    '',
    'id: bob',
    'name: François',
    'mail: only@example.com',
    'pwdHash: new€',
  ].join('\n'), 'the last line still has no line ending, as in the original');
  const bob = (await all(connector))[1]!;
  assert.deepEqual(bob.attributes, { id: 'bob', name: 'François', mail: 'only@example.com', pwdHash: 'new€' });
});

test('avp: the separator comes from the settings; a value with a line break is 6950', async () => {
  const { connector, file } = fileConnector('avp', 'uid = a\r\npw = x\r\n\r\nuid = b\r\n', { separator: '=', anchor: 'uid' });
  await batch(connector, (r) => {
    assert.throws(() => r.set('a', 'pw', 'x\ny'), (e) => assertEvent(e, 6950, /line break/));
    r.set('b', 'pw', 'ç');
  });
  assert.equal(readFileSync(file, 'utf8'), 'uid = a\r\npw = x\r\n\r\nuid = b\r\npw= ç\r\n');
});

test('avp: duplicate anchors and lines without a separator are refused with their line', async () => {
  await assert.rejects(fileConnector('avp', 'id: a\n\nid: b\n\nid: a\n').connector.attributes(), /records\.txt:5: id "a" is already the anchor of the record at line 1/);
  await assert.rejects(fileConnector('avp', 'id: a\nno separator here\n').connector.attributes(), /records\.txt:2: expected `attribute: value`/);
});
