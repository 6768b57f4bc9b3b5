import { ObjectNotFoundError, TargetUnavailableError, type RecordSet, type TargetObject } from '../../core/extension.ts';
import { cannotHold, type RecordCodec } from './codec.ts';
import { encodeText, fileVersion, writeAtomically, type FileEncoding } from './file-io.ts';
import { LoadedRecords } from './records.ts';

export interface RecordSetOptions {
  readonly path: string;
  readonly encoding: FileEncoding;
  readonly codec: RecordCodec;
  /** Called with the reading that a commit produced, so later joins see it without a re-read. */
  onCommit(loaded: LoadedRecords): void;
}

/**
 * The records of one batch. `set` stages; `commit` writes every staged value in one atomic file
 * replacement, and refuses (retryably) when the file changed on disk since this batch read it,
 * so an admin's edit is never overwritten with a stale copy.
 */
export class FileRecordSet implements RecordSet {
  readonly location: string;
  #loaded: LoadedRecords;
  #staged = new Map<number, Map<string, string>>();
  #closed = false;

  constructor(loaded: LoadedRecords, readonly options: RecordSetOptions) {
    this.location = options.path;
    this.#loaded = loaded;
  }

  get(id: string): TargetObject | undefined {
    const i = this.#loaded.indexOf(id);
    if (i === undefined) return undefined;
    const object = this.#loaded.objects[i]!;
    const staged = this.#staged.get(i);
    if (!staged) return object;
    return Object.freeze({ id, attributes: Object.freeze({ ...object.attributes, ...Object.fromEntries(staged) }) });
  }

  set(id: string, attribute: string, value: string): void {
    this.#checkOpen();
    const i = this.#loaded.indexOf(id);
    if (i === undefined) throw new ObjectNotFoundError(id, this.location);
    const name = this.#loaded.nameIn(i, attribute);
    const anchor = this.#loaded.nameIn(i, this.#loaded.anchor);
    if (name === anchor) {
      throw cannotHold(this.location, `${attribute} is the anchor attribute, which identifies the record: set another attribute`);
    }
    if (this.options.encoding === 'latin1' && /[^\u0000-\u00ff]/.test(value)) {
      throw cannotHold(this.location, `the file is latin1-encoded and the value for ${attribute} has a character latin1 lacks: set \`connection.encoding\` to utf8 and convert the file`);
    }
    this.#loaded.doc.check(i, name, value);
    let staged = this.#staged.get(i);
    if (!staged) this.#staged.set(i, staged = new Map());
    staged.set(name, value);
  }

  async commit(): Promise<void> {
    this.#checkOpen();
    if (this.#staged.size === 0) return;
    const { path, encoding } = this.options;
    const now = await fileVersion(path);
    if (now !== this.#loaded.version) {
      throw new TargetUnavailableError(`${path} changed on disk after this batch read it: nothing was written, so the change is kept; the batch is retried on a fresh read`);
    }
    const text = this.#loaded.doc.render(this.#staged);
    const version = await writeAtomically(path, encodeText(text, this.#loaded.file.bom, encoding));
    const file = { text, bom: this.#loaded.file.bom, version };
    this.#loaded = LoadedRecords.parse(file, this.options.codec, this.#loaded.anchor, path);
    this.#staged = new Map();
    this.options.onCommit(this.#loaded);
  }

  /** Ends the batch: staged values that were not committed are dropped. */
  close(): void {
    this.#closed = true;
    this.#staged.clear();
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error(`the records of ${this.location} were used after the batch released them`);
  }
}
