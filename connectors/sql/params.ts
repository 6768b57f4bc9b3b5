import { scanParams, type SqlLexis } from '../../core/sql-params.ts';
import type { SqlValue } from './contract.ts';

/**
 * Named `:params` → each driver's placeholders. Statements in the YAML are written once with
 * `:name` (core/sql-params.ts scans them); the dialect picks how its driver binds them. Values are
 * never put into the text: they go to the driver as bound parameters.
 */

/** PostgreSQL `$1`, MariaDB/DB2 `?`, SQL Server `@name`, Oracle `:name`. */
export type PlaceholderStyle = 'dollar' | 'question' | 'at' | 'colon';

export interface BoundStatement {
  readonly text: string;
  /** For `dollar` and `question`: the values in placeholder order. */
  readonly positional: SqlValue[];
  /** For `at` and `colon`: the values by name (only the names the statement uses). */
  readonly named: Record<string, SqlValue>;
}

/**
 * Rewrites `:name` parameters to `style` and collects their values. A name without a value is an
 * error (a typo in the YAML would otherwise bind NULL and update nothing, or everything).
 */
export function bindNamed(sql: string, params: Readonly<Record<string, SqlValue>>, style: PlaceholderStyle, lexis: SqlLexis = {}): BoundStatement {
  const { pieces, names } = scanParams(sql, lexis);
  const missing = [...new Set(names.filter((name) => !Object.hasOwn(params, name) || params[name] === undefined))];
  if (missing.length > 0) {
    throw new Error(`the statement uses ${missing.map((m) => `:${m}`).join(', ')} but no value was given for ${missing.length > 1 ? 'them' : 'it'}`);
  }
  const positional: SqlValue[] = [];
  const named: Record<string, SqlValue> = {};
  const dollarIndex = new Map<string, number>();
  let text = pieces[0]!;
  names.forEach((name, k) => {
    const value = params[name]!;
    let placeholder: string;
    switch (style) {
      case 'dollar': {
        let idx = dollarIndex.get(name);
        if (idx === undefined) { positional.push(value); idx = positional.length; dollarIndex.set(name, idx); }
        placeholder = `$${idx}`;
        break;
      }
      case 'question':
        positional.push(value);
        placeholder = '?';
        break;
      case 'at':
        named[name] = value;
        placeholder = `@${name}`;
        break;
      case 'colon':
        named[name] = value;
        placeholder = `:${name}`;
        break;
    }
    text += placeholder + pieces[k + 1]!;
  });
  return { text, positional, named };
}
