import { PwsyncError } from '../../core/errors.ts';
import { TargetUnavailableError } from '../../core/extension.ts';

/**
 * What a record file format (CSV, fixed-width, attribute-value pairs, LDIF, DSML) gives the shared
 * record-file connector: the records it read, and the file's text again with some values changed.
 * Rendering splices: every byte of what was not changed comes back as it was read, so a commit
 * never reformats an admin's file.
 */

export interface ParsedRecord {
  readonly attributes: Readonly<Record<string, string>>;
  /** 1-based line where the record starts, for messages. */
  readonly line: number;
}

/** record index → attribute → new value */
export type RecordChanges = ReadonlyMap<number, ReadonlyMap<string, string>>;

export interface RecordDocument {
  readonly records: readonly ParsedRecord[];
  /** The attribute names records can have (join rules are checked against them). */
  readonly attributeNames: readonly string[];
  /** LDAP formats (LDIF, DSML) compare attribute names without regard to case. */
  readonly ignoreNameCase: boolean;
  /** Throws PwsyncError 6950 when the format cannot hold `value` in `attribute` of record `index`. */
  check(index: number, attribute: string, value: string): void;
  /** The whole file's text with `changes` applied; every other byte as it was read. */
  render(changes: RecordChanges): string;
}

/** Parses a file's text (without its byte-order mark); throws RecordFileFormatError. */
export type RecordCodec = (text: string, location: string) => RecordDocument;

/**
 * The file does not parse. Retryable: an admin fixes the file and the next attempt reads it again.
 */
export class RecordFileFormatError extends TargetUnavailableError {
  constructor(readonly location: string, readonly line: number, problem: string, options?: { cause?: unknown }) {
    super(`${location}:${line}: ${problem}`, options);
    this.name = 'RecordFileFormatError';
  }
}

/** The format cannot store a value (6950): names the field and what it would need, never the value. */
export function cannotHold(location: string, problem: string): PwsyncError {
  return new PwsyncError(6950, `${location}: ${problem}`);
}

/** One physical line with its line ending ('' on a last line without one). */
export interface Line {
  readonly text: string;
  readonly eol: string;
}

export function splitLines(text: string): Line[] {
  const lines: Line[] = [];
  const re = /\r\n|\n|\r/g;
  let start = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    lines.push({ text: text.slice(start, m.index), eol: m[0] });
    start = m.index + m[0].length;
  }
  if (start < text.length) lines.push({ text: text.slice(start), eol: '' });
  return lines;
}

/** The file's own line ending, so lines we add look like the lines already there. */
export function fileEol(lines: readonly Line[]): string {
  return lines.find((l) => l.eol !== '')?.eol ?? '\n';
}

/**
 * A record's lines after an edit (lines replaced or dropped, `added` appended at its end), ending
 * the way the original record ended: with the same line ending, or none when it was the last
 * line of a file without a final newline. Lines inside the record all get a line ending.
 */
export function finishRecord(kept: readonly Line[], original: readonly Line[], added: readonly string[], eol: string): Line[] {
  const texts = [...kept.map((l) => l.text), ...added];
  const eols = [...kept.map((l) => l.eol || eol), ...added.map(() => eol)];
  if (eols.length > 0) eols[eols.length - 1] = original.at(-1)?.eol ?? eol;
  return texts.map((text, i) => ({ text, eol: eols[i]! }));
}

export function joinLines(lines: readonly Line[]): string {
  let s = '';
  for (const l of lines) s += l.text + l.eol;
  return s;
}

/** The spelling of `attribute` a record already uses (LDAP names ignore case), else `attribute`. */
export function attributeName(attributes: Readonly<Record<string, string>>, attribute: string, ignoreNameCase: boolean): string {
  if (Object.hasOwn(attributes, attribute) || !ignoreNameCase) return attribute;
  const lower = attribute.toLowerCase();
  return Object.keys(attributes).find((k) => k.toLowerCase() === lower) ?? attribute;
}

/** Attribute names in first-seen order, deduplicated (without regard to case when asked). */
export function collectNames(records: readonly ParsedRecord[], ignoreNameCase: boolean): string[] {
  const seen = new Map<string, string>();
  for (const r of records) {
    for (const k of Object.keys(r.attributes)) {
      const key = ignoreNameCase ? k.toLowerCase() : k;
      if (!seen.has(key)) seen.set(key, k);
    }
  }
  return [...seen.values()];
}

/** A value with a line break cannot be one line of a line-oriented format. */
export function hasLineBreak(value: string): boolean {
  return /[\r\n]/.test(value);
}
