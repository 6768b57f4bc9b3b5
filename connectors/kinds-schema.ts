import { Type, type Static, type TObject } from '@sinclair/typebox';
import { SecretRef } from '../core/secret-ref.ts';

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

export const LdapConnection = Type.Object({
  url: Type.String({ pattern: '^ldaps?://', description: 'ldaps://host:636, or ldap://host:389 with startTls: true. A plain ldap:// URL is refused (event 6951) before anything is sent.' }),
  startTls: Type.Boolean({ default: false, description: 'Upgrade an ldap:// connection with StartTLS before binding.' }),
  ca: Type.String({ minLength: 1, description: 'The CA that signed the directory\'s certificate (PEM); always verified. Relative paths are relative to the YAML file.' }),
  serverName: Type.Optional(Type.String({ minLength: 1, description: 'The name to verify in the directory\'s certificate when it differs from the URL host.' })),
  bindDn: Type.String({ minLength: 1, description: 'The service account: `write` on userPassword only. Never the rootDN or a `manage` holder: those bypass the password policy.' }),
  password: SecretRef,
  baseDn: Type.String({ minLength: 1, description: 'Where the people are: joins search the subtree below it.' }),
  filter: Type.String({ minLength: 3, default: '(objectClass=inetOrgPerson)', description: 'Which entries under baseDn are objects of this connector.' }),
  attributes: Type.Array(Type.String({ minLength: 1 }), { default: ['uid', 'mail', 'cn'], description: 'Attributes read for joins; `dn` is always there.' }),
  anchor: Type.String({ minLength: 1, default: 'entryUUID', description: 'The attribute that identifies an entry for good, across renames: entryUUID (OpenLDAP), nsUniqueId (389), GUID (eDirectory), or dn for a directory without one (a renamed entry is then joined again by the rules).' }),
  pageSize: Type.Integer({ minimum: 1, maximum: 10000, default: 500, description: 'Entries per page of a search.' }),
  poolSize: Type.Integer({ minimum: 1, maximum: 16, default: 2, description: 'Bound connections kept open; set-operations share them.' }),
  timeout: Type.String({ minLength: 2, default: '10s', description: 'Longest one step (connect + TLS + bind, one search, one modify) may take. A duration such as 500ms, 60s, 5m, 72h.' }),
  verifyBind: Type.Boolean({ default: true, description: 'When a set is refused as "in history" or "not changed from existing value", bind as the user with the new password: if it works the password is already in place (a retry after a lost answer) and the set succeeds.' }),
  setWith: Type.Union([Type.Literal('auto'), Type.Literal('passwordModify'), Type.Literal('userPassword')], { default: 'auto', description: 'auto: the Password Modify extended operation when the server offers it, else a userPassword replace; passwordModify: only the extended operation (refused with 6950 when not offered); userPassword: always a replace (the server must hash it: OpenLDAP ppolicy_hash_cleartext, 389 does by default).' }),
}, { additionalProperties: false, description: 'An LDAP directory (OpenLDAP, 389, eDirectory…): passwords set with the Password Modify extended operation when offered, else a userPassword replace.' });

/** LdapConnection with Active Directory's defaults: the same settings, so an `ad` connector is an LDAP connector that writes unicodePwd. */
const { setWith: _ldapOnly, ...ldapCommon } = LdapConnection.properties;
export const AdConnection = Type.Object({
  ...ldapCommon,
  url: Type.String({ pattern: '^ldaps?://', description: 'ldaps://dc1.example.com:636, or ldap://dc1.example.com:389 with startTls: true. A plain ldap:// URL is refused (event 6951) before anything is sent; AD takes unicodePwd only over an encrypted connection anyway.' }),
  serverName: Type.Optional(Type.String({ minLength: 1, description: 'The name to verify in the DC\'s certificate when it differs from the URL host (Samba\'s own certificate: the DC\'s FQDN, DC1.example.com).' })),
  bindDn: Type.String({ minLength: 1, description: 'The service account (a DN or user@domain): "Reset Password" on the OUs that hold the users, nothing more. Not a Domain Admin.' }),
  baseDn: Type.String({ minLength: 1, description: 'Where the people are (an OU, or the domain: DC=example,DC=com): joins search the subtree below it.' }),
  filter: Type.String({ minLength: 3, default: '(&(objectCategory=person)(objectClass=user))', description: 'Which entries under baseDn are objects of this connector.' }),
  attributes: Type.Array(Type.String({ minLength: 1 }), { default: ['sAMAccountName', 'userPrincipalName', 'mail', 'objectGUID'], description: 'Attributes read for joins; `dn` is always there; objectGUID is read as bytes and shown in its usual text form.' }),
  anchor: Type.String({ minLength: 1, default: 'objectGUID', description: 'The attribute that identifies an entry for good, across renames and moves: objectGUID, or dn (a moved entry is then joined again by the rules).' }),
  verifyBind: Type.Boolean({ default: true, description: 'When a change is refused because the old password no longer matches, or a set as already used, bind as the user with the new password: if it works the password is already in place (a retry after a lost answer) and the operation succeeds.' }),
}, { additionalProperties: false, description: 'Active Directory, AD LDS or a Samba AD DC: passwords written as unicodePwd (replace for a set, delete old + add new for a change) over LDAPS or StartTLS.' });

