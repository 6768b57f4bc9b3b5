import { recordsOf } from '../../core/extension.ts';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { all, assertEvent, batch, fileConnector } from './helpers.ts';

const FIELDS = [{ name: 'id', width: 6 }, { name: 'name', width: 12 }, { name: 'pw', width: 10 }];
const FILE = [
  'alice Zoé €£ç     old       ',
  'bob   François    ',
  '',
  'carol Ærø         x         ',
].join('\n') + '\n';

test('fixed-width: fields are cut by their widths in characters, padding dropped', async () => {
  const { connector } = fileConnector('fixed-width', FILE, { fields: FIELDS });
  const objects = await all(connector);
  assert.deepEqual(objects.map((o) => o.id), ['alice', 'bob', 'carol']);
  assert.deepEqual(objects[0]!.attributes, { id: 'alice', name: 'Zoé €£ç', pw: 'old' });
  assert.deepEqual(objects[1]!.attributes, { id: 'bob', name: 'François', pw: '' }, 'a short line has empty trailing fields');
  assert.deepEqual(await connector.attributes(), ['id', 'name', 'pw']);
});

test('fixed-width: a set value is right-padded into its field; other lines keep their bytes', async () => {
  const { connector, file } = fileConnector('fixed-width', FILE, { fields: FIELDS });
  await batch(connector, (r) => {
    r.set('bob', 'pw', 'é€£ç');
    r.set('carol', 'name', 'Ça');
  });
  const lines = readFileSync(file, 'utf8').split('\n');
  assert.equal(lines[0], 'alice Zoé €£ç     old       ', 'untouched line byte-identical');
  assert.equal(lines[1], 'bob   François    é€£ç      ');
  assert.equal(lines[2], '');
  assert.equal(lines[3], 'carol Ça          x         ', 'only the set field of the line changes');
  const [bob] = await connector.find('id', 'bob', false);
  assert.equal(bob!.attributes.pw, 'é€£ç');
});

test('fixed-width: a value wider than its field is 6950 naming field, width and needed width; never truncated', async () => {
  const { connector, file } = fileConnector('fixed-width', FILE, { fields: FIELDS });
  const { connection, release } = await connector.connect();
  try {
    assert.throws(() => recordsOf(connection).set('alice', 'pw', '$scrypt$ln=14,r=8'), (e) => assertEvent(e, 6950, /field pw/, /10 characters wide/, /needs 17/));
    assert.throws(() => recordsOf(connection).set('alice', 'pwdHash', 'x'), (e) => assertEvent(e, 6950, /no field "pwdHash"/));
    assert.throws(() => recordsOf(connection).set('nobody', 'pw', 'x'), (e) => assertEvent(e, 6923));
    recordsOf(connection).set('alice', 'pw', 'é'.repeat(10));
    await recordsOf(connection).commit();
  } finally {
    await release();
  }
  assert.equal(readFileSync(file, 'utf8').split('\n')[0], `alice Zoé €£ç     ${'é'.repeat(10)}`, 'ten non-ASCII characters fit ten columns');
});

test('fixed-width: a line longer than the fields is refused with its line number', async () => {
  const { connector } = fileConnector('fixed-width', 'a     b           c         overflow\n', { fields: FIELDS, anchor: 'name' });
  await assert.rejects(connector.attributes(), /records\.txt:1: the line is 36 characters long but the fields add up to 28/);
});
