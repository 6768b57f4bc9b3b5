import { TransformKind, type TSchema } from '@sinclair/typebox';
import { Value, ValueErrorType, type ValueError } from '@sinclair/typebox/value';
import { pathText, type ConfigIssue, type ConfigPath } from './issues.ts';
import type { YamlSource } from './source.ts';
import { closest, listOf } from './suggest.ts';

/**
 * Schema validation in admin language: every error TypeBox finds becomes an issue that points at
 * the YAML node, says what is wrong in words (expected types, allowed values, ranges, duration
 * format) and how to fix it. Values that may be secrets are never repeated back.
 */
export function schemaIssues(src: YamlSource, schema: TSchema, value: unknown, prefix: ConfigPath = []): ConfigIssue[] {
  const errors = [...Value.Errors(schema, value)].map((e) => ({ e, path: [...prefix, ...pointerSegments(e.path)] }));
  // A missing setting also fails its own type check; report it once, as missing.
  const missing = errors.filter(({ e }) => e.type === ValueErrorType.ObjectRequiredProperty).map(({ path }) => pathText(path));
  const seen = new Set<string>();
  const issues: ConfigIssue[] = [];
  for (const { e, path } of errors) {
    if (issues.length === MAX_SCHEMA_ISSUES) {
      // Past this many, the file is most likely not a pwsync configuration; finding each place costs time.
      issues.push(src.issue(src.valueAt(prefix), prefix, `more than ${MAX_SCHEMA_ISSUES} settings are wrong; the first ${MAX_SCHEMA_ISSUES} are listed`, 'check that this is a pwsync configuration file, fix the settings listed and check again'));
      break;
    }
    const text = pathText(path);
    if (e.type !== ValueErrorType.ObjectRequiredProperty && missing.some((m) => text === m || text.startsWith(`${m}.`) || text.startsWith(`${m}[`))) continue;
    const { message, fix, at } = explain(e, path, src);
    const key = `${text}\u0000${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const position = at === 'missing' ? src.missingAt(path) : at === 'key' ? src.keyAt(path) : src.valueAt(path);
    issues.push(src.issue(position, path, message, fix));
  }
  return issues;
}

const MAX_SCHEMA_ISSUES = 100;

interface Explained {
  readonly message: string;
  readonly fix: string;
  readonly at: 'value' | 'key' | 'missing';
}

/** Fixes for the string patterns of config/schema.ts, keyed by pattern. */
export const PATTERN_FIXES: Readonly<Record<string, string>> = {
  '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$': 'use letters, digits, `_`, `.` and `-`, starting with a letter or digit, at most 63 characters',
  '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$': 'write host:port, such as `hub1.corp.example.com:7443` or `[::1]:7443`',
  '^[A-Za-z_][A-Za-z0-9_]*$': 'use letters, digits and `_`, not starting with a digit',
  '^0?[0-7]{3}$': 'write an octal file mode in quotes, such as `\'0600\'`',
  '^[A-Za-z0-9_-]+@[A-Za-z0-9.-]+$': 'write the service as SERVICE@host, such as `PWSYNC@hub.corp.example.com` for the SPN PWSYNC/hub.corp.example.com (not PWSYNC/host@REALM)',
  '^ldaps?://': 'write an LDAP URL such as `ldaps://dc1.corp.example.com:636` (or ldap:// with startTls: true)',
  '^[A-Z0-9.-]+$': 'write the realm in upper case, such as `CORP.EXAMPLE.COM`',
  '^(nats|tls)://(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$': 'write a NATS server URL such as `tls://nats1.corp.example.com:4222` (nats:// only on loopback)',
  '^[A-Za-z0-9_-]{1,32}$': 'use 1 to 32 letters, digits, `_` and `-`',
  '^\\\\\\\\[.]\\\\pipe\\\\[^\\\\]+$': 'write a local named pipe in single quotes, such as `\'\\\\.\\pipe\\pwsync-hook\'`',
};

const VALUE_LABELS: Readonly<Record<string, string>> = {
  kind: 'connector kind', source: 'source attribute', level: 'log level', encoding: 'encoding',
};

const DURATION_FORMAT = 'a number followed by a unit without a space: ms, s, m, h or d (such as 500ms, 60s, 5m, 72h)';

function explain(e: ValueError, path: ConfigPath, src: YamlSource): Explained {
  const s = e.schema as SchemaInfo;
  const key = lastName(path);
  const written = src.sourceText(path);
  const secretish = isSecretRef(s) || SECRETISH_KEY.test(String(path.at(-1) ?? ''));
  const actual = describeValue(e.value, written, secretish);
  const about = s.description ? ` (${s.description})` : '';
  const needed = (s.required ?? []).filter((k) => !hasDefault(s.properties?.[k]));

  switch (e.type) {
    case ValueErrorType.ObjectRequiredProperty: {
      const parent = path.slice(0, -1);
      const where = parent.length === 0 ? 'at the top level of the file'
        : typeof parent.at(-1) === 'number' ? `to this item of \`${lastName(parent.slice(0, -1))}\``
          : `under \`${lastName(parent)}:\``;
      const inner = needed.length > 0 ? ` with ${listOf(needed, 'and')}` : '';
      return { at: 'missing', message: `missing required setting \`${key}\``, fix: `add \`${key}:\` ${where}${inner}${about}` };
    }
    case ValueErrorType.ObjectAdditionalProperties: {
      const known = Object.keys(s.properties ?? {});
      const guess = closest(key, known);
      return {
        at: 'key',
        message: `unknown setting \`${key}\``,
        fix: guess ? `did you mean \`${guess}\`?` : `remove it; the settings allowed here are ${listOf(known)}`,
      };
    }
    case ValueErrorType.Object:
      if (e.value === null || e.value === undefined) {
        return { at: 'value', message: `\`${key}\` is empty`, fix: `add its settings, indented under \`${key}:\`${needed.length > 0 ? ` (${listOf(needed, 'and')} ${needed.length === 1 ? 'is' : 'are'} required)` : ''}` };
      }
      return { at: 'value', message: `expected a mapping of settings, found ${actual}`, fix: `write the settings of \`${key}\` on their own lines, indented under \`${key}:\`` };
    case ValueErrorType.Array:
      if (e.value === null || e.value === undefined) {
        return { at: 'value', message: `\`${key}\` is empty`, fix: `add its items below \`${key}:\`, one per line, each starting with \`- \`` };
      }
      return { at: 'value', message: `expected a list, found ${actual}`, fix: `write each item of \`${key}\` on its own line, starting with \`- \`` };
    case ValueErrorType.ArrayMinItems:
      return { at: 'value', message: `\`${key}\` needs at least ${s.minItems} item${s.minItems === 1 ? '' : 's'}`, fix: `add ${s.minItems === 1 ? 'an item' : 'items'}, each on its own line starting with \`- \`${about}` };
    case ValueErrorType.ArrayMaxItems:
      return { at: 'value', message: `\`${key}\` has more than ${s.maxItems} items`, fix: `keep at most ${s.maxItems}` };
    case ValueErrorType.Integer:
    case ValueErrorType.Number: {
      const expected = e.type === ValueErrorType.Integer ? 'a whole number' : 'a number';
      const fix = typeof e.value === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(e.value)
        ? 'remove the quotes around the number'
        : `write ${expected}${range(s)}, without quotes`;
      return { at: 'value', message: `expected ${expected}${range(s)}, found ${actual}`, fix };
    }
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.IntegerExclusiveMinimum:
    case ValueErrorType.IntegerExclusiveMaximum:
    case ValueErrorType.NumberMinimum:
    case ValueErrorType.NumberMaximum:
    case ValueErrorType.NumberExclusiveMinimum:
    case ValueErrorType.NumberExclusiveMaximum:
      return { at: 'value', message: `${written ?? String(e.value)} is out of range for \`${key}\``, fix: `use a whole number${range(s)}` };
    case ValueErrorType.Boolean:
      return { at: 'value', message: `expected true or false, found ${actual}`, fix: 'write `true` or `false`, without quotes' };
    case ValueErrorType.String:
      return explainNotText(e, s, key, actual, written, secretish);
    case ValueErrorType.StringPattern:
      if (isDuration(s)) return { at: 'value', message: `${shown(e.value, secretish)} is not a duration`, fix: `write ${DURATION_FORMAT}` };
      return {
        at: 'value',
        message: `${shown(e.value, secretish)} is not a valid \`${key}\``,
        fix: PATTERN_FIXES[s.pattern ?? ''] ?? (s.description ? `write ${lowerFirst(s.description)}` : `write a value matching ${s.pattern}`),
      };
    case ValueErrorType.StringMinLength:
      return { at: 'value', message: `\`${key}\` is empty`, fix: `write a value${about}` };
    case ValueErrorType.StringMaxLength:
      return {
        at: 'value',
        message: `${shown(e.value, secretish)} is too long for \`${key}\``,
        fix: s.maxLength === 1 ? 'use a single character' : `use at most ${s.maxLength} characters`,
      };
    case ValueErrorType.Union:
    case ValueErrorType.Literal:
      return explainChoice(e, s, key, actual, secretish);
    default:
      return { at: 'value', message: lowerFirst(e.message), fix: s.description ? `expected: ${lowerFirst(s.description)}` : 'see config/schema/*.schema.json for what is allowed here' };
  }
}

function explainNotText(e: ValueError, s: SchemaInfo, key: string, actual: string, written: string | undefined, secretish: boolean): Explained {
  if (isDuration(s)) {
    const fix = typeof e.value === 'number' ? `write it with its unit, such as \`${e.value}s\` or \`${e.value}ms\`` : `write ${DURATION_FORMAT}`;
    return { at: 'value', message: `expected a duration, found ${actual}`, fix };
  }
  if (typeof e.value === 'number' || typeof e.value === 'boolean') {
    const example = secretish || written === undefined ? '' : `: \`${key}: '${written}'\``;
    return { at: 'value', message: `expected text, found ${actual}`, fix: `put the value in quotes${example}` };
  }
  const about = s.description ? `: ${lowerFirst(s.description)}` : '';
  return { at: 'value', message: `expected text, found ${actual}`, fix: `write a single value${about}` };
}

function explainChoice(e: ValueError, s: SchemaInfo, key: string, actual: string, secretish: boolean): Explained {
  if (isSecretRef(s)) {
    return {
      at: 'value',
      message: 'a secret may not be written inline in the YAML',
      fix: 'use {fromFile: PATH} (a file of mode 0600) or {fromEnv: NAME}',
    };
  }
  const allowed = choices(s);
  if (allowed.length > 0) {
    const label = VALUE_LABELS[key] ?? `value for \`${key}\``;
    const plural = VALUE_LABELS[key] ? `${label}s` : 'allowed values';
    if (typeof e.value === 'string' && !secretish) {
      const guess = closest(e.value, allowed);
      return {
        at: 'value',
        message: `unknown ${label} \`${e.value}\``,
        fix: guess ? `did you mean \`${guess}\`? The ${plural} are ${listOf(allowed)}` : `use one of the ${plural}: ${listOf(allowed)}`,
      };
    }
    return { at: 'value', message: `expected one of ${listOf(allowed)}, found ${actual}`, fix: `use one of the ${plural}: ${listOf(allowed)}` };
  }
  return { at: 'value', message: `\`${key}\` does not have an allowed form, found ${actual}`, fix: s.description ? lowerFirst(s.description) : 'see config/schema/*.schema.json' };
}

interface SchemaInfo {
  readonly description?: string;
  readonly pattern?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly maxLength?: number;
  readonly required?: readonly string[];
  readonly properties?: Readonly<Record<string, unknown>>;
  readonly anyOf?: ReadonlyArray<{ readonly const?: unknown; readonly properties?: Readonly<Record<string, unknown>> }>;
  readonly const?: unknown;
}

const SECRETISH_KEY = /pass(word)?|secret|token|credential/i;

function hasDefault(s: unknown): boolean {
  return typeof s === 'object' && s !== null && 'default' in s;
}

function isDuration(s: SchemaInfo): boolean {
  return TransformKind in s;
}

function isSecretRef(s: SchemaInfo): boolean {
  return s.anyOf !== undefined && s.anyOf.some((v) => v.properties !== undefined && 'fromFile' in v.properties);
}

function choices(s: SchemaInfo): string[] {
  if (s.const !== undefined) return [String(s.const)];
  if (s.anyOf && s.anyOf.every((v) => v.const !== undefined)) return s.anyOf.map((v) => String(v.const));
  return [];
}

function range(s: SchemaInfo): string {
  if (s.minimum !== undefined && s.maximum !== undefined) return ` from ${s.minimum} to ${s.maximum}`;
  if (s.minimum !== undefined) return ` of at least ${s.minimum}`;
  if (s.maximum !== undefined) return ` of at most ${s.maximum}`;
  return '';
}

/** How a found value reads in a message: `the text "ten"`, `the number 10`, `a list`. */
function describeValue(v: unknown, written: string | undefined, secretish: boolean): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (secretish) return `a ${typeof v === 'string' ? 'text' : typeof v} value`;
  if (typeof v === 'string') return `the text ${shown(v, false)}`;
  if (typeof v === 'number') return `the number ${written ?? String(v)}`;
  return String(v);
}

function shown(v: unknown, secretish: boolean): string {
  if (secretish) return 'the value';
  const s = String(v);
  return `\`${s.length > 60 ? `${s.slice(0, 57)}...` : s}\``;
}

function lastName(path: ConfigPath): string {
  const last = path.at(-1);
  if (last === undefined) return '(top level)';
  if (typeof last === 'string') return last;
  return `${lastName(path.slice(0, -1))}[${last}]`;
}

function lowerFirst(s: string): string {
  return s.length > 0 ? s[0]!.toLowerCase() + s.slice(1) : s;
}

/** `/connectors/0/retry` → ['connectors', 0, 'retry'] (RFC 6901 escapes undone). */
function pointerSegments(pointer: string): Array<string | number> {
  if (pointer === '') return [];
  return pointer.slice(1).split('/').map((raw) => {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    return /^(0|[1-9]\d*)$/.test(seg) ? Number(seg) : seg;
  });
}
