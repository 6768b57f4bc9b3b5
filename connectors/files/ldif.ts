import type { ConnectorKind } from '../contract.ts';
import type { LdifSettings } from '../kinds-schema.ts';
import {
  attributeName, cannotHold, collectNames, fileEol, finishRecord, joinLines, RecordFileFormatError, splitLines,
  type Line, type ParsedRecord, type RecordCodec, type RecordDocument,
} from './codec.ts';
import { ATTRIBUTE_DESCRIPTION, encodeAttr, logicalBlocks, parseAttrLine, type LogicalLine } from './ldif-syntax.ts';
import { RecordFileConnector } from './record-file.ts';

/**
 * An LDIF content file (RFC 2849). A record's DN is its `dn` attribute; attribute names ignore
 * case, as in LDAP; a multi-valued attribute shows its first value, and setting it replaces all
 * its values with one. Setting a value rewrites only that attribute's lines, base64-encoded when
 * the value is not plain ASCII (as RFC 2849 requires); everything else keeps its bytes, folding
 * and comments included.
 */
export const ldifCodec: RecordCodec = (text, location) => {
  const lines = splitLines(text);
  const eol = fileEol(lines);
  function fail(line: number, problem: string): never {
    throw new RecordFileFormatError(location, line, problem);
  }
  const blocks = logicalBlocks(lines, fail);
  const records: ParsedRecord[] = [];
  /** Per record: its logical lines (the version line excluded). */
  const bodies: LogicalLine[][] = [];

  blocks.forEach((block, b) => {
    let entries = block;
    const firstData = entries.findIndex((e) => !e.comment);
    if (b === 0 && firstData >= 0 && /^version:/i.test(entries[firstData]!.text)) {
      if (!/^version:[ ]*1[ ]*$/i.test(entries[firstData]!.text)) fail(entries[firstData]!.start + 1, 'only LDIF version 1 is supported');
      entries = entries.slice(firstData + 1);
    }
    const data = entries.filter((e) => !e.comment);
    if (data.length === 0) return;
    const attributes: Record<string, string> = {};
    data.forEach((e, k) => {
      const a = parseAttrLine(e.text);
      const name = a === 'malformed' ? '' : a.name.toLowerCase();
      if (e.text === '-' || name === 'changetype' || name === 'control') {
        fail(e.start + 1, 'LDIF change records are not supported: give the connector a content LDIF (an export), not a change file');
      }
      if (a === 'malformed') fail(e.start + 1, 'expected `attribute: value`, `attribute:: base64` or `attribute:< URL`');
      if (k === 0 && name !== 'dn') fail(e.start + 1, 'a record must start with `dn:`');
      if (k > 0 && name === 'dn') fail(e.start + 1, 'a second `dn:` in one record: separate records with a blank line');
      if (a.kind !== 'text') return;
      const key = k === 0 ? 'dn' : attributeName(attributes, a.name, true);
      if (!Object.hasOwn(attributes, key)) attributes[key] = a.value;
    });
    if (!Object.hasOwn(attributes, 'dn')) fail(data[0]!.start + 1, 'the DN is not UTF-8 text');
    records.push({ attributes, line: data[0]!.start + 1 });
    bodies.push(entries);
  });

  const doc: RecordDocument = {
    records,
    attributeNames: collectNames(records, true),
    ignoreNameCase: true,
    check(_index, attribute) {
      if (!ATTRIBUTE_DESCRIPTION.test(attribute) || attribute.toLowerCase() === 'dn') {
        throw cannotHold(location, `${JSON.stringify(attribute)} is not an LDAP attribute name: fix the extension's attribute setting`);
      }
    },
    render(changes) {
      const out: Line[] = [];
      let next = 0;
      bodies.forEach((entries, i) => {
        const first = entries[0]!.start;
        const last = entries.at(-1)!.end;
        out.push(...lines.slice(next, first));
        next = last;
        const change = changes.get(i);
        if (!change) {
          out.push(...lines.slice(first, last));
          return;
        }
        const wanted = new Map([...change].map(([name, value]) => [name.toLowerCase(), { name, value }]));
        const written = new Set<string>();
        const kept: Line[] = [];
        for (const e of entries) {
          const physical = lines.slice(e.start, e.end);
          const a = e.comment ? undefined : parseAttrLine(e.text);
          const key = a && a !== 'malformed' ? a.name.toLowerCase() : undefined;
          const w = key === undefined ? undefined : wanted.get(key);
          if (!w || key === undefined) {
            kept.push(...physical);
          } else if (!written.has(key)) {
            const encoded = encodeAttr((a as { name: string }).name, w.value);
            encoded.forEach((text, k) => kept.push({ text, eol: k === encoded.length - 1 ? physical.at(-1)!.eol : eol }));
            written.add(key);
          }
        }
        const added = [...wanted].filter(([key]) => !written.has(key)).flatMap(([, w]) => encodeAttr(w.name, w.value));
        out.push(...finishRecord(kept, lines.slice(first, last), added, eol));
      });
      out.push(...lines.slice(next));
      return joinLines(out);
    },
  };
  return doc;
};

export const ldifKind: ConnectorKind<LdifSettings> = {
  kind: 'ldif',
  description: 'An LDIF content file (RFC 2849); the anchor is the DN unless set.',
  create: (name, settings, env) => new RecordFileConnector({
    name, kind: 'ldif', path: env.resolvePath(settings.path), encoding: 'utf8',
    anchor: settings.anchor, codec: ldifCodec,
  }),
};
