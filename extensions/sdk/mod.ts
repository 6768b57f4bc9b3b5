/**
 * The public entry for password extension authors (`import … from 'pwsync/extension'`).
 * Everything an extension needs, and nothing of pwsync's internals.
 */
export { Secret } from '../../core/secret.ts';
export {
  ObjectNotFoundError, PolicyViolationError, TargetUnavailableError, UnsupportedOperationError,
} from '../../core/extension.ts';
export type {
  AccountRef, ExtensionConnection, ExtensionEnv, ExtensionFactory, OperationContext,
  PasswordExtension, RecordSet, TargetObject,
} from '../../core/extension.ts';

import type { ExtensionFactory } from '../../core/extension.ts';

/** Identity helper that gives an extension's default export its type. */
export function defineExtension(factory: ExtensionFactory): ExtensionFactory {
  return factory;
}
