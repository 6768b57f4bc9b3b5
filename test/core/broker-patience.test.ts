import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Consumer, Delivery } from '../../core/broker.ts';
import { BrokerPatience } from '../../core/broker-patience.ts';
import { PwsyncError } from '../../core/errors.ts';
import { capturingLog } from '../notifier/helpers.ts';

function consumerFailing(errors: Error[]): Consumer {
  return {
    name: 'c',
    async fetch() {
      const e = errors.shift();
      if (e) throw e;
      return [{ seq: 1 } as unknown as Delivery];
    },
    async info() { return { pending: 0 }; },
  };
}

test('a broker outage (retryable 6970) pauses a loop\'s fetch instead of ending it; logged once per outage, and its end too', async () => {
  const { log, lines } = capturingLog();
  const p = new BrokerPatience(log, 'resolver');
  const down = (): PwsyncError => new PwsyncError(6970, 'no leader', { retryable: true });
  const c = consumerFailing([down(), down()]);
  const signal = new AbortController().signal;
  assert.deepEqual(await p.fetch(c, { max: 1, expiresMs: 10, signal }), []);
  assert.deepEqual(await p.fetch(c, { max: 1, expiresMs: 10, signal }), []);
  assert.equal((await p.fetch(c, { max: 1, expiresMs: 10, signal })).length, 1);
  const said = lines.filter((l) => l.level >= 30).map((l) => l.msg);
  assert.deepEqual(said, ['resolver: the broker cannot be reached; waiting for it', 'resolver: the broker answers again']);
});

test('anything else than a retryable broker error still ends the loop', async () => {
  const p = new BrokerPatience(capturingLog().log, 'resolver');
  const signal = new AbortController().signal;
  await assert.rejects(p.fetch(consumerFailing([new PwsyncError(6971, 'refused', { retryable: false })]), { max: 1, expiresMs: 10, signal }), /refused/);
  await assert.rejects(p.fetch(consumerFailing([new TypeError('bug')]), { max: 1, expiresMs: 10, signal }), /bug/);
});

test('an abort ends the pause at once', async () => {
  const p = new BrokerPatience(capturingLog().log, 'resolver');
  const ac = new AbortController();
  const started = Date.now();
  setTimeout(() => ac.abort(), 20);
  assert.deepEqual(await p.fetch(consumerFailing([new PwsyncError(6970, 'down', { retryable: true })]), { max: 1, expiresMs: 10, signal: ac.signal }), []);
  assert.ok(Date.now() - started < 900, 'did not wait the whole pause');
});
