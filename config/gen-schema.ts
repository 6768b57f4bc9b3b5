import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { TSchema } from '@sinclair/typebox';
import { CONNECTION_SCHEMAS, HubSchema, NotifierSchema, WorkerSchema } from './schema.ts';

/**
 * Writes config/schema/{hub,notifier}.schema.json (JSON Schema draft-07) from config/schema.ts so
 * that editors validate and complete the YAML (`# yaml-language-server: $schema=…`). A connector's
 * `connection:` is completed by its `kind` through if/then. Run with `npm run gen:schema`; a test
 * checks that the committed files equal `renderSchemas()`.
 */

const SCHEMA_DIR = fileURLToPath(new URL('./schema/', import.meta.url));

/** File name in config/schema/ → its JSON text. */
export function renderSchemas(): Record<string, string> {
  return {
    'hub.schema.json': render(HubSchema, 'pwsync hub configuration', 'A pwsync hub: the domains it serves and the connectors it sets passwords in.', composeConnections),
    'worker.schema.json': render(WorkerSchema, 'pwsync connector worker configuration', 'A pwsync connector worker: one connector run next to its target, reached by hubs through NATS only.', composeConnections),
    'notifier.schema.json': render(NotifierSchema, 'pwsync notifier configuration', 'A pwsync notifier on a domain controller: where it hears password changes and the hubs it delivers them to.'),
  };
}

type Json = Record<string, unknown>;

function render(schema: TSchema, title: string, description: string, extend?: (s: Json) => void): string {
  // JSON round trip drops TypeBox's symbol keys (Kind, Transform codecs), leaving plain JSON Schema.
  const plain = JSON.parse(JSON.stringify(schema)) as Json;
  extend?.(plain);
  const doc = { $schema: 'http://json-schema.org/draft-07/schema#', title, description, ...optionalDefaults(enumsFromLiterals(plain)) as Json };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/** Each connector's `connection:` is checked and completed against the schema of its `kind`. */
function composeConnections(hub: Json): void {
  const connector = ((hub['properties'] as Json)['connectors'] as Json)['items'] as Json;
  connector['allOf'] = Object.entries(CONNECTION_SCHEMAS).map(([kind, schema]) => ({
    if: { properties: { kind: { const: kind } }, required: ['kind'] },
    then: { properties: { connection: JSON.parse(JSON.stringify(schema)) as Json } },
  }));
}

/** `anyOf` of string constants → `enum`: editors offer the values as completions and name them in errors. */
function enumsFromLiterals(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(enumsFromLiterals);
  if (typeof node !== 'object' || node === null) return node;
  const obj = node as Json;
  const anyOf = obj['anyOf'];
  if (Array.isArray(anyOf) && anyOf.length > 0 && anyOf.every((v: Json) => typeof v['const'] === 'string' && Object.keys(v).every((k) => k === 'const' || k === 'type'))) {
    const { anyOf: _variants, ...rest } = obj;
    return { type: 'string', enum: anyOf.map((v: Json) => v['const']), ...mapValues(rest) };
  }
  return mapValues(obj);
}

/** A setting with a default may be left out of the YAML (the loader fills it in), so it is not `required` there. */
function optionalDefaults(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(optionalDefaults);
  if (typeof node !== 'object' || node === null) return node;
  const obj = Object.fromEntries(Object.entries(node).map(([k, v]) => [k, optionalDefaults(v)])) as Json;
  const properties = obj['properties'] as Record<string, Json> | undefined;
  const required = obj['required'];
  if (properties && Array.isArray(required)) {
    const stillRequired = required.filter((k: string) => properties[k] === undefined || !('default' in properties[k]));
    if (stillRequired.length > 0) obj['required'] = stillRequired;
    else delete obj['required'];
  }
  return obj;
}

function mapValues(obj: Json): Json {
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, enumsFromLiterals(v)]));
}

export function writeSchemas(dir: string = SCHEMA_DIR): string[] {
  mkdirSync(dir, { recursive: true });
  return Object.entries(renderSchemas()).map(([name, text]) => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  for (const file of writeSchemas()) process.stdout.write(`wrote ${path.relative(process.cwd(), file)}\n`);
}
