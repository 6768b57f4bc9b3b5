import {
  isAlias, isMap, isScalar, isSeq, Lexer, LineCounter, parseDocument, visit,
  type Document, type Node, type Pair, type YAMLError,
} from 'yaml';
import { pathText, type ConfigIssue, type ConfigPath } from './issues.ts';

export interface Position {
  readonly line: number;
  readonly column: number;
}

/** What an admin should do about each YAML syntax error (yaml's own text says what is wrong). */
const SYNTAX_FIXES: Readonly<Record<string, string>> = {
  BAD_INDENT: 'indent this line with the same number of spaces as the settings beside it',
  MULTILINE_IMPLICIT_KEY: 'this line is indented deeper than the setting above it: align it with its neighbours, or end the line above with `:` to nest it',
  BLOCK_AS_IMPLICIT_KEY: 'put the nested setting on its own line, indented under its parent, or quote the value if it contains `: `',
  TAB_AS_INDENT: 'indent with spaces; YAML does not allow tabs for indentation',
  DUPLICATE_KEY: 'remove one of the two settings with this name, or merge them',
  MULTIPLE_DOCS: 'keep one document per file: remove the `---` line and what follows, or move it to its own file',
  BAD_DQ_ESCAPE: 'in double quotes a backslash starts an escape: write `\\\\`, or use single quotes',
  UNEXPECTED_TOKEN: 'remove the stray character, or quote the value',
  BAD_SCALAR_START: 'quote the value: it starts with a character YAML reserves',
  BAD_ALIAS: 'define the anchor (`&name`) before the alias (`*name`) that uses it',
  TAG_RESOLVE_FAILED: 'remove the tag: pwsync\'s YAML uses none (a secret is written {fromFile: PATH} or {fromEnv: NAME})',
};
const QUOTE_FIX = 'close the quote on the same line, or remove it';
const DEFAULT_SYNTAX_FIX = 'fix the YAML syntax at this place (check indentation, colons and quotes)';

/**
 * A configuration file as YAML: its parsed document and a way to find where any setting is
 * written, so every problem can be reported as FILE:LINE:COLUMN.
 */
export class YamlSource {
  readonly lines = new LineCounter();
  readonly doc: Document;
  /** Where brackets nest deeper than MAX_FLOW_DEPTH; the file is then not parsed at all. */
  private readonly tooDeep: number | undefined;

