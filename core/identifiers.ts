/**
 * Account names, DNs, domains and host names are compared, joined and logged as text: a control
 * character in one (NUL, ESC, a line break) is never a real name, can cut a C string short, forge
 * a log line or hide part of a name on a terminal. The C0 range (U+0000–U+001F) and DEL (U+007F)
 * are refused wherever an identifier comes in: the notifier's hook and the hub's calls. The C1
 * range (U+0080–U+009F) is accepted, as AD accepts it: it ends no C string and breaks no line.
 */

const CONTROL = /[\u0000-\u001f\u007f]/;

/** `\u0000`-style escape of a character, safe to put in a message. */
export function escapeChar(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * The first identifier of `fields` (name → value) that holds a control character, described with
 * the character escaped and its position; undefined when every one is clean.
 */
export function controlCharacterIn(fields: Readonly<Record<string, string | undefined>>): string | undefined {
  for (const [name, value] of Object.entries(fields)) {
    if (!value) continue;
    const m = CONTROL.exec(value);
    if (m) return `${name} holds the control character ${escapeChar(m[0])} at position ${m.index}: names, DNs, domains and host names may not contain control characters (U+0000–U+001F, U+007F)`;
  }
  return undefined;
}
