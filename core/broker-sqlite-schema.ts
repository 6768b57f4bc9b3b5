import Database from 'better-sqlite3';
import { subjectMatches } from './broker.ts';

type Db = Database.Database;

/** Bumped when the tables below change shape; an older pwsync refuses a newer file. */
const SCHEMA_VERSION = 1;

/**
 * One stream of messages; per consumer one row for every message it still needs (fan-out rows,
 * written in the publishing transaction), so "what is due" is an indexed range scan and an ack is
 * one delete. A message whose rows are all gone is no longer needed and is cleaned up.
 */
const DDL = `
CREATE TABLE IF NOT EXISTS messages (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  subject      TEXT    NOT NULL,
  msg_id       TEXT    NOT NULL,
  data         BLOB    NOT NULL,
  published_at INTEGER NOT NULL,
  claimed      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_unclaimed ON messages (claimed, published_at);
CREATE TABLE IF NOT EXISTS dedupe (
  msg_id TEXT    PRIMARY KEY,
  seq    INTEGER NOT NULL,
  at     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_at ON dedupe (at);
CREATE TABLE IF NOT EXISTS consumers (
  name       TEXT    PRIMARY KEY,
  filter     TEXT    NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consumer_msgs (
  consumer       TEXT    NOT NULL,
  seq            INTEGER NOT NULL,
  due_at         INTEGER NOT NULL,
  delivery_count INTEGER NOT NULL,
  PRIMARY KEY (consumer, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS consumer_msgs_seq ON consumer_msgs (seq);
CREATE INDEX IF NOT EXISTS consumer_msgs_due ON consumer_msgs (consumer, due_at);
CREATE TABLE IF NOT EXISTS kv_buckets (
  bucket        TEXT    PRIMARY KEY,
  last_revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
  bucket   TEXT    NOT NULL,
  key      TEXT    NOT NULL,
  value    BLOB    NOT NULL,
  revision INTEGER NOT NULL,
  PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
`;

/** The SQL function publish fan-out and consumer back-fill use to match NATS-style filters. */
export const SUBJECT_MATCH_FN = 'pwsync_subject_matches';

/**
 * Opens the file so that several processes can share it (WAL, busy timeout) and a committed
 * transaction survives kill -9 and power loss (synchronous=FULL).
 */
export function openBrokerDb(file: string, busyTimeoutMs: number): Db {
  const db = new Database(file, { timeout: busyTimeoutMs });
  try {
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    // The WAL is reused after each checkpoint; this only shrinks it back after a burst.
    db.pragma('journal_size_limit = 67108864');
    db.function(SUBJECT_MATCH_FN, { deterministic: true }, (filter: unknown, subject: unknown) =>
      subjectMatches(String(filter), String(subject)) ? 1 : 0);
    db.transaction(() => {
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new Error(`broker file ${file} has schema version ${version}, newer than this pwsync ` +
          `understands (${SCHEMA_VERSION}); upgrade pwsync or point the broker at another file`);
      }
      db.exec(DDL);
      if (version < SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
    }).immediate();
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}