  constructor(readonly file: string, readonly text: string) {
    this.tooDeep = flowTooDeep(text);
    if (this.tooDeep !== undefined) {
      // The parser recurses per bracket: a deep nest would take seconds and overflow the stack.
      this.doc = parseDocument('');
      this.lines.addNewLine(0);
      for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) this.lines.addNewLine(i + 1);
      return;
    }
    // `<<: *anchor` merges are allowed so that connectors can share settings. Keys are checked
    // unique below: yaml's own check compares every key with every other, minutes for a big map.
    this.doc = parseDocument(text, { lineCounter: this.lines, prettyErrors: false, merge: true, uniqueKeys: false });
  }

  /** Every syntax error (and warning: an unknown tag is not ignored), in admin language; empty when the file parsed. */
  syntaxIssues(): ConfigIssue[] {
    if (this.tooDeep !== undefined) {
      return [this.issue(this.position(this.tooDeep), [], `YAML syntax: brackets nest more than ${MAX_FLOW_DEPTH} deep`, 'write the lists and mappings out, one setting per line; pwsync\'s settings nest only a few levels')];
    }
    const errors: YAMLError[] = [...this.doc.errors, ...this.doc.warnings];
    const explained = errors.filter((e) => !(e.code === 'BLOCK_AS_IMPLICIT_KEY'
      && errors.some((o) => o.code === 'MULTILINE_IMPLICIT_KEY' && o.pos[0] === e.pos[0])));
    return [...explained.map((e) => this.syntaxIssue(e)), ...this.duplicateKeys()];
  }

  /** A key written twice in one mapping (the `<<` of a merge may repeat). */
  private duplicateKeys(): ConfigIssue[] {
    const issues: ConfigIssue[] = [];
    visit(this.doc, {
      Map: (_, map) => {
        const seen = new Map<string, number>();
        for (const pair of map.items) {
          if (!isScalar(pair.key) || pair.key.value === '<<' || !pair.key.range) continue;
          const key = String(pair.key.value);
          const first = seen.get(key);
          if (first === undefined) {
            seen.set(key, pair.key.range[0]);
            continue;
          }
          issues.push(this.issue(this.position(pair.key.range[0]), [], `YAML syntax: map keys must be unique; \`${key}\` is set already on line ${this.position(first).line}`, SYNTAX_FIXES['DUPLICATE_KEY']!));
        }
      },
    });
    return issues;
  }

  private syntaxIssue(e: YAMLError): ConfigIssue {
    if (e.code === 'MISSING_CHAR' && /quote/.test(e.message)) {
      const opening = this.openingQuote(e.pos[0], e.message.includes('"') ? '"' : '\'');
      return this.issue(this.position(opening ?? e.pos[0]), [], 'a quoted value is never closed', QUOTE_FIX);
    }
    // For a line indented too deep, the error starts at the line above; point at the line itself.
    const offset = e.code === 'MULTILINE_IMPLICIT_KEY' ? this.lineStartOf(e.pos[1]) : e.pos[0];
    const message = e.message.replace(/; please use YAML\.parseAllDocuments\(\)$/, '');
    return this.issue(this.position(offset), [], `YAML syntax: ${lowerFirst(message)}`, SYNTAX_FIXES[e.code] ?? DEFAULT_SYNTAX_FIX);
  }

  /** Where the unclosed quote that ends at `end` was opened (the last quoted token before it). */
  private openingQuote(end: number, quote: string): number | undefined {
    let offset = 0;
    let found: number | undefined;
    for (const token of new Lexer().lex(this.text)) {
      if (token.length === 1 && '\x02\x18\x1f'.includes(token)) continue;
      if (offset >= end) break;
      if (token.startsWith(quote)) found = offset;
      offset += token.length;
    }
    return found;
  }

  private lineStartOf(offset: number): number {
    return this.text.lastIndexOf('\n', Math.max(0, offset - 1)) + 1;
  }

  /** 1-based line and column of a character offset; leading spaces move to the first visible character. */
  position(offset: number): Position {
    let o = Math.min(Math.max(0, offset), this.text.length);
    while (o < this.text.length && this.text[o] === ' ') o++;
    if (o >= this.text.length || this.text[o] === '\n' || this.text[o] === '\r') o = Math.min(Math.max(0, offset), this.text.length);
    const { line, col } = this.lines.linePos(o);
    return { line: Math.max(1, line), column: Math.max(1, col) };
  }

  issue(at: Position, path: ConfigPath, message: string, fix: string): ConfigIssue {
    return { file: this.file, line: at.line, column: at.column, path: pathText(path), message, fix };
  }

  /** Where the value at `path` is written; for a value not written (a default), its nearest written parent. */
  valueAt(path: ConfigPath): Position {
    const { node, pair, depth } = this.walk(path);
    if (depth === path.length && node && !isEmptyScalar(node) && node.range) return this.position(node.range[0]);
    if (pair && isNode(pair.key) && pair.key.range) return this.position(pair.key.range[0]);
    if (node?.range) return this.position(node.range[0]);
    return { line: 1, column: 1 };
  }

  /** Where the key of the setting at `path` is written (the item itself for a list item). */
  keyAt(path: ConfigPath): Position {
    const { pair, depth } = this.walk(path);
    if (depth === path.length && pair && isNode(pair.key) && pair.key.range) return this.position(pair.key.range[0]);
    return this.valueAt(path);
  }

  /** Where a required setting that is missing at `path` belongs: the key of the mapping that lacks it. */
  missingAt(path: ConfigPath): Position {
    return this.keyAt(path.slice(0, -1));
  }

  /** A scalar exactly as written (`0600`, not the number 600), or undefined. */
  sourceText(path: ConfigPath): string | undefined {
    const node = this.nodeAt(path);
    return isScalar(node) && node.range ? this.text.slice(node.range[0], node.range[1]) : undefined;
  }

  /** The written node at `path`, or undefined. */
  nodeAt(path: ConfigPath): Node | undefined {
    const { node, depth } = this.walk(path);
    return depth === path.length ? node : undefined;
  }

  private walk(path: ConfigPath): { node: Node | undefined; pair: Pair | undefined; depth: number } {
    let node = this.deref(this.doc.contents);
    let pair: Pair | undefined;
    let depth = 0;
    for (const seg of path) {
      let next: Node | undefined;
      let nextPair: Pair | undefined;
      if (isMap(node)) {
        nextPair = node.items.find((p) => keyText(p.key) === String(seg));
        next = nextPair ? this.deref(nextPair.value) : undefined;
        if (nextPair && !next) return { node: undefined, pair: nextPair, depth: depth + 1 };
      } else if (isSeq(node) && typeof seg === 'number') {
        next = this.deref(node.items[seg]);
      }
      if (!next) break;
      node = next;
      pair = nextPair;
      depth++;
    }
    return { node: node ?? undefined, pair, depth };
  }

  private deref(v: unknown): Node | undefined {
    if (isAlias(v)) return this.deref(v.resolve(this.doc));
    return isNode(v) ? v : undefined;
  }
}

/** Deeper than any pwsync setting nests, far below where the parser's recursion hurts. */
const MAX_FLOW_DEPTH = 64;

/** The offset of the first `[` or `{` nested deeper than MAX_FLOW_DEPTH, if any (quoted text does not count). */
function flowTooDeep(text: string): number | undefined {
  let depth = 0;
  let offset = 0;
  for (const token of new Lexer().lex(text)) {
    if (token === '[' || token === '{') {
      if (++depth > MAX_FLOW_DEPTH) return offset;
    } else if (token === ']' || token === '}') {
      depth = Math.max(0, depth - 1);
    }
    // The lexer's control tokens (document, flow, scalar markers) take no room in the text.
    if (!(token.length === 1 && '\x02\x18\x1f'.includes(token))) offset += token.length;
  }
  return undefined;
}

function isNode(v: unknown): v is Node {
  return isScalar(v) || isMap(v) || isSeq(v) || isAlias(v);
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  return typeof key === 'string' ? key : undefined;
}

/** `key:` with nothing after it: yaml places the empty value at the end of the line. */
function isEmptyScalar(n: Node): boolean {
  return isScalar(n) && n.value === null && n.range !== undefined && n.range !== null && n.range[0] === n.range[1];
}

function lowerFirst(s: string): string {
  return s.length > 0 ? s[0]!.toLowerCase() + s.slice(1) : s;
}
