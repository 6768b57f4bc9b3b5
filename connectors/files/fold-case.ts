/**
 * Case folding for joins that ignore case. Every comparison folds both sides with this one
 * function, so a value found by `find` is found the same way by every index. `toLowerCase` is the
 * locale-independent Unicode mapping (never Turkish dotless i rules).
 */
export function foldCase(s: string): string {
  return s.normalize('NFC').toLowerCase();
}
