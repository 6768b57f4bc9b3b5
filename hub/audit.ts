import { randomBytes } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import type { Broker, KvStore } from '../core/broker.ts';
import { decode, encode } from './records.ts';

/** What an admin action did: it was carried out, it was refused (role, state), or it failed. */
export type AuditResult = 'ok' | 'refused' | 'failed';

/**
 * One admin action: who, what, on whom, when, from where, and the result. Never a password:
 * `detail` holds ids, counts and reasons only.
 */
export interface AuditEntry {
  at: number;
  /** The person or account that acted: the OS user of a CLI on the hub host, later a signed-in user. */
  actor: string;
  /** Where the action came from: a host name or a client address. */
  from: string;
  /** A verb from the domain: `retry`, `retry-bulk`, `latest-clear`, … */
  action: string;
  /** Whom or what it acted on: an operation id, an account, a connector. */
  subject: string;
  result: AuditResult;
  detail?: string;
}

/** Who runs this process, for actions taken through the CLI on the hub's own host. */
export function localActor(): { actor: string; from: string } {
  let user = process.env.SUDO_USER ? `${process.env.SUDO_USER} (sudo)` : '';
  if (!user) {
    try {
      user = userInfo().username;
    } catch {
      user = `uid ${process.getuid?.() ?? '?'}`;
    }
  }
  return { actor: user, from: hostname() };
}

/**
 * The audit trail: append-only, kept in the broker beside the state it speaks of (the embedded
 * file or JetStream), so every hub sharing a broker reads the same trail. Keys sort by time.
 */
export class AuditTrail {
  private constructor(private readonly kv: KvStore) {}

  static async open(broker: Broker): Promise<AuditTrail> {
    return new AuditTrail(await broker.kv('audit'));
  }

  async record(e: Omit<AuditEntry, 'at'> & { at?: number }): Promise<AuditEntry> {
    const entry: AuditEntry = { ...e, at: e.at ?? Date.now() };
    // create, never put: an entry once written is not replaced.
    await this.kv.create(`${entry.at.toString().padStart(15, '0')}.${randomBytes(6).toString('hex')}`, encode(entry));
    return entry;
  }

  /** Entries at or after `since` (ms), oldest first, at most `limit` of the newest. */
  async list(opts: { since?: number; limit?: number } = {}): Promise<AuditEntry[]> {
    const keys = await this.kv.keys();
    const since = opts.since ?? 0;
    const wanted = keys.filter((k) => Number(k.slice(0, 15)) >= since);
    const out: AuditEntry[] = [];
    for (const k of wanted.slice(-(opts.limit ?? wanted.length))) {
      const v = await this.kv.get(k);
      if (v) out.push(decode<AuditEntry>(v.value));
    }
    return out;
  }
}
