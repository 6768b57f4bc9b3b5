import { isUtf8 } from 'node:buffer';

/**
 * protobufjs reads a `string` field leniently: invalid UTF-8 becomes U+FFFD, so two different
 * byte strings can decode to the same text, and an account field could match a sealed header it
 * does not equal byte for byte. This pass walks the wire bytes with the message descriptors and
 * names every string field that is not valid UTF-8, so such a field is refused instead.
 */

/** What proto-loader gives per message type: its DescriptorProto, fields only. */
interface FieldDescriptor {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
}
export interface MessageDescriptor {
  field: FieldDescriptor[];
}

/**
 * A string field whose bytes are not UTF-8, by proto path (`changes[2].account.sam_account_name`);
 * `item` is its index in the top-level repeated field it sits in (`top`), if that field repeats.
 */
export interface InvalidUtf8 {
  path: string;
  top: string;
  item?: number;
}

const snake = (s: string): string => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

export class Utf8Checker {
  /** Per message type, its fields by number. */
  private readonly types: ReadonlyMap<string, ReadonlyMap<number, FieldDescriptor>>;

  /** `types`: full name (pwsync.v1.Account) → descriptor; `pkg` resolves relative type names. */
  constructor(types: ReadonlyMap<string, MessageDescriptor>, private readonly pkg: string) {
    this.types = new Map([...types].map(([name, t]) => [name, new Map(t.field.map((f) => [f.number, f]))]));
  }

  /**
   * Every invalid string field of a message of `typeName` in `bytes`. Call it on bytes protobufjs
   * has already decoded: a structure it cannot follow (groups, truncation) stops the walk.
   */
  check(bytes: Buffer, typeName: string): InvalidUtf8[] {
    const out: InvalidUtf8[] = [];
    this.walk(bytes, typeName, '', undefined, out);
    return out;
  }

  private walk(bytes: Buffer, typeName: string, prefix: string, top: Omit<InvalidUtf8, 'path'> | undefined, out: InvalidUtf8[]): void {
    const fields = this.types.get(typeName);
    if (!fields) return;
    const counts = new Map<number, number>();
    let at = 0;
    while (at < bytes.length) {
      const tag = varint(bytes, at);
      if (!tag) return;
      at = tag.next;
      const wire = tag.value % 8;
      let body: Buffer | undefined;
      if (wire === 0) {
        const v = varint(bytes, at);
        if (!v) return;
        at = v.next;
      } else if (wire === 1) at += 8;
      else if (wire === 5) at += 4;
      else if (wire === 2) {
        const len = varint(bytes, at);
        if (!len || len.next + len.value > bytes.length) return;
        body = bytes.subarray(len.next, len.next + len.value);
        at = len.next + len.value;
      } else return;
      const f = fields.get(Math.floor(tag.value / 8));
      if (!f || !body) continue;
      const repeated = f.label === 'LABEL_REPEATED';
      const index = counts.get(f.number) ?? 0;
      counts.set(f.number, index + 1);
      const name = snake(f.name);
      const path = `${prefix}${name}${repeated ? `[${index}]` : ''}`;
      const within = top ?? { top: name, ...(repeated ? { item: index } : {}) };
      if (f.type === 'TYPE_STRING' && !isUtf8(body)) out.push({ path, ...within });
      else if (f.type === 'TYPE_MESSAGE') this.walk(body, this.resolve(f.typeName), `${path}.`, within, out);
    }
  }

  private resolve(typeName: string): string {
    return typeName.startsWith('.') ? typeName.slice(1) : `${this.pkg}.${typeName}`;
  }
}

/** A varint as a Number: tags and lengths fit; a longer one (a 64-bit value) is only skipped. */
function varint(b: Buffer, at: number): { value: number; next: number } | undefined {
  let value = 0;
  for (let i = at, scale = 1; i < b.length && i < at + 10; i++, scale *= 128) {
    value += (b[i]! & 0x7f) * scale;
    if ((b[i]! & 0x80) === 0) return { value, next: i + 1 };
  }
  return undefined;
}
