import { CsvError, parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import type { ConnectorKind } from '../contract.ts';
import type { DelimitedSettings } from '../kinds-schema.ts';
import {
  cannotHold, RecordFileFormatError, type ParsedRecord, type RecordCodec, type RecordDocument,
} from './codec.ts';
import { RecordFileConnector } from './record-file.ts';

/**
 * A delimited text file (CSV): the header line names the attributes, in column order. Each record
 * keeps its exact bytes (quoting, spacing, line ending) until a value in it is set; then only that
 * record is written again, with the file's delimiter and quote.
 */
export function delimitedCodec(settings: { delimiter: string; quote: string }): RecordCodec {
  return (text, location) => {
    // csv-parse reports offsets in UTF-8 bytes, so records are cut from the same bytes it read.
    const bytes = Buffer.from(text, 'utf8');
    let rows: Array<{ record: string[]; info: { bytes: number; lines: number } }>;
    try {
      rows = parse(bytes, {
        delimiter: settings.delimiter, quote: settings.quote, escape: settings.quote,
        info: true, skip_empty_lines: true, relax_quotes: false, relax_column_count: false,
      }) as unknown as typeof rows;
    } catch (e) {
      const line = e instanceof CsvError ? Number((e as unknown as { lines?: number }).lines ?? 0) : 0;
      throw new RecordFileFormatError(location, line, `not a valid delimited file: ${(e as Error).message}; check \`connection.delimiter\` and \`connection.quote\``, { cause: e });
    }
    const header = rows.shift();
    if (!header) throw new RecordFileFormatError(location, 1, 'the file is empty: the first line must be a header naming the columns');
    const columns = header.record;
    const dup = columns.find((c, i) => c === '' || columns.indexOf(c) !== i);
    if (dup !== undefined) {
      throw new RecordFileFormatError(location, 1, dup === '' ? 'the header has an empty column name: name every column' : `the header names column ${JSON.stringify(dup)} twice: column names must be unique`);
    }

    // Segment i is the bytes of record i: leading blank lines, the record, its line ending.
    const segments: string[] = [];
    let offset = header.info.bytes;
    const prefix = bytes.subarray(0, offset).toString('utf8');
    const records: ParsedRecord[] = rows.map((row) => {
      segments.push(bytes.subarray(offset, row.info.bytes).toString('utf8'));
      offset = row.info.bytes;
      const attributes: Record<string, string> = {};
      columns.forEach((c, i) => { attributes[c] = row.record[i] ?? ''; });
      const lead = /^[\r\n]*/.exec(segments.at(-1)!)![0];
      const body = segments.at(-1)!.slice(lead.length);
      return { attributes, line: row.info.lines - lineBreaks(body.replace(/(\r\n|\n|\r)$/, '')) };
    });
    const suffix = bytes.subarray(offset).toString('utf8');

    const doc: RecordDocument = {
      records,
      attributeNames: columns,
      ignoreNameCase: false,
      check(_index, attribute) {
        if (!columns.includes(attribute)) {
          throw cannotHold(location, `no column ${JSON.stringify(attribute)} in the header (columns: ${columns.join(', ')}): add the column to the file or fix the extension's attribute setting`);
        }
      },
      render(changes) {
        let out = prefix;
        segments.forEach((segment, i) => {
          const change = changes.get(i);
          if (!change) {
            out += segment;
            return;
          }
          const lead = /^[\r\n]*/.exec(segment)![0];
          const eol = /(\r\n|\n|\r)$/.exec(segment)?.[0] ?? '';
          const row = columns.map((c) => change.get(c) ?? records[i]!.attributes[c] ?? '');
          out += lead + stringify([row], { delimiter: settings.delimiter, quote: settings.quote, escape: settings.quote, eof: false }) + eol;
        });
        return out + suffix;
      },
    };
    return doc;
  };
}

function lineBreaks(s: string): number {
  return s.match(/\r\n|\n|\r/g)?.length ?? 0;
}

export const delimitedKind: ConnectorKind<DelimitedSettings> = {
  kind: 'delimited',
  description: 'A delimited text file (CSV) with a header line naming the attributes.',
  create: (name, settings, env) => new RecordFileConnector({
    name, kind: 'delimited', path: env.resolvePath(settings.path), encoding: settings.encoding,
    anchor: settings.anchor, codec: delimitedCodec(settings),
  }),
};
