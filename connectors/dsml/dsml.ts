import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser';
import type { ConnectorKind } from '../contract.ts';
import type { DsmlSettings } from '../kinds-schema.ts';
import {
  attributeName, cannotHold, collectNames, RecordFileFormatError,
  type ParsedRecord, type RecordCodec, type RecordDocument,
} from '../files/codec.ts';
import { ATTRIBUTE_DESCRIPTION } from '../files/ldif-syntax.ts';
import { RecordFileConnector } from '../files/record-file.ts';
import { scanElements, tagAttributes, type XmlElement } from './xml-scan.ts';

export const DSML_NAMESPACE = 'urn:oasis:names:tc:DSML:2:0:core';

/**
 * A DSML v2 file: `batchResponse` → `searchResponse` → `searchResultEntry dn=…` → `attr name=…` →
 * `value`, in the DSML core namespace, with or without a prefix (`dsml:`). The DN is the `dn`
 * attribute; names ignore case, as in LDAP; a multi-valued attribute shows its first value. A
 * commit replaces only the `attr` elements it sets (built with XMLBuilder, values XML-escaped).
 */

interface RawValue { '#text'?: string; '@_type'?: string }
interface RawAttr { '@_name'?: string; value?: Array<string | RawValue> }
interface RawEntry { '@_dn'?: string; attr?: RawAttr[] }

const PARSE_OPTIONS = {
  ignoreAttributes: false, attributeNamePrefix: '@_', removeNSPrefix: true,
  parseTagValue: false, parseAttributeValue: false, trimValues: false,
  ignoreDeclaration: true, ignorePiTags: true,
  isArray: (name: string) => name === 'searchResponse' || name === 'searchResultEntry' || name === 'attr' || name === 'value',
};
// htmlEntities adds character references (&#233;) to the five named entities. Entity decoding
// costs the parser a third of its time, so a file without any '&' is parsed without it.
const parser = new XMLParser({ ...PARSE_OPTIONS, processEntities: true, htmlEntities: true });
const parserWithoutEntities = new XMLParser({ ...PARSE_OPTIONS, processEntities: false });

const builder = new XMLBuilder({
  ignoreAttributes: false, attributeNamePrefix: '@_', format: false, suppressEmptyNode: false, processEntities: true,
});

/** Characters XML 1.0 cannot carry (a CR would come back as LF). */
const NOT_IN_XML = /[\u0000-\u0008\u000B\u000C\u000D\u000E-\u001F\uFFFE\uFFFF]/;

