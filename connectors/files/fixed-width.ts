import { UsageError } from '../../core/errors.ts';
import type { ConnectorKind } from '../contract.ts';
import type { FixedWidthSettings } from '../kinds-schema.ts';
import {
  cannotHold, hasLineBreak, joinLines, RecordFileFormatError, splitLines,
  type ParsedRecord, type RecordCodec, type RecordDocument,
} from './codec.ts';
import { RecordFileConnector } from './record-file.ts';

export interface FixedWidthField {
  readonly name: string;
  /** In characters (Unicode code points), not bytes. */
  readonly width: number;
}

/**
 * A fixed-width text file: one record per line, each field a run of characters right-padded with
 * spaces. A value wider than its field is refused (6950), never truncated: a cut hash would be a
 * password nobody can log in with. Setting a value rewrites only that field of that line.
 */
export function fixedWidthCodec(fields: readonly FixedWidthField[]): RecordCodec {
  const twice = fields.find((f, i) => fields.findIndex((g) => g.name === f.name) !== i);
  if (twice) throw new UsageError(`\`connection.fields\` names ${twice.name} twice: field names must be unique`);
  const total = fields.reduce((n, f) => n + f.width, 0);
  const names = fields.map((f) => f.name);
  return (text, location) => {
    const lines = splitLines(text);
    const records: ParsedRecord[] = [];
    const lineOf: number[] = [];
    const cells: string[][] = [];
    lines.forEach((line, n) => {
      if (line.text.trim() === '') return;
      const chars = Array.from(line.text);
      if (chars.length > total && chars.slice(total).some((c) => c !== ' ')) {
        throw new RecordFileFormatError(location, n + 1, `the line is ${chars.length} characters long but the fields add up to ${total}: fix \`connection.fields\` to match the file`);
      }
      let at = 0;
      const raw = fields.map((f) => {
        const cell = chars.slice(at, at + f.width).join('');
        at += f.width;
        return cell;
      });
      const attributes: Record<string, string> = {};
      fields.forEach((f, i) => { attributes[f.name] = raw[i]!.replace(/ +$/, ''); });
      records.push({ attributes, line: n + 1 });
      lineOf.push(n);
      cells.push(raw);
    });

    const doc: RecordDocument = {
      records,
      attributeNames: names,
      ignoreNameCase: false,
      check(_index, attribute, value) {
        const field = fields.find((f) => f.name === attribute);
        if (!field) {
          throw cannotHold(location, `no field ${JSON.stringify(attribute)} (fields: ${names.join(', ')}): add it to \`connection.fields\` and the file, or fix the extension's attribute setting`);
        }
        if (hasLineBreak(value)) throw cannotHold(location, `field ${attribute} cannot hold a line break`);
        const needed = Array.from(value).length;
        if (needed > field.width) {
          throw cannotHold(location, `field ${attribute} is ${field.width} characters wide and the value needs ${needed}: widen the field in the file and in \`connection.fields\``);
        }
      },
      render(changes) {
        const out = [...lines];
        changes.forEach((change, i) => {
          const n = lineOf[i]!;
          const rest = Array.from(lines[n]!.text).slice(total).join('');
          const text = fields.map((f, k) => {
            const value = change.get(f.name);
            return value === undefined ? padTo(cells[i]![k]!, f.width) : padTo(value, f.width);
          }).join('') + rest;
          out[n] = { text, eol: lines[n]!.eol };
        });
        return joinLines(out);
      },
    };
    return doc;
  };
}

function padTo(s: string, width: number): string {
  return s + ' '.repeat(Math.max(0, width - Array.from(s).length));
}

export const fixedWidthKind: ConnectorKind<FixedWidthSettings> = {
  kind: 'fixed-width',
  description: 'A fixed-width text file, one record per line.',
  create: (name, settings, env) => new RecordFileConnector({
    name, kind: 'fixed-width', path: env.resolvePath(settings.path), encoding: settings.encoding,
    anchor: settings.anchor, codec: fixedWidthCodec(settings.fields),
  }),
};
