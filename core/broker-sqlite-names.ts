/**
 * The naming rules JetStream enforces, checked here too so that code written against the embedded
 * broker does not break when it moves to NATS.
 */

const TOKEN = /^[^\s.*>]+$/;

/** A concrete subject: dot-separated, non-empty tokens, no wildcards. */
export function checkSubject(subject: string): void {
  if (typeof subject !== 'string' || !subject.split('.').every((t) => TOKEN.test(t))) {
    throw new TypeError(`subject ${JSON.stringify(subject)} is invalid: use dot-separated non-empty tokens ` +
      'without spaces or wildcards (* and > belong in consumer filters); subjectToken() makes a name safe');
  }
}

/** A filter: like a subject, where a whole token may be `*`, and the last may be `>`. */
export function checkFilter(filter: string): void {
  const tokens = typeof filter === 'string' ? filter.split('.') : [''];
  const ok = tokens.every((t, i) => TOKEN.test(t) || t === '*' || (t === '>' && i === tokens.length - 1));
  if (!ok) {
    throw new TypeError(`filter subject ${JSON.stringify(filter)} is invalid: use dot-separated tokens, ` +
      '`*` as a whole token for one token, `>` as the last token for one or more');
  }
}

/** A durable consumer name: no dots, wildcards or spaces. */
export function checkDurableName(name: string): void {
  if (typeof name !== 'string' || !TOKEN.test(name)) {
    throw new TypeError(`durable consumer name ${JSON.stringify(name)} is invalid: ` +
      'use a non-empty name without dots, spaces, * or >');
  }
}
