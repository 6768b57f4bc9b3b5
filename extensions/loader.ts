import { stat } from 'node:fs/promises';
import os from 'node:os';
import { extname, isAbsolute } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type BuildFailure } from 'esbuild';
import { describeError, UsageError } from '../core/errors.ts';
import type { ExtensionEnv, PasswordExtension } from '../core/extension.ts';

export interface ExtensionSpec {
  /** An absolute path (config resolves relative ones against the YAML), a package name, or builtin:NAME (extensions/builtin/). */
  readonly module: string;
  readonly settings: Readonly<Record<string, unknown>>;
}

export interface LoadedExtension {
  readonly extension: PasswordExtension;
  /** It has setPassword; without it every set-operation fails with 6928. */
  readonly canSet: boolean;
  readonly canChange: boolean;
  /** Where it came from, for messages: the file path or `package NAME`. */
  readonly source: string;
}

/** Extensions shipped in extensions/builtin/, loaded as `module: builtin:NAME`. */
const BUILTINS = ['sql-login', 'sql-table'];

const MEMBERS = ['init', 'beginConnection', 'setPassword', 'changePassword', 'endConnection', 'close'] as const;

const SHAPE = 'export default defineExtension(() => ({ setPassword(object, password, ctx) { … } })) (see extensions/sdk/mod.ts)';

/** What Node with pwsync's TypeScript loader imports as a module; anything else fails at import. */
const MODULE_EXTENSIONS = ['.js', '.mjs', '.cjs', '.ts', '.mts', '.cts', '.jsx', '.tsx'];

/** What is wrong with an extension module, in the words of a configuration issue. */
export interface ExtensionProblem {
  readonly message: string;
  readonly fix: string;
}

/**
 * Finds what `loadExtension` would refuse about the module without running any of its code: a
 * built-in that does not exist, a path that is not a regular file, a file or package that is not
 * a module (by its extension, then by parsing it), an ES module without a default export. What
 * the code does when it runs (its factory, its init) is only known by loading it.
 */
export async function extensionModuleProblem(module: string): Promise<ExtensionProblem | undefined> {
  const builtin = /^builtin:(.*)$/.exec(module)?.[1];
  if (builtin !== undefined) {
    return BUILTINS.includes(builtin) ? undefined
      : { message: `no built-in password extension ${module}`, fix: `use one of ${BUILTINS.map((b) => `builtin:${b}`).join(', ')}, or give a path` };
  }
  let file: string;
  if (isAbsolute(module) || module.startsWith('file:')) {
    file = module.startsWith('file:') ? fileURLToPath(module) : module;
  } else {
    try {
      // Resolved from here, as loadExtension's import() resolves it.
      const url = import.meta.resolve(module);
      if (!url.startsWith('file:')) return undefined;
      file = fileURLToPath(url);
    } catch (e) {
      return { message: `no package ${module} can be found (${(e as { code?: string }).code ?? describeError(e)})`, fix: `install it next to pwsync (npm install ${module}), or give the module's path (./name.ts: a relative path is relative to the YAML file)` };
    }
  }
  const st = await stat(file).catch(() => undefined);
  if (!st) return { message: `the extension ${file} does not exist`, fix: 'correct `extension.module` (a relative path is relative to the YAML file)' };
  if (!st.isFile()) return { message: `the extension ${file} is not a regular file`, fix: 'point `extension.module` at the module\'s file (.ts, .js, .mjs…), not a folder or a device' };
  const ext = extname(file).toLowerCase();
  if (!MODULE_EXTENSIONS.includes(ext)) {
    return { message: `the extension ${file} is not a module: ${ext === '' ? 'its name has no extension' : `${ext} is not a JavaScript or TypeScript file`}`, fix: `point \`extension.module\` at a module whose name ends in ${MODULE_EXTENSIONS.join(', ')}` };
  }
  return moduleSyntaxProblem(file);
}

/**
 * What a built-in extension's init() would refuse in `settings`, asked of the built-in's own
 * check (pwsync's code, which connects nowhere and loads no module named in the settings).
 */
export async function builtinSettingsProblem(module: string, settings: Readonly<Record<string, unknown>>, resolvePath: (p: string) => string): Promise<string | undefined> {
  const builtin = /^builtin:(.*)$/.exec(module)?.[1];
  if (builtin === undefined || !BUILTINS.includes(builtin)) return undefined;
  const mod = await import(new URL(`./builtin/${builtin}.ts`, import.meta.url).href) as {
    settingsProblem?: (raw: Readonly<Record<string, unknown>>, resolvePath: (p: string) => string) => string | undefined | Promise<string | undefined>;
  };
  return mod.settingsProblem?.(settings, resolvePath);
}

