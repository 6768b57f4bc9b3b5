// npm drops an optional dependency that fails to build without a word, and `npm rebuild` cannot
// bring it back afterwards. Say so here, once, instead of at the first Kerberos call.
import { createRequire } from 'node:module';

try {
  createRequire(import.meta.url)('kerberos');
} catch {
  process.stderr.write(
    'pwsync: the optional `kerberos` module was not built (its build needs libkrb5-dev).\n'
    + '  Kerberos authentication between notifier and hub stays unavailable until you run, as root:\n'
    + '    apt-get install -y --no-install-recommends libkrb5-dev g++ make python3 && npm install\n'
    + '  (`npm rebuild` is not enough: npm removed the module.) `npm test` does this by itself.\n',
  );
}
