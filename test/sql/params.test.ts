import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bindNamed } from '../../connectors/sql/params.ts';
import { paramNames, scanParams } from '../../core/sql-params.ts';

test('params: :name becomes each driver\'s placeholder, values in order', () => {
  const sql = 'UPDATE t SET h = :hash WHERE login = :login AND realm = :realm';
  const p = { hash: 'H', login: 'alice', realm: 'r' };
  assert.deepEqual(bindNamed(sql, p, 'dollar'), { text: 'UPDATE t SET h = $1 WHERE login = $2 AND realm = $3', positional: ['H', 'alice', 'r'], named: {} });
  assert.deepEqual(bindNamed(sql, p, 'question'), { text: 'UPDATE t SET h = ? WHERE login = ? AND realm = ?', positional: ['H', 'alice', 'r'], named: {} });
  assert.deepEqual(bindNamed(sql, p, 'at'), { text: 'UPDATE t SET h = @hash WHERE login = @login AND realm = @realm', positional: [], named: p });
  assert.deepEqual(bindNamed(sql, p, 'colon'), { text: sql, positional: [], named: p });
});

test('params: a name used twice is one $n for PostgreSQL and two ? for positional drivers', () => {
  const sql = 'SELECT :a, :b, :a';
  assert.deepEqual(bindNamed(sql, { a: 1, b: 2 }, 'dollar'), { text: 'SELECT $1, $2, $1', positional: [1, 2], named: {} });
  assert.deepEqual(bindNamed(sql, { a: 1, b: 2 }, 'question'), { text: 'SELECT ?, ?, ?', positional: [1, 2, 1], named: {} });
});

test('params: :words in strings, identifiers, comments, dollar quotes and :: casts are left alone', () => {
  const cases: Array<[string, string]> = [
    ["SELECT ':x', :y", "SELECT ':x', $1"],
    ["SELECT 'it''s :x', :y", "SELECT 'it''s :x', $1"],
    ["SELECT E'a\\' :x', :y", "SELECT E'a\\' :x', $1"],
    ['SELECT ":x", :y', 'SELECT ":x", $1'],
    ['SELECT `:x`, :y', 'SELECT `:x`, $1'],
    ['SELECT 1 -- :x\n, :y', 'SELECT 1 -- :x\n, $1'],
    ['SELECT /* :x */ :y', 'SELECT /* :x */ $1'],
    ['SELECT $$ :x $$, :y', 'SELECT $$ :x $$, $1'],
    ['SELECT $q$ :x $q$, :y', 'SELECT $q$ :x $q$, $1'],
    ['SELECT :y::text', 'SELECT $1::text'],
    ['SELECT now()::date, :y', 'SELECT now()::date, $1'],
  ];
  for (const [sql, want] of cases) assert.equal(bindNamed(sql, { y: 'v' }, 'dollar').text, want, sql);
  assert.deepEqual(paramNames("UPDATE t SET a = ':no', b = :hash WHERE c = :login::text"), ['hash', 'login']);
});

test('params: a parameter without a value is an error naming it; values never enter the text', () => {
  assert.throws(() => bindNamed('UPDATE t SET h = :hash WHERE l = :login', { hash: 'x' }, 'dollar'), /:login/);
  const hostile = "x'; DROP TABLE t; --";
  const b = bindNamed('UPDATE t SET h = :hash WHERE l = :login', { hash: hostile, login: ':hash' }, 'question');
  assert.equal(b.text, 'UPDATE t SET h = ? WHERE l = ?');
  assert.deepEqual(b.positional, [hostile, ':hash']);
});

test('MariaDB lexis: a backslash-escaped quote and a # comment hide a :word; PostgreSQL has neither', () => {
  const sql = "UPDATE t SET note = 'it\\'s :x' # :y\nWHERE login = :login";
  assert.deepEqual(scanParams(sql, { backslashEscapes: true, hashComments: true }).names, ['login']);
  assert.throws(() => bindNamed(sql, { login: 'a' }, 'question'), /no value was given/, 'without the MariaDB rules, :x and :y look like parameters');
  assert.equal(bindNamed(sql, { login: 'a' }, 'question', { backslashEscapes: true, hashComments: true }).text, "UPDATE t SET note = 'it\\'s :x' # :y\nWHERE login = ?");
});
