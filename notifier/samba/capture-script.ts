import { createHash } from 'node:crypto';
import { recipientFromPem, seal, type Binding, type RecipientKey } from '../../core/envelope.ts';
import type { AccountRef } from '../../core/extension.ts';
import type { SealedCapture } from '../hook-protocol.ts';
import { sendSealedChange } from '../hook-client.ts';
import { readCaptureConfig, type CaptureScriptConfig } from './capture-config.ts';
import { parseSyncLdif, type SyncObject } from './ldif.ts';

/**
 * The `--script` of `samba-tool user syncpasswords`: called once per changed object, after the
 * commit, with the object's LDIF on stdin (its new password decrypted from Samba's GPG blob). It
 * seals the password at once for every hub key, hands the envelopes to the notifier's hook socket
 * and answers `DONE-EXIT:` only when the notifier has made the change durable. Anything else is a
 * failure: a message on stderr and a non-zero exit, so syncpasswords exits without moving its
 * cursor and, restarted by the supervisor, hands the same change again (at-least-once). The change
 * id is derived from (objectGUID, msDS-KeyVersionNumber), so a replay has the same id everywhere.
 *
 * syncpasswords reads stdout and stderr together and requires the reply to START with
 * "DONE-EXIT: ", so nothing is written before it. Nothing written here ever holds the password.
 */

/** Set by the supervisor for the first run's baseline pass: record versions, send nothing. */
export const BASELINE_ENV = 'PWSYNC_SAMBA_BASELINE';
const MAX_INPUT_BYTES = 1024 * 1024;
/** Windows FILETIME (100 ns since 1601-01-01) → ms since the epoch. */
const FILETIME_EPOCH_MS = 11_644_473_600_000n;

export type Outcome = { done: string } | { error: string };

export async function runCaptureScript(configFile: string, input: Buffer, env: NodeJS.ProcessEnv): Promise<Outcome> {
  let obj: SyncObject;
  try {
    obj = parseSyncLdif(input);
  } catch (e) {
    return { error: `the LDIF from syncpasswords cannot be read: ${(e as Error).message}` };
  }
  const { password } = obj;
  if (!password) return { done: 'no password (not a password change, or set before the GPG key was configured)' };
  try {
    const config = readCaptureConfig(configFile);
    const baseline = env[BASELINE_ENV] === '1';
    const change = sealedChange(obj, config, baseline);
    if (!baseline) change.envelopes = distinctKeys(config).map((key) => seal(key, bindingOf(change, config), password));
    password.dispose();
    const { changeId } = await sendSealedChange(config.hookSocket, change, config.timeoutMs);
    return { done: `${baseline ? 'baseline recorded' : 'queued'} ${change.account.samAccountName} ${changeId}` };
  } catch (e) {
    return { error: (e as Error).message };
  } finally {
    password.dispose();
  }
}

function attr(obj: SyncObject, name: string): string {
  return obj.attrs.get(name.toLowerCase()) ?? '';
}

function sealedChange(obj: SyncObject, config: CaptureScriptConfig, baseline: boolean): SealedCapture {
  const objectGuid = attr(obj, 'objectGUID');
  const samAccountName = attr(obj, 'sAMAccountName');
  if (!objectGuid || !samAccountName) throw new Error(`the object ${obj.dn} lacks objectGUID or sAMAccountName: initialise syncpasswords with --attributes=objectGUID,sAMAccountName,…`);
  const kvnoText = attr(obj, 'msDS-KeyVersionNumber');
  const kvno = /^\d+$/.test(kvnoText) ? Number(kvnoText) : undefined;
  const pwdLastSet = attr(obj, 'pwdLastSet');
  const account: AccountRef = {
    domain: config.domain, samAccountName, objectGuid, objectSid: attr(obj, 'objectSid'),
    upn: attr(obj, 'userPrincipalName'), dn: obj.dn,
  };
  const changeId = sambaChangeId(objectGuid, kvno ?? `pwdLastSet=${pwdLastSet}`);
  return {
    account, changeTime: changeTimeOf(pwdLastSet), changeId,
    ...(kvno === undefined ? {} : { version: { objectGuid, kvno } }),
    ...(baseline ? { baseline: true } : {}),
    envelopes: [],
  };
}

/** The same password version always gets the same id: (objectGUID, kvno), or pwdLastSet without a kvno. */
export function sambaChangeId(objectGuid: string, version: number | string): Buffer {
  return createHash('sha256').update(`pwsync/samba/v1\0${objectGuid.toLowerCase()}\0${version}`).digest().subarray(0, 16);
}

/** pwdLastSet is when the password was committed; 0 (must change at next logon) has no time: now. */
function changeTimeOf(pwdLastSet: string): number {
  if (!/^\d+$/.test(pwdLastSet) || pwdLastSet === '0') return Date.now();
  const ms = BigInt(pwdLastSet) / 10_000n - FILETIME_EPOCH_MS;
  return ms > 0n && ms < BigInt(Number.MAX_SAFE_INTEGER) ? Number(ms) : Date.now();
}

function bindingOf(change: SealedCapture, config: CaptureScriptConfig): Binding {
  const a = change.account;
  return {
    changeId: change.changeId, changeTime: change.changeTime, domain: a.domain, samAccountName: a.samAccountName,
    objectGuid: a.objectGuid, objectSid: a.objectSid, upn: a.upn, dn: a.dn, sourceHost: config.host,
  };
}

/** Targets that share a hub key share one envelope. */
function distinctKeys(config: CaptureScriptConfig): RecipientKey[] {
  const byId = new Map<string, RecipientKey>();
  for (const pem of config.keys) {
    const key = recipientFromPem(pem);
    byId.set(key.keyId.toString('hex'), key);
  }
  if (byId.size === 0) throw new Error('the capture settings list no hub key: the notifier has no enabled target');
  return [...byId.values()];
}

/** stdin as one Buffer; every chunk zero-filled once copied (the LDIF holds the password). */
export async function readInput(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk);
      size += chunk.length;
      if (size > MAX_INPUT_BYTES) throw new Error(`the LDIF on stdin is longer than ${MAX_INPUT_BYTES} bytes`);
    }
    const all = Buffer.allocUnsafeSlow(size);
    let at = 0;
    for (const c of chunks) at += c.copy(all, at);
    return all;
  } finally {
    for (const c of chunks) c.fill(0);
  }
}
