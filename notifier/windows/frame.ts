/**
 * The handoff from the filter DLL to the notifier (iface7): one frame per password change, the
 * same bytes over the named pipe and in a spool file, big-endian:
 *
 *   "PWC1" | changeId[16] | u16 n | n × (u16 nameLen | target name UTF-8 | u32 envLen | envelope)
 *
 * Over the pipe the frame is preceded by `u32 frameLen` and answered `"A" | changeId` once it is
 * durable. A spool file is `<SpoolDir>\new\<changeTime 16 hex>-<changeId 32 hex>.pwc`, so that
 * file-name order is change order.
 *
 * Pure (no native module, no pwsync import beyond node:). Only the structure is checked here; the
 * envelopes stay sealed, and their suite and key are checked by the drain (spool-drain.ts). The
 * pipe server (notifier/windows/dll/pwsync-pipe.c check_frame) makes the same checks in C.
 */
export const FRAME_MAGIC = Buffer.from('PWC1', 'ascii');
export const ACK = 0x41; // "A"
/** Far above a change for a few targets (an envelope is well under 1 KiB): a bound, not a limit. */
export const MAX_FRAME = 1024 * 1024;
const MAX_ENVELOPE = 64 * 1024;
const MAX_TARGETS = 64;
const MAX_NAME = 256;
const ENVELOPE_MAGIC = Buffer.from('PWSY', 'ascii');
/** Offsets in an envelope (core/envelope.ts): changeId at 23, changeTime (u64) at 39. */
const ENV_CHANGE_ID = 23;
const ENV_CHANGE_TIME = 39;
const ENV_MIN = 47;
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export interface FrameEntry {
  target: string;
  envelope: Buffer;
}

export interface HandoffFrame {
  changeId: Buffer;
  /** From the envelopes' headers (all the same). */
  changeTime: number;
  entries: FrameEntry[];
}

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

export function encodeFrame(changeId: Buffer, entries: readonly FrameEntry[]): Buffer {
  if (changeId.length !== 16) throw new FrameError('changeId must be 16 bytes');
  const parts: Buffer[] = [FRAME_MAGIC, changeId, u16(entries.length)];
  for (const e of entries) {
    const name = Buffer.from(e.target, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(e.envelope.length);
    parts.push(u16(name.length), name, len, e.envelope);
  }
  return Buffer.concat(parts);
}

/** Reads a frame; throws FrameError naming what is wrong. */
export function decodeFrame(buf: Buffer): HandoffFrame {
  if (buf.length > MAX_FRAME) throw new FrameError(`frame is ${buf.length} bytes, more than ${MAX_FRAME}`);
  if (buf.length < 22) throw new FrameError('frame is truncated (shorter than its fixed head)');
  if (!buf.subarray(0, 4).equals(FRAME_MAGIC)) throw new FrameError('not a pwsync handoff frame (bad magic; expected "PWC1")');
  const changeId = Buffer.from(buf.subarray(4, 20));
  const n = buf.readUInt16BE(20);
  if (n === 0) throw new FrameError('frame holds no envelope');
  if (n > MAX_TARGETS) throw new FrameError(`frame holds ${n} envelopes, more than ${MAX_TARGETS}`);
  let at = 22;
  const entries: FrameEntry[] = [];
  let changeTime: number | undefined;
  for (let i = 0; i < n; i++) {
    if (at + 2 > buf.length) throw new FrameError(`frame is truncated at envelope ${i + 1}'s target name`);
    const nameLen = buf.readUInt16BE(at);
    at += 2;
    if (nameLen === 0 || nameLen > MAX_NAME || at + nameLen > buf.length) throw new FrameError(`envelope ${i + 1} has a bad target name length (${nameLen})`);
    let target: string;
    try {
      target = UTF8.decode(buf.subarray(at, at + nameLen));
    } catch {
      throw new FrameError(`envelope ${i + 1}'s target name is not UTF-8`);
    }
    at += nameLen;
    if (at + 4 > buf.length) throw new FrameError(`frame is truncated at envelope ${i + 1}'s length`);
    const envLen = buf.readUInt32BE(at);
    at += 4;
    if (envLen < ENV_MIN || envLen > MAX_ENVELOPE || at + envLen > buf.length) throw new FrameError(`envelope ${i + 1} (target ${target}) has a bad length (${envLen})`);
    const envelope = Buffer.from(buf.subarray(at, at + envLen));
    at += envLen;
    if (!envelope.subarray(0, 4).equals(ENVELOPE_MAGIC)) throw new FrameError(`envelope ${i + 1} (target ${target}) is not a pwsync envelope`);
    if (!envelope.subarray(ENV_CHANGE_ID, ENV_CHANGE_ID + 16).equals(changeId)) throw new FrameError(`envelope ${i + 1} (target ${target}) is bound to another change id than its frame`);
    const t = envelope.readBigUInt64BE(ENV_CHANGE_TIME);
    if (t > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError(`envelope ${i + 1} has an impossible change time`);
    if (changeTime !== undefined && Number(t) !== changeTime) throw new FrameError(`envelope ${i + 1} has another change time than the first`);
    changeTime = Number(t);
    if (entries.some((e) => e.target === target)) throw new FrameError(`target ${target} appears twice in the frame`);
    entries.push({ target, envelope });
  }
  if (at !== buf.length) throw new FrameError(`frame has ${buf.length - at} bytes after its last envelope`);
  return { changeId, changeTime: changeTime!, entries };
}

const NAME = /^([0-9a-f]{16})-([0-9a-f]{32})\.pwc$/;

export function spoolFileName(changeTime: number, changeId: Buffer): string {
  return `${changeTime.toString(16).padStart(16, '0')}-${changeId.toString('hex')}.pwc`;
}

/** The change time and id a spool file's name claims; undefined for any other file. */
export function parseSpoolFileName(name: string): { changeTime: number; changeId: string } | undefined {
  const m = NAME.exec(name.toLowerCase());
  return m ? { changeTime: parseInt(m[1]!, 16), changeId: m[2]! } : undefined;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
