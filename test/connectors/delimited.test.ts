import { recordsOf } from '../../core/extension.ts';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { all, assertEvent, batch, fileConnector, strayFiles } from './helpers.ts';

const CSV = [
  'id,name,mail,pwdHash',
  '1,"Dupont, Zoé",zoe@example.com,',
  '"2",Ærøskøbing £ ç,"say ""hi""","old"',
  '3,François,FRANCOIS@Example.com,',
  '',
].join('\r\n');

test('delimited: reads the header as attribute names and each line as a record', async () => {
  const { connector } = fileConnector('delimited', CSV, {}, 'people.csv');
  assert.deepEqual(await connector.attributes(), ['id', 'name', 'mail', 'pwdHash']);
  const objects = await all(connector);
  assert.deepEqual(objects.map((o) => o.id), ['1', '2', '3']);
  assert.equal(objects[0]!.attributes.name, 'Dupont, Zoé');
  assert.equal(objects[1]!.attributes.mail, 'say "hi"');
  const found = await connector.find('mail', 'francois@EXAMPLE.com', true);
  assert.deepEqual(found.map((o) => o.id), ['3']);
  assert.deepEqual(await connector.find('mail', 'francois@example.com', false), [], 'case-sensitive find does not fold');
  assert.deepEqual((await connector.find('name', 'FRANÇOIS', true)).map((o) => o.id), ['3'], 'non-ASCII folds too');
});

test('delimited: a set value is written back and untouched records keep their bytes', async () => {
  const { connector, file, dir } = fileConnector('delimited', CSV, {}, 'people.csv');
  await batch(connector, (records) => {
    records.set('1', 'pwdHash', 'é€£ç, "quoted"');
  });
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\r\n');
  assert.equal(lines[0], 'id,name,mail,pwdHash');
  assert.equal(lines[1], '1,"Dupont, Zoé",zoe@example.com,"é€£ç, ""quoted"""');
  assert.equal(lines[2], '"2",Ærøskøbing £ ç,"say ""hi""","old"', 'untouched record byte-identical, needless quotes included');
  assert.equal(lines[3], '3,François,FRANCOIS@Example.com,');
  assert.equal(lines[4], '', 'the final line ending is kept');
  assert.deepEqual(strayFiles(dir, 'people.csv'), []);
  const [one] = await connector.find('id', '1', false);
  assert.equal(one!.attributes.pwdHash, 'é€£ç, "quoted"');
});

test('delimited: delimiter and quote come from the settings', async () => {
  const { connector, file } = fileConnector('delimited', "uid;cn;pw\nalice;'A; B';x\nbob;Bob;y\n", { delimiter: ';', quote: '\'', anchor: 'uid' });
  assert.equal((await all(connector))[0]!.attributes.cn, 'A; B');
  await batch(connector, (r) => r.set('bob', 'pw', 'v;1'));
  assert.equal(readFileSync(file, 'utf8'), "uid;cn;pw\nalice;'A; B';x\nbob;Bob;'v;1'\n");
});

test('delimited: an unknown column is 6950 naming it; an unknown id is 6923', async () => {
  const { connector, file } = fileConnector('delimited', CSV);
  const { connection, release } = await connector.connect();
  try {
    assert.throws(() => recordsOf(connection).set('1', 'userPassword', 'x'), (e) => assertEvent(e, 6950, /userPassword/, /columns: id, name, mail, pwdHash/));
    assert.throws(() => recordsOf(connection).set('99', 'pwdHash', 'x'), (e) => assertEvent(e, 6923, /"99"/));
    assert.throws(() => recordsOf(connection).set('1', 'id', '7'), (e) => assertEvent(e, 6950, /anchor/));
  } finally {
    await release();
  }
  assert.equal(readFileSync(file, 'utf8'), CSV, 'nothing written');
});

test('delimited: a latin1 file is read and written as latin1; a value latin1 cannot hold is 6950', async () => {
  const bytes = Buffer.from('id,name,pw\n1,Zoé £ ç,\n', 'latin1');
  const { connector, file } = fileConnector('delimited', bytes, { encoding: 'latin1' });
  assert.equal((await all(connector))[0]!.attributes.name, 'Zoé £ ç');
  await batch(connector, (r) => {
    assert.throws(() => r.set('1', 'pw', '€'), (e) => assertEvent(e, 6950, /latin1/));
    r.set('1', 'pw', 'çé');
  });
  assert.deepEqual(readFileSync(file), Buffer.from('id,name,pw\n1,Zoé £ ç,çé\n', 'latin1'));
});

test('delimited: a file without a header, or with a ragged row, is refused with its line', async () => {
  const ragged = fileConnector('delimited', 'id,a\n1,x\n2,y,z\n').connector;
  await assert.rejects(ragged.find('id', '1', false), (e: Error) => e.message.includes(':3:') && /delimited/.test(e.message));
  const dup = fileConnector('delimited', 'id,id\n1,2\n').connector;
  await assert.rejects(dup.attributes(), /names column "id" twice/);
  const noAnchor = fileConnector('delimited', 'uid,a\n1,x\n').connector;
  await assert.rejects(noAnchor.attributes(), /anchor attribute id/);
});
