/**
 * Text from a file or a command line, made safe to print on a terminal: control characters (C0,
 * DEL, C1 — and with them every ESC sequence, which starts with one), line and paragraph
 * separators and bidirectional overrides are written as escapes (`\x1B`, `\n`, `\u202E`), so what a
 * file holds can neither move the cursor, recolour the screen, retitle the window nor reorder
 * what the admin reads. A backslash is left alone, so printing twice changes nothing more.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, escape);
}

/** printable() for text of several lines: each line escaped, the line breaks kept. */
export function printableLines(text: string): string {
  return text.split('\n').map(printable).join('\n');
}

const UNPRINTABLE = /[\x00-\x1F\x7F-\x9F\u2028\u2029\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escape(c: string): string {
  const code = c.charCodeAt(0);
  return NAMED[c] ?? (code <= 0xff ? `\\x${hex(code, 2)}` : `\\u${hex(code, 4)}`);
}

function hex(n: number, width: number): string {
  return n.toString(16).toUpperCase().padStart(width, '0');
}