/**
 * What every SQL dialect's connector takes (postgresql, mariadb, mssql, oracle, db2): defined once,
 * each kind maps to it in CONNECTION_SCHEMAS.
 */
export const SqlConnection = Type.Object({
  host: Type.String({ minLength: 1, description: 'The database server\'s host name or address.' }),
  port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'The server\'s port; default: the dialect\'s usual one (PostgreSQL 5432, MariaDB 3306…).' })),
  database: Type.String({ minLength: 1, description: 'The database to connect to.' }),
  user: Type.String({ minLength: 1, description: 'The service account: the least privilege the README names for the dialect (PostgreSQL login mode: CREATEROLE, not superuser; table mode: UPDATE on the table).' }),
  password: SecretRef,
  tls: Type.Object({
    ca: Type.Optional(Type.String({ minLength: 1, description: 'The CA that signed the server\'s certificate (PEM); default: the system\'s CAs. Relative paths are relative to the YAML file.' })),
    serverName: Type.Optional(Type.String({ minLength: 1, description: 'The name to verify in the server\'s certificate when it differs from host.' })),
  }, { additionalProperties: false, default: {}, description: 'The connection is always encrypted and the certificate verified (name and CA), unless the connector sets requireSecureConnection: false.' }),
  poolSize: Type.Integer({ minimum: 1, maximum: 64, default: 4, description: 'Connections kept open; batches share them.' }),
  timeout: Type.String({ minLength: 2, default: '10s', description: 'Longest a connect or one statement may take. A duration such as 500ms, 10s, 1m.' }),
  objects: Type.Object({
    query: Type.String({ minLength: 1, description: 'A SELECT that returns the objects for joins, one row each, e.g. SELECT login AS id, login, email FROM app_users.' }),
    anchor: Type.String({ minLength: 1, default: 'id', description: 'The column that identifies a row (its anchor); unique.' }),
  }, { additionalProperties: false, description: 'Where the objects joins look in come from.' }),
}, { additionalProperties: false, description: 'A SQL database: objects from a query; passwords set by the builtin:sql-login (the database login\'s own password) or builtin:sql-table (a hash in an application table) extension.' });

export const RemoteConnection = Type.Object({
  publicKey: Type.String({ minLength: 1, description: 'The connector worker\'s P-256 public key (PEM, the NAME.pub that `pwsync keys generate` wrote for the worker): each password is re-sealed for it. Relative paths are relative to the YAML file.' }),
}, { additionalProperties: false, description: 'A target reached by a connector worker (`pwsync worker --connector NAME`) that runs next to it and connects out to NATS (needs broker.kind: nats). The hub keeps the queue and the joins; the worker holds the target\'s credentials, its password extension and its own private key.' });

export type DelimitedSettings = Static<typeof DelimitedConnection>;
export type FixedWidthSettings = Static<typeof FixedWidthConnection>;
export type AvpSettings = Static<typeof AvpConnection>;
export type LdifSettings = Static<typeof LdifConnection>;
export type DsmlSettings = Static<typeof DsmlConnection>;
export type LdapSettings = Static<typeof LdapConnection>;
export type AdSettings = Static<typeof AdConnection>;
export type SqlSettings = Static<typeof SqlConnection>;
export type RemoteSettings = Static<typeof RemoteConnection>;

export const CONNECTION_SCHEMAS: Readonly<Record<string, TObject>> = {
  delimited: DelimitedConnection,
  'fixed-width': FixedWidthConnection,
  avp: AvpConnection,
  ldif: LdifConnection,
  dsml: DsmlConnection,
  ldap: LdapConnection,
  ad: AdConnection,
  postgresql: SqlConnection,
  mariadb: SqlConnection,
  mssql: SqlConnection,
  oracle: SqlConnection,
  db2: SqlConnection,
  remote: RemoteConnection,
};

export const CONNECTOR_KINDS = Object.keys(CONNECTION_SCHEMAS);
