import { access, constants } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { ExtensionConnection, TargetObject } from '../../core/extension.ts';
import type { Connector, ExtensionHost, ObjectSource, SecurityLevel } from '../contract.ts';
import type { RecordCodec } from './codec.ts';
import { fileVersion, ioError, readText, removeStaleTemps, type FileEncoding } from './file-io.ts';
import { lockFile } from './file-lock.ts';
import { FileRecordSet } from './record-set.ts';
import { LoadedRecords } from './records.ts';

export interface RecordFileOptions {
  readonly name: string;
  readonly kind: string;
  /** Absolute, or relative to the working folder (the registry resolves it against the YAML). */
  readonly path: string;
  readonly encoding: FileEncoding;
  readonly anchor: string;
  readonly codec: RecordCodec;
}

/**
 * A connector over one record file, whatever its format: records for joins, and the records for
 * a password extension to set a value in. Every read looks at the file again when it changed, so
 * an admin's edits are seen; writes go through the batch's RecordSet.
 */
export class RecordFileConnector implements Connector, ObjectSource, ExtensionHost {
  readonly name: string;
  readonly kind: string;
  readonly path: string;
  #cache: LoadedRecords | undefined;

  constructor(readonly options: RecordFileOptions) {
    this.name = options.name;
    this.kind = options.kind;
    this.path = resolve(options.path);
  }

  async open(): Promise<void> {
    // A file has no connection to hold; only clear what a writer killed mid-write left behind.
    await removeStaleTemps(this.path);
  }

  async close(): Promise<void> {
    this.#cache = undefined;
  }

  securityLevel(): SecurityLevel {
    return 'local';
  }

  async test(): Promise<string> {
    const loaded = await this.#read();
    const folder = dirname(this.path);
    try {
      await access(folder, constants.W_OK);
    } catch (e) {
      throw ioError(e, this.path, 'write');
    }
    const names = loaded.doc.attributeNames;
    return `${this.path}: ${loaded.objects.length} records, anchor ${this.options.anchor}, attributes ${names.join(', ') || '(none)'}; folder ${folder} writable`;
  }

  async *list(): AsyncIterable<TargetObject> {
    yield* (await this.#current()).objects;
  }

  async find(attribute: string, value: string, ignoreCase: boolean): Promise<TargetObject[]> {
    return (await this.#current()).find(attribute, value, ignoreCase);
  }

  version(): Promise<string> {
    return fileVersion(this.path);
  }

  async attributes(): Promise<readonly string[]> {
    return (await this.#current()).doc.attributeNames;
  }

  /**
   * Waits for the previous batch on this file to release it, then takes the file as it is now:
   * read again when its version changed (an admin's edit), else the reading already parsed.
   */
  async connect(): Promise<{ connection: ExtensionConnection; release(): Promise<void> }> {
    const unlock = await lockFile(this.path);
    let records: FileRecordSet;
    try {
      records = new FileRecordSet(await this.#current(), {
        path: this.path,
        encoding: this.options.encoding,
        codec: this.options.codec,
        onCommit: (loaded) => { this.#cache = loaded; },
      });
    } catch (e) {
      unlock();
      throw e;
    }
    return {
      connection: { kind: 'records', records },
      release: async () => {
        records.close();
        unlock();
      },
    };
  }

  async #current(): Promise<LoadedRecords> {
    if (this.#cache && this.#cache.version === await fileVersion(this.path)) return this.#cache;
    return this.#read();
  }

  async #read(): Promise<LoadedRecords> {
    const file = await readText(this.path, this.options.encoding);
    const loaded = LoadedRecords.parse(file, this.options.codec, this.options.anchor, this.path);
    this.#cache = loaded;
    return loaded;
  }
}
