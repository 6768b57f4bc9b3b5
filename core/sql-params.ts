/**
 * The `:name` parameters of a SQL statement as the YAML writes them. The scanner skips quoted
 * strings, quoted identifiers, comments, PostgreSQL dollar quotes and `::` casts, so a `:word`
 * there is left alone. Shared by the SQL connector (which binds them, connectors/sql/params.ts) and
 * the built-in table extension (which checks its statement's names at start).
 */

const NAME_START = /[A-Za-z_]/;
const NAME_PART = /[A-Za-z0-9_]/;

export interface Scanned {
  /** Text pieces between parameters: pieces.length === names.length + 1. */
  readonly pieces: string[];
  readonly names: string[];
}

/** Lexical rules that differ by server: MariaDB/MySQL read `\'` inside quotes and `#` comments. */
export interface SqlLexis {
  readonly backslashEscapes?: boolean;
  readonly hashComments?: boolean;
}

/** Splits a statement at its `:name` parameters, leaving quoted text, comments and casts alone. */
export function scanParams(sql: string, lexis: SqlLexis = {}): Scanned {
  const pieces: string[] = [];
  const names: string[] = [];
  let start = 0;
  let i = 0;
  const n = sql.length;
  const skipQuoted = (close: string, doubled: boolean): void => {
    // i is at the opening quote; on return i is just past the closing one (or at the end).
    i++;
    while (i < n) {
      if (lexis.backslashEscapes && sql[i] === '\\' && close !== '`') { i += 2; continue; }
      if (sql[i] === close) {
        if (doubled && sql[i + 1] === close) { i += 2; continue; }
        i++;
        return;
      }
      i++;
    }
  };
  while (i < n) {
    const c = sql[i]!;
    if (c === '\'') {
      // E'…' strings treat backslash as an escape; '' is a quote in every dialect.
      const escaped = i > 0 && /[eE]/.test(sql[i - 1]!) && (i < 2 || !NAME_PART.test(sql[i - 2]!));
      if (escaped) {
        i++;
        while (i < n) {
          if (sql[i] === '\\') { i += 2; continue; }
          if (sql[i] === '\'') {
            if (sql[i + 1] === '\'') { i += 2; continue; }
            i++;
            break;
          }
          i++;
        }
      } else {
        skipQuoted('\'', true);
      }
    } else if (c === '"') {
      skipQuoted('"', true);
    } else if (c === '`') {
      skipQuoted('`', true);
    } else if ((c === '-' && sql[i + 1] === '-') || (c === '#' && lexis.hashComments)) {
      while (i < n && sql[i] !== '\n') i++;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
    } else if (c === '$' && /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.test(sql.slice(i)) && (i === 0 || !NAME_PART.test(sql[i - 1]!))) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i))![0];
      const end = sql.indexOf(tag, i + tag.length);
      i = end < 0 ? n : end + tag.length;
    } else if (c === ':' && sql[i + 1] === ':') {
      i += 2;
    } else if (c === ':' && i + 1 < n && NAME_START.test(sql[i + 1]!) && (i === 0 || sql[i - 1] !== ':')) {
      let j = i + 2;
      while (j < n && NAME_PART.test(sql[j]!)) j++;
      pieces.push(sql.slice(start, i));
      names.push(sql.slice(i + 1, j));
      i = j;
      start = j;
    } else {
      i++;
    }
  }
  pieces.push(sql.slice(start));
  return { pieces, names };
}

/** The parameter names a statement uses, each once, in order of first use. */
export function paramNames(sql: string, lexis: SqlLexis = {}): string[] {
  return [...new Set(scanParams(sql, lexis).names)];
}
