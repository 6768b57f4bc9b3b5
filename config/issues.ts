import { UsageError } from '../core/errors.ts';
import { printable } from '../core/text.ts';

/** A place in the configuration: keys of mappings and indexes of lists, from the top. */
export type ConfigPath = ReadonlyArray<string | number>;

/** One problem in a configuration file: where (file, 1-based line and column, setting), what, and the fix. */
export interface ConfigIssue {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  /** The setting, written as in the YAML: `connectors[1].retry.count`; `(top level)` for the file itself. */
  readonly path: string;
  readonly message: string;
  readonly fix: string;
}

/** `connectors[1].retry.count`. */
export function pathText(path: ConfigPath): string {
  if (path.length === 0) return '(top level)';
  let s = '';
  for (const seg of path) s += typeof seg === 'number' ? `[${seg}]` : (s === '' ? seg : `.${seg}`);
  return s;
}

/**
 * `FILE:LINE:COL: PATH: what is wrong — how to fix it`, the form editors and terminals link; one
 * line, whatever the file held (its control characters are written as escapes).
 */
export function formatIssue(i: ConfigIssue): string {
  return printable(`${i.file}:${i.line}:${i.column}: ${i.path}: ${i.message} — ${i.fix}`);
}

/** Everything wrong with a configuration file, found in one pass and reported together. */
export class ConfigError extends UsageError {
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[]) {
    const sorted = [...issues].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column);
    super(sorted.map(formatIssue).join('\n'));
    this.name = 'ConfigError';
    this.issues = Object.freeze(sorted);
  }
}
