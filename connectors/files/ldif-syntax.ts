import type { Line } from './codec.ts';

/**
 * RFC 2849 line syntax: folding (a line that starts with one space continues the one before),
 * comments, `attr: value`, `attr:: base64`, `attr:< url`, and the encoding rule for writing.
 */

/** One unfolded line and the physical lines it came from. */
export interface LogicalLine {
  readonly text: string;
  readonly comment: boolean;
  /** First physical line index, and one past the last. */
  readonly start: number;
  readonly end: number;
}

/** Blocks of logical lines, separated by blank lines (an LDIF record, or comments). */
export function logicalBlocks(lines: readonly Line[], onError: (line: number, problem: string) => never): LogicalLine[][] {
  const blocks: LogicalLine[][] = [];
  let block: LogicalLine[] | undefined;
  lines.forEach((l, n) => {
    if (l.text.startsWith(' ') && block) {
      const last = block.pop()!;
      block.push({ ...last, text: last.text + l.text.slice(1), end: n + 1 });
      return;
    }
    if (l.text.trim() === '') {
      block = undefined;
      return;
    }
    if (l.text.startsWith(' ')) onError(n + 1, 'a continuation line (starting with a space) follows a blank line: remove the space or join it to the line it continues');
    if (!block) blocks.push(block = []);
    block.push({ text: l.text, comment: l.text.startsWith('#'), start: n, end: n + 1 });
  });
  return blocks;
}

export type AttrValue =
  | { readonly name: string; readonly kind: 'text'; readonly value: string }
  /** base64 that is not UTF-8 text (a photo, a certificate), or a URL: kept, never shown as a string. */
  | { readonly name: string; readonly kind: 'opaque' };

const ATTR_LINE = /^([A-Za-z0-9][A-Za-z0-9;.-]*):(:|<)?[ ]*(.*)$/s;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function parseAttrLine(text: string): AttrValue | 'malformed' {
  const m = ATTR_LINE.exec(text);
  if (!m) return 'malformed';
  const [, name, form, rest] = m as unknown as [string, string, string | undefined, string];
  if (form === '<') return { name, kind: 'opaque' };
  if (form === undefined) return { name, kind: 'text', value: rest };
  const b64 = rest.trimEnd();
  if (!BASE64.test(b64) || b64.length % 4 !== 0) return 'malformed';
  try {
    return { name, kind: 'text', value: new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(Buffer.from(b64, 'base64')) };
  } catch {
    return { name, kind: 'opaque' };
  }
}

/** An attribute description (RFC 4512): a name or an OID, then options. */
export const ATTRIBUTE_DESCRIPTION = /^([A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)*)(;[A-Za-z0-9-]+)*$/;

/** SAFE-STRING of RFC 2849: printable ASCII that does not start with space, ':' or '<'. */
const SAFE_STRING = /^[\x01-\x09\x0B\x0C\x0E-\x1F\x21-\x39\x3B\x3D-\x7F][\x01-\x09\x0B\x0C\x0E-\x7F]*$/;

/** `name: value`, or `name:: base64` when the value is not a SAFE-STRING (non-ASCII, leading
 *  space or colon, trailing space), folded at 76 columns. */
export function encodeAttr(name: string, value: string): string[] {
  let line: string;
  if (value === '') line = `${name}:`;
  else if (SAFE_STRING.test(value) && !value.endsWith(' ')) line = `${name}: ${value}`;
  else line = `${name}:: ${Buffer.from(value, 'utf8').toString('base64')}`;
  return fold(line, 76);
}

function fold(line: string, width: number): string[] {
  if (line.length <= width) return [line];
  const out = [line.slice(0, width)];
  for (let at = width; at < line.length; at += width - 1) out.push(' ' + line.slice(at, at + width - 1));
  return out;
}