/** Parses the module (esbuild, which never runs it): a syntax error, or an ES module without a default export. */
async function moduleSyntaxProblem(file: string): Promise<ExtensionProblem | undefined> {
  let result;
  try {
    // write: false: the output folder only has to be a name, nothing is written.
    result = await build({ entryPoints: [file], bundle: false, write: false, metafile: true, logLevel: 'silent', outdir: os.tmpdir() });
  } catch (e) {
    const first = (e as Partial<BuildFailure>).errors?.[0];
    if (!first) throw e;
    const at = first.location ? ` at line ${first.location.line}, column ${first.location.column + 1}` : '';
    return { message: `the extension ${file} is not a module that can be loaded: ${first.text}${at}`, fix: 'fix the module\'s syntax (run it through `npx tsc --noEmit` or `node --check`)' };
  }
  // A CommonJS module's exports are only known when it runs; import() makes them the default export.
  const format = Object.values(result.metafile.inputs)[0]?.format;
  const exports = Object.values(result.metafile.outputs)[0]?.exports ?? [];
  if (format !== 'cjs' && !exports.includes('default')) {
    return { message: `the extension ${file} has no default export`, fix: `write ${SHAPE}` };
  }
  return undefined;
}

/**
 * Loads a password extension and initializes it with its settings. Each way an extension can be
 * wrong is a UsageError that names the module and says what to change, so `pwsync` refuses to
 * start with one clear line instead of failing every set-operation later.
 */
export async function loadExtension(spec: ExtensionSpec, env: ExtensionEnv): Promise<LoadedExtension> {
  const builtin = /^builtin:([a-z0-9-]+)$/.exec(spec.module)?.[1];
  if (spec.module.startsWith('builtin:') && (builtin === undefined || !BUILTINS.includes(builtin))) {
    throw new UsageError(`connector ${env.connector}: no built-in password extension ${JSON.stringify(spec.module)}; the built-in ones are ${BUILTINS.map((b) => `builtin:${b}`).join(', ')}`);
  }
  const isPath = builtin === undefined && (isAbsolute(spec.module) || spec.module.startsWith('file:'));
  const source = isPath || builtin !== undefined ? spec.module : `package ${spec.module}`;
  const where = `connector ${env.connector}: password extension ${source}`;

  if (isPath) {
    const file = spec.module.startsWith('file:') ? new URL(spec.module) : spec.module;
    const found = await stat(file).then((s) => s.isFile(), () => false);
    if (!found) throw new UsageError(`${where}: no such file; fix \`extension.module\` in the hub YAML (a relative path is relative to the YAML file)`);
  }

  let mod: Record<string, unknown>;
  try {
    const url = builtin !== undefined ? new URL(`./builtin/${builtin}.ts`, import.meta.url).href
      : isPath && !spec.module.startsWith('file:') ? pathToFileURL(spec.module).href : spec.module;
    mod = await import(url) as Record<string, unknown>;
  } catch (e) {
    const code = (e as { code?: string } | undefined)?.code;
    const fix = !isPath && code === 'ERR_MODULE_NOT_FOUND'
      ? `install it next to pwsync (npm install ${spec.module}) or give a path`
      : 'fix the module so that it loads';
    throw new UsageError(`${where}: cannot be loaded: ${describeError(e)}; ${fix}`, { cause: e });
  }

  if (!('default' in mod) || mod.default === undefined) {
    throw new UsageError(`${where}: has no default export; write ${SHAPE}`);
  }
  const factory = mod.default;
  if (typeof factory !== 'function') {
    throw new UsageError(`${where}: the default export is ${describeType(factory)}, not a factory function; write ${SHAPE}`);
  }

  let extension: unknown;
  try {
    extension = (factory as () => unknown)();
  } catch (e) {
    throw new UsageError(`${where}: the factory (default export) threw: ${describeError(e)}`, { cause: e });
  }
  if (typeof extension !== 'object' || extension === null || Array.isArray(extension) || extension instanceof Promise) {
    throw new UsageError(`${where}: the factory returned ${describeType(extension)}, not an extension object; it must return { setPassword, … } synchronously: ${SHAPE}`);
  }
  for (const member of MEMBERS) {
    const m = (extension as Record<string, unknown>)[member];
    if (m !== undefined && typeof m !== 'function') {
      throw new UsageError(`${where}: ${member} is ${describeType(m)}, not a function; make it a method or remove it`);
    }
  }

  const ext = extension as PasswordExtension;
  const c = (extension as Record<string, unknown>).concurrentSets;
  if (c !== undefined && !(typeof c === 'number' && Number.isInteger(c) && c >= 1 && c <= 64)) {
    throw new UsageError(`${where}: concurrentSets is ${describeType(c)}; it must be a whole number from 1 to 64 (how many setPassword calls of a batch may overlap)`);
  }
  const canSet = typeof ext.setPassword === 'function';
  const canChange = typeof ext.changePassword === 'function';
  if (!canSet) {
    // No eventId field: admins filter on event ids for set-operations, and none failed yet.
    env.log.warn({ extension: source }, `${where} has no setPassword: every set-operation for this connector fails with event 6928`);
  }

  try {
    await ext.init?.(Object.freeze({ ...spec.settings }), env);
  } catch (e) {
    throw new UsageError(`${where}: init failed: ${describeError(e)}; fix \`extension.settings\` in the hub YAML`, { cause: e });
  }
  return { extension: ext, canSet, canChange, source };
}

function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Promise) return 'a promise';
  const t = typeof v;
  return t === 'object' ? 'an object' : `a ${t}`;
}
