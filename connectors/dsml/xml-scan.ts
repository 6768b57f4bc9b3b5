/**
 * Where each element of an XML text starts and ends. fast-xml-parser gives values but no
 * positions; with positions a commit rewrites only the elements it changed and leaves every other
 * byte of the file as the admin wrote it. Runs on text the validator already accepted.
 */
export interface XmlElement {
  /** The namespace prefix with its colon (`dsml:`), or ''. */
  readonly prefix: string;
  readonly local: string;
  readonly depth: number;
  /** Index of the parent element in the scan's list, -1 for the root. */
  readonly parent: number;
  /** Index of the start tag's '<', and one past its '>'. */
  readonly start: number;
  readonly openEnd: number;
  readonly selfClosing: boolean;
  /** Index of the end tag's '<' (openEnd when self-closing), and one past the element. */
  closeStart: number;
  end: number;
}

export function scanElements(xml: string): XmlElement[] {
  const elements: XmlElement[] = [];
  const open: number[] = [];
  const skip = (from: number, terminator: string): number => {
    const at = xml.indexOf(terminator, from);
    if (at < 0) throw new Error(`unterminated markup at offset ${from}`);
    return at + terminator.length;
  };
  let i = xml.indexOf('<');
  while (i >= 0) {
    if (xml.startsWith('<!--', i)) i = skip(i + 4, '-->');
    else if (xml.startsWith('<![CDATA[', i)) i = skip(i + 9, ']]>');
    else if (xml.startsWith('<?', i)) i = skip(i + 2, '?>');
    else if (xml.startsWith('<!', i)) i = skipDeclaration(xml, i);
    else if (xml.startsWith('</', i)) {
      const end = skip(i + 2, '>');
      const at = open.pop();
      const element = at === undefined ? undefined : elements[at];
      if (!element) throw new Error(`end tag without a start tag at offset ${i}`);
      element.closeStart = i;
      element.end = end;
      i = end;
    } else {
      const end = startTagEnd(xml, i);
      const name = /^<([^\s/>]+)/.exec(xml.slice(i, end))![1]!;
      const colon = name.indexOf(':');
      const selfClosing = xml[end - 2] === '/';
      const element: XmlElement = {
        prefix: colon < 0 ? '' : name.slice(0, colon + 1),
        local: colon < 0 ? name : name.slice(colon + 1),
        depth: open.length, parent: open.at(-1) ?? -1, start: i, openEnd: end, selfClosing,
        closeStart: end, end,
      };
      elements.push(element);
      if (!selfClosing) open.push(elements.length - 1);
      i = end;
    }
    i = xml.indexOf('<', i);
  }
  return elements;
}

/** One past the '>' that ends the start tag at `i`; a '>' inside a quoted attribute value does not. */
function startTagEnd(xml: string, i: number): number {
  let quote = '';
  for (let j = i + 1; j < xml.length; j++) {
    const c = xml[j]!;
    if (quote) {
      if (c === quote) quote = '';
    } else if (c === '"' || c === '\'') quote = c;
    else if (c === '>') return j + 1;
  }
  throw new Error(`unterminated start tag at offset ${i}`);
}

/** A <!DOCTYPE …> with an optional [internal subset]. */
function skipDeclaration(xml: string, i: number): number {
  let depth = 0;
  for (let j = i + 2; j < xml.length; j++) {
    const c = xml[j]!;
    if (c === '[') depth++;
    else if (c === ']') depth--;
    else if (c === '>' && depth === 0) return j + 1;
  }
  throw new Error(`unterminated declaration at offset ${i}`);
}

/** The attributes written in a start tag, values as written (entities not expanded). */
export function tagAttributes(tag: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of tag.matchAll(/\s([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) out.set(m[1]!, m[2] ?? m[3] ?? '');
  return out;
}
