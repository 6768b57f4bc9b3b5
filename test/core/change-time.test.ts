import assert from 'node:assert/strict';
import { test } from 'node:test';
import { changeTimeProblem, formatSkew, formatTime } from '../../core/change-time.ts';

const NOW = Date.UTC(2026, 11, 7, 12, 0, 0);
const MINUTE = 60_000;

test('formatTime prints a time a Date holds as ISO 8601 and any other value as itself, never throwing', () => {
  const cases: Array<[number | undefined, string]> = [
    [NOW, '2026-12-07T12:00:00.000Z'],
    [8.64e15, '+275760-09-13T00:00:00.000Z'],
    [8.64e15 + 1, '8640000000000001 (not a valid time)'],
    [Number.MAX_SAFE_INTEGER, '9007199254740991 (not a valid time)'],
    [-1e16, '-10000000000000000 (not a valid time)'],
    [Number.NaN, 'NaN (not a valid time)'],
    [undefined, '-'],
  ];
  for (const [ms, text] of cases) assert.equal(formatTime(ms), text, String(ms));
  // A stored record is data from outside: a string or an object where a number belongs.
  assert.equal(formatTime('soon' as unknown as number), 'soon (not a valid time)');
});

test('changeTimeProblem refuses a time beyond the clock plus the tolerance and names the skew; accepts the past and the tolerated', () => {
  const refused: Array<[unknown, RegExp]> = [
    [NOW + 5 * MINUTE + 1, /is 5m ahead of this clock \(2026-12-07T12:00:00\.000Z\), beyond the clock tolerance of 5m/],
    [NOW + 10 * MINUTE, /2026-12-07T12:10:00\.000Z is 10m ahead/],
    [Date.UTC(9999, 11, 31), /9999-12-31T00:00:00\.000Z is \d+d ahead/],
    [Number.MAX_SAFE_INTEGER, /9007199254740991 \(not a valid time\) is \d+d ahead/],
    [0, /change time 0 is not a positive whole number of ms/],
    [1.5, /not a positive whole number/],
    [2 ** 53, /not a positive whole number/],
    ['1700000000000', /not a positive whole number/],
  ];
  for (const [t, reason] of refused) {
    const p = changeTimeProblem(t, NOW, 5 * MINUTE);
    assert.ok(p, String(t));
    assert.match(p.reason, reason);
  }
  assert.equal(changeTimeProblem(NOW + 10 * MINUTE, NOW, 5 * MINUTE)?.skewMs, 10 * MINUTE);
  for (const t of [NOW, NOW + 5 * MINUTE, NOW - 365 * 24 * 60 * MINUTE, Date.UTC(1990, 0, 1), 1]) {
    assert.equal(changeTimeProblem(t, NOW, 5 * MINUTE), undefined, String(t));
  }
  assert.ok(changeTimeProblem(NOW + 1, NOW, 0), 'a tolerance of 0 refuses any time ahead');
});

test('formatSkew picks a readable unit', () => {
  assert.deepEqual([42_000, 12 * MINUTE, 5 * 60 * MINUTE, 9 * 24 * 60 * MINUTE].map(formatSkew), ['42s', '12m', '5h', '9d']);
});
