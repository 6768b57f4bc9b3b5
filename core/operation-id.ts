import { createHash } from 'node:crypto';

/**
 * Same change, same connector, same object: same operation id, so a re-resolved change (after a
 * crash or a retry) publishes nothing new, and a connector worker can recompute the id of an
 * operation it is given from the change, its own connector and the object.
 */
export function operationId(changeId: string, connector: string, objectId: string): string {
  return createHash('sha256').update(`${changeId}\0${connector}\0${objectId}`).digest('hex').slice(0, 32);
}
