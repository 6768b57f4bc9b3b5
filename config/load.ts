import { constants, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { TObject } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { isMap, isSeq } from 'yaml';
import { UsageError } from '../core/errors.ts';
import { schemaIssues } from './explain.ts';
import { ConfigError, pathText, type ConfigIssue, type ConfigPath } from './issues.ts';
import { fileIssues, resolveHubPaths, resolveNotifierPaths, resolveWorkerPaths } from './paths.ts';
import { CONNECTION_SCHEMAS, SCHEMAS, type HubConfig, type NotifierConfig, type WorkerConfig } from './schema.ts';
import { hubSemanticIssues, notifierSemanticIssues, workerSemanticIssues } from './semantic.ts';
import { YamlSource } from './source.ts';

/**
 * The configuration pipeline, in one visible line: read → parse YAML → defaults → schema →
 * per-kind connection settings → cross-setting rules → decode (durations to ms) → absolute paths
 * → files that must exist → deep freeze. Every problem found on the way is collected and thrown
 * once, as a ConfigError whose lines read FILE:LINE:COL: PATH: what is wrong — how to fix it.
 */

export { ConfigError, type ConfigIssue, type ConfigPath } from './issues.ts';

export type ConfigKind = 'hub' | 'notifier' | 'worker';
const KINDS: readonly ConfigKind[] = ['hub', 'notifier', 'worker'];

export interface LoadOptions {
  /** Check that keys, certificates, CA, public keys and secret files exist, are readable, and keys
   *  and secrets are private (mode 0600). Default true; `false` for a configuration written elsewhere. */
  readonly checkFiles?: boolean;
}

interface Loaded {
  /** The YAML file, absolute. */
  readonly sourceFile: string;
  /** The folder that relative paths in the file were resolved against. */
  readonly baseDir: string;
}

export type LoadedHubConfig = Readonly<HubConfig> & Loaded;
export type LoadedNotifierConfig = Readonly<NotifierConfig> & Loaded;
export type LoadedWorkerConfig = Readonly<WorkerConfig> & Loaded;

export type LoadedConfig =
  | { readonly kind: 'hub'; readonly config: LoadedHubConfig }
  | { readonly kind: 'notifier'; readonly config: LoadedNotifierConfig }
  | { readonly kind: 'worker'; readonly config: LoadedWorkerConfig };

export async function loadHubConfig(file: string, opts?: LoadOptions): Promise<LoadedHubConfig> {
  return load(file, 'hub', await readSource(file), opts) as LoadedHubConfig;
}

export async function loadNotifierConfig(file: string, opts?: LoadOptions): Promise<LoadedNotifierConfig> {
  return load(file, 'notifier', await readSource(file), opts) as LoadedNotifierConfig;
}

export async function loadWorkerConfig(file: string, opts?: LoadOptions): Promise<LoadedWorkerConfig> {
  return load(file, 'worker', await readSource(file), opts) as LoadedWorkerConfig;
}

/** Loads a file as whichever kind its top-level key says. */
export async function loadConfig(file: string, opts?: LoadOptions): Promise<LoadedConfig> {
  const src = await readSource(file);
  const kind = kindOf(src);
  const config = load(file, kind, src, opts);
  return { kind, config } as LoadedConfig;
}

/** 'hub', 'notifier' or 'worker', by the file's top-level key. */
export async function detectConfigKind(file: string): Promise<ConfigKind> {
  return kindOf(await readSource(file));
}

/**
 * Where a setting of a loaded configuration is written, as `FILE:LINE:COL: PATH`: for errors found
 * after loading (a join attribute the connected system lacks, a secret that cannot be read).
 */
export function configLocation(config: object, at: ConfigPath): string {
  const src = SOURCES.get(config);
  if (!src) return pathText(at);
  const { line, column } = src.valueAt(at);
  return `${src.file}:${line}:${column}: ${pathText(at)}`;
}

/** An issue at a setting of a loaded configuration, for what is checked after loading (`pwsync config check`). */
export function issueAt(config: LoadedConfig['config'], at: ConfigPath, message: string, fix: string): ConfigIssue {
  const src = SOURCES.get(config);
  if (!src) return { file: config.sourceFile, line: 1, column: 1, path: pathText(at), message, fix };
  // A mapping or list is pointed at by its key: its value starts with its first setting.
  const node = src.nodeAt(at);
  return src.issue(isMap(node) || isSeq(node) ? src.keyAt(at) : src.valueAt(at), at, message, fix);
}

const SOURCES = new WeakMap<object, YamlSource>();

async function readSource(file: string): Promise<YamlSource> {
  const src = new YamlSource(file, await readConfigText(file));
  const syntax = src.syntaxIssues();
  if (syntax.length > 0) throw new ConfigError(syntax);
  return src;
}

/**
 * The largest configuration file read: a hub with hundreds of connectors stays far below it, and a
 * bigger file (a log, a dump given by mistake) is refused before it is parsed.
 */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * The file's text, if it is a regular file of at most MAX_CONFIG_BYTES. It is opened without
 * blocking (a FIFO or a device would otherwise wait forever for a writer) and checked on the open
 * descriptor, so a path swapped after a check cannot slip through.
 */
async function readConfigText(file: string): Promise<string> {
  const refuse = (why: string, fix: string, cause?: unknown): never => {
    throw new UsageError(`cannot read configuration file ${file}: ${why} — ${fix}`, cause === undefined ? undefined : { cause });
  };
  let handle: FileHandle;
  try {
    handle = await open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : (code ?? 'read failed');
    return refuse(why, 'check the path and that this account may read it', e);
  }
  try {
    const st = await handle.stat();
    if (st.isDirectory()) refuse('it is a folder', 'give the YAML file inside it');
    if (!st.isFile()) refuse(`it is not a regular file (${fileType(st)})`, 'give the path of the YAML file itself; a configuration is read from a file, not a pipe or a device');
    if (st.size > MAX_CONFIG_BYTES) refuse(`it is ${st.size} bytes, more than the ${MAX_CONFIG_BYTES} bytes (1 MiB) a configuration may have`, 'check that this is the configuration file; split a very large one between hubs or workers');
    // Read one byte more than allowed: a file that grew after the check is still refused.
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await handle.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got > MAX_CONFIG_BYTES) refuse(`it grew beyond ${MAX_CONFIG_BYTES} bytes (1 MiB) while it was read`, 'check that this is the configuration file');
    return buf.subarray(0, got).toString('utf8');
  } finally {
    await handle.close();
  }
}

