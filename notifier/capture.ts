import { randomBytes } from 'node:crypto';
import type { Broker } from '../core/broker.ts';
import { seal, type Binding, type RecipientKey } from '../core/envelope.ts';
import type { Logger } from '../core/log.ts';
import type { Secret } from '../core/secret.ts';
import type { ChangeHandler } from './hook-server.ts';
import { HookProtocolError, type HookChange } from './hook-protocol.ts';
import { deliverMsgId, deliverSubject, encodeQueuedChange } from './queued-change.ts';
import type { Scope } from './scope.ts';

/**
 * Capture → queue: a change from the hook is sealed at once for each enabled, in-scope target's
 * public key and published to that target's queue. The hook hears `ok` only after every publish
 * is durable; the publishes share one group commit. The password lives only in the Secret, which
 * is disposed once sealed.
 */

/** An enabled target, as capture needs it. Disabled targets are not handed in: they get nothing. */
export interface CaptureTarget {
  name: string;
  /** subjectToken(name) */
  token: string;
  recipient: RecipientKey;
}

export interface CaptureOptions {
  broker: Broker;
  targets: readonly CaptureTarget[];
  scope: Scope;
  /** This DC's domain: a change for another domain is refused. */
  domain: string;
  /** This DC's host name, bound into every envelope as the source host. */
  host: string;
  log: Logger;
  now?: () => number;
}

export function createCapture(opts: CaptureOptions): ChangeHandler {
  const now = opts.now ?? Date.now;
  return async (change: HookChange, password: Secret): Promise<string> => {
    try {
      const { account } = change;
      if (account.domain.toLowerCase() !== opts.domain.toLowerCase()) {
        throw new HookProtocolError(`the change is for domain ${account.domain}, but this notifier serves ${opts.domain} (notifier.domain): send the account's DNS domain name`);
      }
      const changeId = randomBytes(16);
      const id = changeId.toString('hex');
      const binding: Binding = {
        changeId, changeTime: change.changeTime ?? now(),
        domain: account.domain, samAccountName: account.samAccountName, objectGuid: account.objectGuid,
        objectSid: account.objectSid, upn: account.upn, dn: account.dn, sourceHost: opts.host,
      };
      const records: Array<{ target: CaptureTarget; data: Buffer }> = [];
      for (const target of opts.targets) {
        if (!(await opts.scope.includes(account, target.name))) continue;
        records.push({
          target,
          data: encodeQueuedChange({
            changeId, domain: binding.domain, sourceDc: binding.sourceHost,
            account: {
              samAccountName: account.samAccountName, objectGuid: account.objectGuid, objectSid: account.objectSid,
              userPrincipalName: account.upn, distinguishedName: account.dn,
            },
            changeTimeMs: binding.changeTime,
            sealedPassword: seal(target.recipient, binding, password),
          }),
        });
      }
      password.dispose();
      await Promise.all(records.map(({ target, data }) => opts.broker.publish(deliverSubject(target.token), data, { msgId: deliverMsgId(id, target.token) })));
      opts.log.info({
        changeId: id, domain: account.domain, account: account.samAccountName,
        targets: records.map((r) => r.target.name),
      }, records.length > 0 ? 'password change queued' : 'password change is in no target\'s scope; nothing queued');
      return id;
    } finally {
      password.dispose();
    }
  };
}
