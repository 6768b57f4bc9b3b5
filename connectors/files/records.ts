import type { TargetObject } from '../../core/extension.ts';
import { attributeName, RecordFileFormatError, type RecordCodec, type RecordDocument } from './codec.ts';
import type { FileText } from './file-io.ts';
import { foldCase } from './fold-case.ts';

/**
 * One reading of a record file: its records as objects identified by the anchor attribute, and
 * the lookups joins use. Immutable; a new reading replaces it.
 */
export class LoadedRecords {
  readonly objects: readonly TargetObject[];
  readonly #byId = new Map<string, number>();
  readonly #indexes = new Map<string, Map<string, TargetObject[]>>();

  constructor(readonly file: FileText, readonly doc: RecordDocument, readonly anchor: string, location: string) {
    const names = doc.ignoreNameCase ? doc.attributeNames.map((n) => n.toLowerCase()) : doc.attributeNames;
    if (doc.records.length > 0 && !names.includes(doc.ignoreNameCase ? anchor.toLowerCase() : anchor)) {
      throw new RecordFileFormatError(location, doc.records[0]!.line, `no record has the anchor attribute ${anchor} (attributes: ${doc.attributeNames.join(', ')}): set \`connection.anchor\` to the attribute that identifies a record`);
    }
    const firstLine = new Map<string, number>();
    this.objects = doc.records.map((r, i) => {
      const id = r.attributes[attributeName(r.attributes, anchor, doc.ignoreNameCase)];
      if (id === undefined || id === '') {
        throw new RecordFileFormatError(location, r.line, `the record has no ${anchor} (the anchor attribute): give it one or set \`connection.anchor\``);
      }
      const seen = firstLine.get(id);
      if (seen !== undefined) {
        throw new RecordFileFormatError(location, r.line, `${anchor} ${JSON.stringify(id)} is already the anchor of the record at line ${seen}: anchors must be unique, remove or rename one of them`);
      }
      firstLine.set(id, r.line);
      this.#byId.set(id, i);
      return Object.freeze({ id, attributes: Object.freeze({ ...r.attributes }) });
    });
  }

  static parse(file: FileText, codec: RecordCodec, anchor: string, location: string): LoadedRecords {
    return new LoadedRecords(file, codec(file.text, location), anchor, location);
  }

  get version(): string {
    return this.file.version;
  }

  indexOf(id: string): number | undefined {
    return this.#byId.get(id);
  }

  /** The spelling of `attribute` in record `index` (LDAP formats ignore the case of names). */
  nameIn(index: number, attribute: string): string {
    return attributeName(this.objects[index]!.attributes, attribute, this.doc.ignoreNameCase);
  }

  find(attribute: string, value: string, ignoreCase: boolean): TargetObject[] {
    const key = `${ignoreCase ? 'i' : 's'}:${this.doc.ignoreNameCase ? attribute.toLowerCase() : attribute}`;
    let index = this.#indexes.get(key);
    if (!index) {
      index = new Map();
      for (let i = 0; i < this.objects.length; i++) {
        const v = this.objects[i]!.attributes[this.nameIn(i, attribute)];
        if (v === undefined) continue;
        const k = ignoreCase ? foldCase(v) : v;
        const list = index.get(k);
        if (list) list.push(this.objects[i]!);
        else index.set(k, [this.objects[i]!]);
      }
      this.#indexes.set(key, index);
    }
    return [...(index.get(ignoreCase ? foldCase(value) : value) ?? [])];
  }
}
