import assert from 'node:assert/strict';
import { test } from 'node:test';
import { controlCharacterIn } from '../../core/identifiers.ts';

test('every C0 control character and DEL is refused, named as an escape with its position', () => {
  for (const code of [...Array.from({ length: 0x20 }, (_, i) => i), 0x7f]) {
    const escape = `\\u${code.toString(16).padStart(4, '0')}`;
    const problem = controlCharacterIn({ samAccountName: `ab${String.fromCharCode(code)}c` });
    assert.ok(problem, `U+${code.toString(16)} refused`);
    assert.ok(problem.startsWith(`samAccountName holds the control character ${escape} at position 2:`), problem);
    assert.ok(!/[\u0000-\u001f\u007f]/.test(problem), 'the message holds no control character itself');
  }
});

test('printable ASCII, C1, accents, CJK and non-BMP characters pass; empty and absent fields are skipped', () => {
  const printable = Array.from({ length: 0x7f - 0x20 }, (_, i) => String.fromCharCode(0x20 + i)).join('');
  const c1 = Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(0x80 + i)).join('');
  assert.equal(controlCharacterIn({ a: printable, b: c1, c: 'Jürgen 名前 😀', d: '', e: undefined }), undefined);
});

test('the first field holding one is named', () => {
  assert.match(controlCharacterIn({ domain: 'corp.example', dn: 'CN=x\u0000', upn: '\n' })!, /^dn holds the control character \\u0000 at position 4/);
});