function fileType(st: Stats): string {
  if (st.isFIFO()) return 'a named pipe';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a file';
}

const EXAMPLES = 'see config/examples/hub.yaml, config/examples/notifier.yaml and config/examples/worker.yaml';

function kindOf(src: YamlSource): ConfigKind {
  const present = kindsIn(topLevel(src));
  if (present.length > 1) throw new ConfigError([severalKinds(src, present)]);
  if (present[0]) return present[0];
  throw new ConfigError([src.issue(src.valueAt([]), [], 'none of `hub:`, `notifier:` or `worker:` is at the top level', `start a hub's file with \`hub:\`, a domain controller's notifier file with \`notifier:\` and a connector worker's with \`worker:\`; ${EXAMPLES}`)]);
}

const kindsIn = (top: readonly string[]): ConfigKind[] => KINDS.filter((k) => top.includes(k));

/** The top-level keys, after checking the file holds a mapping at all. */
function topLevel(src: YamlSource): string[] {
  const contents = src.doc.contents;
  if (contents === null || contents === undefined) {
    throw new ConfigError([src.issue({ line: 1, column: 1 }, [], 'the file is empty', `write the configuration; ${EXAMPLES}`)]);
  }
  if (!isMap(contents)) {
    const found = isSeq(contents) ? 'a list' : 'a single value';
    throw new ConfigError([src.issue(src.valueAt([]), [], `the top level is ${found}, but must be a mapping of settings`, `start the file with \`hub:\` or \`notifier:\` at column 1, without \`- \`; ${EXAMPLES}`)]);
  }
  return contents.items.map((p) => String((p.key as { value?: unknown } | null)?.value ?? p.key));
}

