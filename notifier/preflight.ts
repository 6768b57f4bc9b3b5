import type { ConfigIssue } from '../config/issues.ts';
import { issueAt, type LoadedNotifierConfig } from '../config/load.ts';
import { checkFile } from '../config/paths.ts';
import { describeError } from '../core/errors.ts';
import { targetRecipient } from './service.ts';

/**
 * What a notifier would refuse at start that its files tell (`pwsync config check`): a target's
 * publicKey that no change could be sealed for. Disabled targets are not opened, so not checked.
 */
export function notifierPreflightIssues(config: LoadedNotifierConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  config.targets.forEach((t, i) => {
    // A missing or unreadable file is reported by the loader already.
    if (!t.enabled || checkFile(t.publicKey, false)) return;
    try {
      targetRecipient(t);
    } catch (e) {
      issues.push(issueAt(config, ['targets', i, 'publicKey'], describeError(e), 'give the hub\'s public key (NAME.pub, written by `pwsync keys generate` on the hub)'));
    }
  });
  return issues;
}
