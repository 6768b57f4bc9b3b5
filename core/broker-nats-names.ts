import { subjectToken } from './broker.ts';

/**
 * How broker names map onto JetStream. Every broker subject gets the prefix in front
 * (`changes.corp` → `pwsync.changes.corp`), so several pwsync installations can share one NATS and
 * a NATS user's permissions can be written per prefix. Each first subject token has its own stream
 * (`pwsync_changes` holds `pwsync.changes` and `pwsync.changes.>`): changes and set-operations are
 * stored, replicated and permitted apart. KV buckets are `<prefix>_<bucket>` (stream KV_<prefix>_<bucket>).
 */
export interface NatsNames {
  readonly prefix: string;
}

export const PREFIX_PATTERN = /^[A-Za-z0-9_-]{1,32}$/;

/** The stream that holds broker subjects starting with `token`. */
export function streamName(n: NatsNames, token: string): string {
  return `${n.prefix}_${subjectToken(token)}`;
}

export function streamSubjects(n: NatsNames, token: string): string[] {
  return [`${n.prefix}.${token}`, `${n.prefix}.${token}.>`];
}

export function natsSubject(n: NatsNames, subject: string): string {
  return `${n.prefix}.${subject}`;
}

/** The broker subject of a stored NATS subject (the prefix taken off). */
export function brokerSubject(n: NatsNames, natsSubj: string): string {
  return natsSubj.slice(n.prefix.length + 1);
}

export function firstToken(subjectOrFilter: string): string {
  const i = subjectOrFilter.indexOf('.');
  return i < 0 ? subjectOrFilter : subjectOrFilter.slice(0, i);
}

export function bucketName(n: NatsNames, bucket: string): string {
  return `${n.prefix}_${bucket}`;
}

/** The bucket that remembers message ids beyond JetStream's duplicate window (see NatsBroker.publish). */
export const SEEN_BUCKET = 'seen-msgids';

/**
 * KV keys are any non-empty text in the Broker contract; NATS keys are subject tokens of
 * [-/=_A-Za-z0-9]. Each dot-separated segment is escaped on its own (`=` + two hex digits per byte
 * outside that set, `=` itself included; an empty segment is a lone `=`), and the dots stay dots: a
 * key prefix that ends in `.` is then a subject filter (`a.b.` → `$KV.bucket.a.b.>`), so listing
 * one account's keys does not read the whole bucket.
 */
export function encodeKey(key: string): string {
  return key.split('.').map(encodeSegment).join('.');
}

export function decodeKey(encoded: string): string {
  return encoded.split('.').map(decodeSegment).join('.');
}

function encodeSegment(seg: string): string {
  if (seg === '') return '=';
  let out = '';
  for (const ch of seg) {
    if (/^[-/_A-Za-z0-9]$/.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `=${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

function decodeSegment(seg: string): string {
  if (seg === '=') return '';
  const bytes: number[] = [];
  for (let i = 0; i < seg.length;) {
    if (seg[i] === '=') {
      bytes.push(parseInt(seg.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      bytes.push(seg.charCodeAt(i));
      i++;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * The narrowest KV filter (encoded, relative to the bucket) that holds every key starting with
 * `prefix`: its complete segments, then `>`. The caller still checks `startsWith` on each key.
 */
export function keyFilter(prefix: string): string {
  const last = prefix.lastIndexOf('.');
  if (last < 0) return '>';
  return `${encodeKey(prefix.slice(0, last))}.>`;
}
