import type { ConnectorKind } from '../contract.ts';
import type { AvpSettings } from '../kinds-schema.ts';
import {
  cannotHold, collectNames, fileEol, finishRecord, hasLineBreak, joinLines, RecordFileFormatError, splitLines,
  type Line, type ParsedRecord, type RecordCodec, type RecordDocument,
} from './codec.ts';
import { RecordFileConnector } from './record-file.ts';

/**
 * An attribute-value pair file: `attribute<sep> value` lines, records separated by blank lines,
 * `#` comment lines kept where they are. An attribute given twice in a record shows its first
 * value; setting it replaces every line of it with one. Setting a value rewrites only that line
 * (or adds one at the end of the record).
 */
export function avpCodec(separator: string): RecordCodec {
  return (text, location) => {
    const lines = splitLines(text);
    const eol = fileEol(lines);
    const records: ParsedRecord[] = [];
    /** Per record: its first and past-the-last line index. */
    const spans: Array<[number, number]> = [];

    const isBlank = (l: Line) => l.text.trim() === '';
    const isComment = (l: Line) => l.text.trimStart().startsWith('#');
    const pair = (l: Line): [string, string] | undefined => {
      const at = l.text.indexOf(separator);
      return at < 0 ? undefined : [l.text.slice(0, at).trim(), l.text.slice(at + separator.length).trim()];
    };

    for (let n = 0; n < lines.length;) {
      if (isBlank(lines[n]!)) { n++; continue; }
      const start = n;
      while (n < lines.length && !isBlank(lines[n]!)) n++;
      const attributes: Record<string, string> = {};
      let first = 0;
      for (let k = start; k < n; k++) {
        if (isComment(lines[k]!)) continue;
        const p = pair(lines[k]!);
        if (!p || p[0] === '') {
          throw new RecordFileFormatError(location, k + 1, `expected \`attribute${separator} value\`: check \`connection.separator\`, or start a comment with #`);
        }
        if (first === 0) first = k + 1;
        if (!Object.hasOwn(attributes, p[0])) attributes[p[0]] = p[1];
      }
      if (first === 0) continue; // a block of comments only
      records.push({ attributes, line: first });
      spans.push([start, n]);
    }

    const doc: RecordDocument = {
      records,
      attributeNames: collectNames(records, false),
      ignoreNameCase: false,
      check(_index, attribute, value) {
        if (attribute.trim() !== attribute || attribute === '' || attribute.startsWith('#') || attribute.includes(separator) || hasLineBreak(attribute)) {
          throw cannotHold(location, `${JSON.stringify(attribute)} cannot be an attribute name in this file: fix the extension's attribute setting`);
        }
        if (hasLineBreak(value) || value.trim() !== value) {
          throw cannotHold(location, `attribute ${attribute} cannot hold a value with a line break or leading or trailing spaces`);
        }
      },
      render(changes) {
        const out: Line[] = [];
        let next = 0;
        spans.forEach(([start, end], i) => {
          out.push(...lines.slice(next, start));
          next = end;
          const change = changes.get(i);
          const block = lines.slice(start, end);
          if (!change) {
            out.push(...block);
            return;
          }
          const written = new Set<string>();
          const kept: Line[] = [];
          for (const l of block) {
            const p = isComment(l) ? undefined : pair(l);
            const value = p && change.get(p[0]);
            if (!p || value === undefined) kept.push(l);
            else if (!written.has(p[0])) {
              kept.push({ text: `${p[0]}${separator} ${value}`, eol: l.eol });
              written.add(p[0]);
            }
          }
          const added = [...change].filter(([name]) => !written.has(name)).map(([name, value]) => `${name}${separator} ${value}`);
          out.push(...finishRecord(kept, block, added, eol));
        });
        out.push(...lines.slice(next));
        return joinLines(out);
      },
    };
    return doc;
  };
}

export const avpKind: ConnectorKind<AvpSettings> = {
  kind: 'avp',
  description: 'An attribute-value pair text file: `attribute: value` lines, records separated by a blank line.',
  create: (name, settings, env) => new RecordFileConnector({
    name, kind: 'avp', path: env.resolvePath(settings.path), encoding: settings.encoding,
    anchor: settings.anchor, codec: avpCodec(settings.separator),
  }),
};
