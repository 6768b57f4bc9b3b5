import { bindingMismatch, open, type Keyring } from '../core/envelope.ts';
import { PwsyncError } from '../core/errors.ts';
import { operationId } from '../core/operation-id.ts';
import type { Secret } from '../core/secret.ts';
import { operationBinding } from '../connectors/remote/protocol.ts';
import type { OperationRecord } from '../hub/records.ts';

/**
 * Opens a password a hub re-sealed for this worker, and only if it is this connector's: the key
 * must be one of the worker's (else 6946), the operation id must be the one its change, this
 * connector and its object hash to, and the sealed header must name the same operation, connector,
 * object and account (else 6973). Neither is retried: a worker is never handed a password it can
 * use for another connector.
 */
export function openForWorker(op: OperationRecord, keyring: Keyring, connector: string): Secret {
  const opened = open(Buffer.from(op.envelope, 'base64'), keyring);
  const expected = operationId(op.changeId, connector, op.objectId);
  const field = op.opId !== expected ? 'operation id' : bindingMismatch(opened.header, operationBinding(op, connector, opened.header.sourceHost));
  if (field) {
    opened.password.dispose();
    throw new PwsyncError(6973, `operation ${op.opId} is not one of connector ${connector}'s: its ${field === 'domain' ? 'connector' : field === 'samAccountName' ? 'object' : field} differs from what was sealed`);
  }
  return opened.password;
}
