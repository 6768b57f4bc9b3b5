import { Type, type Static, type TObject } from '@sinclair/typebox';

/**
 * The `connection:` settings of each connector kind, as data: config/schema.ts composes them so
 * that one schema validates every kind and the generated JSON Schema completes them in editors.
 * A kind's runtime lives in its own folder and registers in connectors/registry.ts.
 */
const path = Type.String({ minLength: 1, description: 'A file path; relative paths are relative to the YAML file.' });
const encoding = Type.Union([Type.Literal('utf8'), Type.Literal('latin1'), Type.Literal('utf16le')], {
  default: 'utf8', description: 'How the file is encoded.',
});
const anchor = (dflt: string) => Type.String({
  minLength: 1, default: dflt, description: 'The attribute that identifies a record (its anchor); unique in the file.',
});

export const DelimitedConnection = Type.Object({
  path,
  encoding,
  delimiter: Type.String({ minLength: 1, maxLength: 1, default: ',', description: 'Field separator.' }),
  quote: Type.String({ minLength: 1, maxLength: 1, default: '"', description: 'Quote character.' }),
  anchor: anchor('id'),
}, { additionalProperties: false, description: 'A delimited text file (CSV) with a header line naming the attributes.' });
export const FixedWidthConnection = Type.Object({
  path,
  encoding,
  fields: Type.Array(Type.Object({
    name: Type.String({ minLength: 1 }),
    width: Type.Integer({ minimum: 1, maximum: 4096 }),
  }, { additionalProperties: false }), { minItems: 1, description: 'Columns in order, each with its width in characters.' }),
  anchor: anchor('id'),
}, { additionalProperties: false, description: 'A fixed-width text file, one record per line.' });
export const AvpConnection = Type.Object({
  path,
  encoding,
  separator: Type.String({ minLength: 1, maxLength: 4, default: ':', description: 'Between attribute and value.' }),
  anchor: anchor('id'),
}, { additionalProperties: false, description: 'An attribute-value pair text file: `attribute: value` lines, records separated by a blank line.' });
export const LdifConnection = Type.Object({
  path,
  anchor: anchor('dn'),
}, { additionalProperties: false, description: 'An LDIF content file (RFC 2849); the anchor is the DN unless set.' });
export const DsmlConnection = Type.Object({
  path,
  anchor: anchor('dn'),
}, { additionalProperties: false, description: 'A DSML v2 file (batchResponse/searchResponse entries); the anchor is the DN unless set.' });

export type DelimitedSettings = Static<typeof DelimitedConnection>;
export type FixedWidthSettings = Static<typeof FixedWidthConnection>;
export type AvpSettings = Static<typeof AvpConnection>;
export type LdifSettings = Static<typeof LdifConnection>;
export type DsmlSettings = Static<typeof DsmlConnection>;

export const CONNECTION_SCHEMAS: Readonly<Record<string, TObject>> = {
  delimited: DelimitedConnection,
  'fixed-width': FixedWidthConnection,
  avp: AvpConnection,
  ldif: LdifConnection,
  dsml: DsmlConnection,
};

export const CONNECTOR_KINDS = Object.keys(CONNECTION_SCHEMAS);
