import assert from 'node:assert/strict';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { TransformKind } from '@sinclair/typebox';
import { PATTERN_FIXES } from '../../config/explain.ts';
import { renderSchemas } from '../../config/gen-schema.ts';
import { CONNECTION_SCHEMAS, HubSchema, NotifierSchema } from '../../config/schema.ts';
import { SecretRef } from '../../core/secret-ref.ts';
import { CONNECTOR_KINDS } from '../../connectors/kinds-schema.ts';

const SCHEMA_DIR = fileURLToPath(new URL('../../config/schema/', import.meta.url));

test('the committed JSON schemas are up to date (run `npm run gen:schema` if not)', () => {
  const rendered = renderSchemas();
  assert.deepEqual(fs.readdirSync(SCHEMA_DIR).sort(), Object.keys(rendered).sort());
  for (const [name, text] of Object.entries(rendered)) {
    assert.equal(fs.readFileSync(`${SCHEMA_DIR}${name}`, 'utf8'), text, `config/schema/${name} is stale: run npm run gen:schema`);
  }
});

test('the hub schema completes `connection:` by connector kind', () => {
  const hub = JSON.parse(renderSchemas()['hub.schema.json']!);
  assert.equal(hub.$schema, 'http://json-schema.org/draft-07/schema#');
  const connector = hub.properties.connectors.items;
  assert.deepEqual(connector.properties.kind.enum, CONNECTOR_KINDS);
  const byKind = new Map<string, { required: string[]; properties: Record<string, unknown> }>(
    connector.allOf.map((c: { if: { properties: { kind: { const: string } } }; then: { properties: { connection: { required: string[]; properties: Record<string, unknown> } } } }) => [c.if.properties.kind.const, c.then.properties.connection]),
  );
  assert.deepEqual([...byKind.keys()], CONNECTOR_KINDS);
  assert.ok('fields' in byKind.get('fixed-width')!.properties);
  assert.deepEqual(byKind.get('delimited')!.required, ['path'], 'settings with defaults are optional in the editor');
  assert.deepEqual(hub.properties.hub.required, ['id', 'tls', 'keys', 'dataDir']);
});

test('every text pattern in the schema has an admin-language fix', () => {
  const patterns = new Set<string>();
  const walk = (s: unknown): void => {
    if (typeof s !== 'object' || s === null) return;
    const node = s as Record<string | symbol, unknown>;
    if (typeof node['pattern'] === 'string' && !(TransformKind in node)) patterns.add(node['pattern']);
    for (const v of Object.values(node)) walk(v);
  };
  for (const schema of [HubSchema, NotifierSchema, SecretRef, ...Object.values(CONNECTION_SCHEMAS)]) walk(schema);
  assert.ok(patterns.size >= 3);
  for (const p of patterns) assert.ok(p in PATTERN_FIXES, `no fix for pattern ${p} in config/explain.ts PATTERN_FIXES`);
});
