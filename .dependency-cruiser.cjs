// The folder rules of ARCHITECTURE.md ("a file's folder says who may use it"), checked by `npm test`.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'core-imports-nothing-of-ours',
      comment: 'core/ is what everything shares: it imports no other folder of the project',
      severity: 'error',
      from: { path: '^core/' },
      to: { path: '^(proto|config|notifier|hub|worker|connectors|extensions|cli|bench|test)/' },
    },
    {
      name: 'connectors-import-core-only',
      comment: 'a connector kind depends on core/ and on connectors/ alone',
      severity: 'error',
      from: { path: '^connectors/' },
      to: { path: '^(proto|config|notifier|hub|worker|extensions|cli|bench|test)/' },
    },
    {
      name: 'extensions-import-core-only',
      comment: 'the extension SDK, its loader and the built-in extensions depend on core/ alone',
      severity: 'error',
      from: { path: '^extensions/' },
      to: { path: '^(proto|config|notifier|hub|worker|connectors|cli|bench|test)/' },
    },
    {
      name: 'hub-and-notifier-apart',
      comment: 'the hub and the notifier never import each other',
      severity: 'error',
      from: { path: '^hub/' },
      to: { path: '^notifier/' },
    },
    {
      name: 'notifier-and-hub-apart',
      comment: 'the hub and the notifier never import each other',
      severity: 'error',
      from: { path: '^notifier/' },
      to: { path: '^hub/' },
    },
    {
      name: 'no-cycles',
      comment: 'two modules that import each other are one module: merge them or move what both need',
      severity: 'error',
      from: { path: '^(core|proto|config|notifier|hub|worker|connectors|extensions|cli)/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|proto/generated)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.mjs', '.js'] },
  },
};
