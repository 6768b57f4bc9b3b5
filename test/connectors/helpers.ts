import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isExtensionHost, isObjectSource, type Connector, type ExtensionHost, type ObjectSource } from '../../connectors/contract.ts';
import { createConnector } from '../../connectors/registry.ts';
import { PwsyncError } from '../../core/errors.ts';
import { recordsOf, type RecordSet } from '../../core/extension.ts';
import { silentLogger } from '../../core/log.ts';
import { testDir } from '../lib/dirs.ts';

export type FileConnector = Connector & ObjectSource & ExtensionHost;

/** A connector of `kind` over a fresh file holding `content` (a string is written as UTF-8). */
export function fileConnector(kind: string, content: string | Buffer, settings: Record<string, unknown> = {}, fileName = 'records.txt'): { connector: FileConnector; file: string; dir: string } {
  const dir = testDir(`conn-${kind}`);
  const file = path.join(dir, fileName);
  writeFileSync(file, content);
  const connector = createConnector(`t-${kind}`, kind, { path: fileName, ...settings }, { log: silentLogger(), resolvePath: (p) => path.resolve(dir, p) });
  assert.ok(isObjectSource(connector) && isExtensionHost(connector));
  return { connector: connector as FileConnector, file, dir };
}

/** One batch: connect, let `fn` stage values, commit, release. */
export async function batch(connector: ExtensionHost, fn: (records: RecordSet) => void | Promise<void>): Promise<void> {
  const { connection, release } = await connector.connect();
  try {
    await fn(recordsOf(connection));
    await recordsOf(connection).commit();
  } finally {
    await release();
  }
}

export async function all(source: ObjectSource): Promise<Array<{ id: string; attributes: Readonly<Record<string, string>> }>> {
  const out = [];
  for await (const o of source.list()) out.push(o);
  return out;
}

export function assertEvent(e: unknown, eventId: number, ...fragments: RegExp[]): true {
  assert.ok(e instanceof PwsyncError, `expected a PwsyncError, got ${String(e)}`);
  assert.equal(e.eventId, eventId, e.message);
  for (const f of fragments) assert.match(e.message, f);
  return true;
}

/** Files in `dir` other than `keep`: a commit must leave no temp file behind. */
export function strayFiles(dir: string, keep: string): string[] {
  return readdirSync(dir).filter((f) => f !== keep);
}