export const dsmlCodec: RecordCodec = (text, location) => {
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    throw new RecordFileFormatError(location, valid.err.line, `not well-formed XML: ${valid.err.msg}`);
  }
  const declared = /^\s*<\?xml[^>]*\bencoding\s*=\s*["']([^"']+)["']/.exec(text)?.[1];
  if (declared && !/^utf-?8$/i.test(declared)) {
    throw new RecordFileFormatError(location, 1, `the file declares encoding ${declared}: a DSML connector reads UTF-8; convert the file`);
  }
  const elements = scanElements(text);
  const lineAt = lineIndex(text);
  const root = elements[0];
  if (!root || (root.local !== 'batchResponse' && root.local !== 'searchResponse')) {
    throw new RecordFileFormatError(location, 1, `the root element is ${root ? `<${root.prefix}${root.local}>` : 'missing'}: a DSML v2 file starts with <batchResponse xmlns="${DSML_NAMESPACE}">`);
  }
  const namespace = tagAttributes(text.slice(root.start, root.openEnd)).get(root.prefix ? `xmlns:${root.prefix.slice(0, -1)}` : 'xmlns');
  if (namespace !== undefined && namespace !== DSML_NAMESPACE) {
    throw new RecordFileFormatError(location, lineAt(root.start), `the root element's namespace is ${namespace}, not DSML v2's ${DSML_NAMESPACE}`);
  }

  const doc = (text.includes('&') ? parser : parserWithoutEntities).parse(text) as Record<string, unknown>;
  const responses = (root.local === 'batchResponse'
    ? asObject(doc.batchResponse)?.searchResponse
    : doc.searchResponse) as unknown[] | undefined;
  const rawEntries = (responses ?? []).flatMap((r) => (asObject(r)?.searchResultEntry as RawEntry[] | undefined) ?? []);
  const entryElements = elements.filter((e) => e.local === 'searchResultEntry');
  const attrsOf = new Map<XmlElement, XmlElement[]>();
  for (const e of elements) {
    const parent = elements[e.parent];
    if (e.local !== 'attr' || parent?.local !== 'searchResultEntry') continue;
    const list = attrsOf.get(parent);
    if (list) list.push(e);
    else attrsOf.set(parent, [e]);
  }
  if (entryElements.length !== rawEntries.length) {
    throw new RecordFileFormatError(location, 1, 'searchResultEntry elements outside batchResponse/searchResponse: this is not a DSML v2 search response');
  }

  const records: ParsedRecord[] = [];
  const attrElements: XmlElement[][] = [];
  const attrNames: string[][] = [];
  rawEntries.forEach((entry, i) => {
    const at = entryElements[i]!;
    const line = lineAt(at.start);
    const dn = asObject(entry)?.['@_dn'];
    if (typeof dn !== 'string') throw new RecordFileFormatError(location, line, 'a searchResultEntry without a dn attribute');
    const attrs = asObject(entry)?.attr as RawAttr[] | undefined ?? [];
    const children = attrsOf.get(at) ?? [];
    if (children.length !== attrs.length) throw new RecordFileFormatError(location, line, 'could not match the attr elements of this entry');
    const attributes: Record<string, string> = { dn };
    const names = attrs.map((a, k) => {
      const name = a['@_name'];
      if (typeof name !== 'string' || name === '') {
        throw new RecordFileFormatError(location, lineAt(children[k]!.start), 'an attr element without a name');
      }
      const value = firstValue(a.value ?? []);
      const key = attributeName(attributes, name, true);
      if (value !== undefined && !Object.hasOwn(attributes, key)) attributes[key] = value;
      return name;
    });
    records.push({ attributes, line });
    attrElements.push(children);
    attrNames.push(names);
  });

  const result: RecordDocument = {
    records,
    attributeNames: collectNames(records, true),
    ignoreNameCase: true,
    check(_index, attribute, value) {
      if (!ATTRIBUTE_DESCRIPTION.test(attribute) || attribute.toLowerCase() === 'dn') {
        throw cannotHold(location, `${JSON.stringify(attribute)} is not an LDAP attribute name: fix the extension's attribute setting`);
      }
      if (NOT_IN_XML.test(value)) {
        throw cannotHold(location, `attribute ${attribute}: the value has a control character (or a carriage return) that XML 1.0 cannot carry`);
      }
    },
    render(changes) {
      // Edits as [from, to, replacement], applied back to front so earlier offsets stay valid.
      const edits: Array<[number, number, string]> = [];
      changes.forEach((change, i) => {
        const entry = entryElements[i]!;
        const children = attrElements[i]!;
        const wanted = new Map([...change].map(([name, value]) => [name.toLowerCase(), { name, value }]));
        const written = new Set<string>();
        children.forEach((child, k) => {
          const key = attrNames[i]![k]!.toLowerCase();
          const w = wanted.get(key);
          if (!w) return;
          if (written.has(key)) {
            const from = child.start - /\s*$/.exec(text.slice(entry.openEnd, child.start))![0].length;
            edits.push([from, child.end, '']);
          } else {
            edits.push([child.start, child.end, attrXml(entry.prefix, attrNames[i]![k]!, w.value)]);
            written.add(key);
          }
        });
        const added = [...wanted].filter(([key]) => !written.has(key)).map(([, w]) => attrXml(entry.prefix, w.name, w.value));
        if (added.length === 0) return;
        const indent = indentOf(text, entry.start) ?? '';
        // An entry written on one line gets its new attr on that line; else one per line, indented alike.
        const childIndent = children.length > 0 ? indentOf(text, children.at(-1)!.start) : `${indent}  `;
        const lines = added.map((xml) => (childIndent === undefined ? xml : `\n${childIndent}${xml}`)).join('');
        if (entry.selfClosing) {
          edits.push([entry.openEnd - 2, entry.openEnd, `>${lines}\n${indent}</${entry.prefix}searchResultEntry>`]);
        } else {
          const insertAt = children.length > 0 ? children.at(-1)!.end : entry.openEnd;
          edits.push([insertAt, insertAt, lines]);
        }
      });
      edits.sort((a, b) => b[0] - a[0] || b[1] - a[1]);
      let out = text;
      for (const [from, to, replacement] of edits) out = out.slice(0, from) + replacement + out.slice(to);
      return out;
    },
  };
  return result;
};

function attrXml(prefix: string, name: string, value: string): string {
  return builder.build({ [`${prefix}attr`]: { '@_name': name, [`${prefix}value`]: value } }) as string;
}

/** The first value that is text; a base64Binary value that is not UTF-8 (a photo) is skipped. */
function firstValue(values: ReadonlyArray<string | RawValue>): string | undefined {
  for (const v of values) {
    if (typeof v === 'string') return v;
    const text = v['#text'] ?? '';
    if (!v['@_type']?.endsWith('base64Binary')) return text;
    try {
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(Buffer.from(text.replace(/\s+/g, ''), 'base64'));
    } catch {
      continue;
    }
  }
  return undefined;
}

function asObject(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null ? v as Record<string, unknown> : undefined;
}

/** Line numbers for offsets: the offsets where lines start, searched by bisection. */
function lineIndex(text: string): (offset: number) => number {
  const starts = [0];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return (offset) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
}

/** The spaces or tabs before the tag at `offset` (its indentation); undefined when it does not start its line. */
function indentOf(text: string, offset: number): string | undefined {
  const before = text.slice(text.lastIndexOf('\n', offset - 1) + 1, offset);
  return /^[ \t]*$/.test(before) ? before : undefined;
}

export const dsmlKind: ConnectorKind<DsmlSettings> = {
  kind: 'dsml',
  description: 'A DSML v2 file (batchResponse/searchResponse entries); the anchor is the DN unless set.',
  create: (name, settings, env) => new RecordFileConnector({
    name, kind: 'dsml', path: env.resolvePath(settings.path), encoding: 'utf8',
    anchor: settings.anchor, codec: dsmlCodec,
  }),
};
