/**
 * A second process on the same broker file (run with `node --import tsx`): publishes `count`
 * messages `<prefix>-<i>` on `<prefix>.<i % 4>`, keeping `inFlight` unacknowledged, and prints
 * `acked <msgId> <seq> <new|dup>` the moment each publish resolves (stdout to a pipe is synchronous).
 *
 * argv: file count prefix inFlight groupCommitMs
 */
import { openSqliteBroker } from '../../core/broker-sqlite.ts';

const [file, count, prefix, inFlight, groupCommitMs] = process.argv.slice(2);
if (!file || !count || !prefix || !inFlight || groupCommitMs === undefined) {
  throw new Error('usage: child-publish.ts FILE COUNT PREFIX IN_FLIGHT GROUP_COMMIT_MS');
}
const broker = openSqliteBroker({ file, groupCommitMs: Number(groupCommitMs) });
const total = Number(count);
let next = 0;

async function lane(): Promise<void> {
  while (next < total) {
    const i = next++;
    const msgId = `${prefix}-${i}`;
    const ack = await broker.publish(`${prefix}.${i % 4}`, Buffer.from(`payload ${i} `.padEnd(400, '.')), { msgId });
    process.stdout.write(`acked ${msgId} ${ack.seq} ${ack.duplicate ? 'dup' : 'new'}\n`);
  }
}

await Promise.all(Array.from({ length: Number(inFlight) }, lane));
await broker.close();
