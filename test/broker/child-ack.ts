/**
 * A second process that consumes and acknowledges (run with `node --import tsx`): prints
 * `acked <msgId>` the moment each ack resolves, until nothing has come for a second.
 *
 * argv: file durableName filter groupCommitMs
 */
import { openSqliteBroker } from '../../core/broker-sqlite.ts';

const [file, durable, filter, groupCommitMs] = process.argv.slice(2);
if (!file || !durable || !filter || groupCommitMs === undefined) {
  throw new Error('usage: child-ack.ts FILE DURABLE FILTER GROUP_COMMIT_MS');
}
const broker = openSqliteBroker({ file, groupCommitMs: Number(groupCommitMs) });
const consumer = await broker.consumer(durable, filter);
for (;;) {
  const got = await consumer.fetch({ max: 64, expiresMs: 1000 });
  if (got.length === 0) break;
  await Promise.all(got.map(async (d) => {
    await d.ack();
    process.stdout.write(`acked ${d.msgId}\n`);
  }));
}
await broker.close();