function severalKinds(src: YamlSource, present: readonly ConfigKind[]): ConfigIssue {
  const second = present[1]!;
  return src.issue(src.keyAt([second]), [second], `a file configures one of a hub (\`hub:\`), a notifier (\`notifier:\`) or a connector worker (\`worker:\`), but this one has ${present.map((k) => `\`${k}:\``).join(' and ')}`,
    `move the ${second}'s settings to a file of their own`);
}

function load(file: string, kind: ConfigKind, src: YamlSource, opts: LoadOptions | undefined): object {
  const present = kindsIn(topLevel(src));
  if (present.length > 1) throw new ConfigError([severalKinds(src, present)]);
  const other = present[0];
  if (other !== undefined && other !== kind) {
    throw new ConfigError([src.issue(src.keyAt([other]), [other], `this file configures a ${other}, not a ${kind}`, `give the ${kind} its own file starting with \`${kind}:\`, or load this one as a ${other} configuration`)]);
  }

  let value: unknown;
  try {
    value = src.doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new ConfigError([src.issue({ line: 1, column: 1 }, [], `the YAML cannot be read: ${e instanceof Error ? e.message : 'unknown error'}`, 'remove excessive aliases (`*name`) and write the values out')]);
  }
  const schema = SCHEMAS[kind];
  const hasConnectors = kind !== 'notifier';
  value = Value.Default(schema, value);
  const baseDir = path.dirname(path.resolve(file));

  const issues = schemaIssues(src, schema, value);
  const connections = hasConnectors ? connectionSettings(value) : [];
  for (const c of connections) {
    Value.Default(c.schema, c.settings);
    issues.push(...schemaIssues(src, c.schema, c.settings, ['connectors', c.index, 'connection']));
  }
  issues.push(...(kind === 'hub' ? hubSemanticIssues(src, value, baseDir) : kind === 'worker' ? workerSemanticIssues(src, value, baseDir) : notifierSemanticIssues(src, value)));
  if (issues.length > 0) throw new ConfigError(issues);

  const decoded = Value.Decode(schema, value) as Record<string, unknown>;
  if (hasConnectors) {
    const connectors = decoded['connectors'] as Array<Record<string, unknown>>;
    for (const c of connections) connectors[c.index]!['connection'] = Value.Decode(c.schema, c.settings);
  }
  const files = kind === 'hub' ? resolveHubPaths(decoded, baseDir) : kind === 'worker' ? resolveWorkerPaths(decoded, baseDir) : resolveNotifierPaths(decoded, baseDir);
  if (opts?.checkFiles ?? true) {
    const missing = fileIssues(src, files);
    if (missing.length > 0) throw new ConfigError(missing);
  }

  const result = deepFreeze({ ...decoded, sourceFile: path.resolve(file), baseDir });
  SOURCES.set(result, src);
  return result;
}

/** Each connector of a known kind with its `connection:` mapping and that kind's schema. */
function connectionSettings(value: unknown): Array<{ index: number; schema: TObject; settings: Record<string, unknown> }> {
  const connectors = (value as { connectors?: unknown } | null)?.connectors;
  if (!Array.isArray(connectors)) return [];
  const found: Array<{ index: number; schema: TObject; settings: Record<string, unknown> }> = [];
  connectors.forEach((c: unknown, index) => {
    const { kind, connection } = (typeof c === 'object' && c !== null ? c : {}) as { kind?: unknown; connection?: unknown };
    if (typeof kind !== 'string' || !Object.hasOwn(CONNECTION_SCHEMAS, kind)) return;
    if (typeof connection !== 'object' || connection === null || Array.isArray(connection)) return;
    found.push({ index, schema: CONNECTION_SCHEMAS[kind]!, settings: connection as Record<string, unknown> });
  });
  return found;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}
