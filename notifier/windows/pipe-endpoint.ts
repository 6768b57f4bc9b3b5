import { createServer, type Server, type Socket } from 'node:net';
import { ACK, decodeFrame, FrameError, MAX_FRAME } from './frame.ts';
import { spoolFrame, spoolPaths } from './spool.ts';

/**
 * The named-pipe end of the filter DLL's handoff, on the DC: reads `u32 frameLen | frame`, makes
 * the frame durable in the spool folder's `new\` (where the drain takes it, as if the DLL had
 * spooled it), then answers `"A" | changeId`. A frame that cannot be read or written is not
 * answered: the DLL's wait runs out and it spools the frame itself, so nothing is lost here.
 *
 * Plain Node (no native module, no pwsync import beyond ./frame and ./spool): bundled into
 * build/windows/pwsync-pipe.mjs it runs under any Windows node.exe, and inside the notifier on
 * Windows when `notifier.capture.windows.pipe` is set.
 *
 * Who may connect: Node's net server creates the pipe with the default DACL (for a service
 * running as LocalSystem: SYSTEM and Administrators full control, Everyone and Anonymous read),
 * and libuv offers no way to set another. The endpoint therefore relies on (1) the service
 * running as LocalSystem, so that only SYSTEM and Administrators can create a pipe instance
 * with write access, (2) libuv creating the first instance with FILE_FLAG_FIRST_PIPE_INSTANCE
 * (a second server on the same name fails with EADDRINUSE rather than sharing it), and (3) the
 * DLL checking the server process (GetNamedPipeServerProcessId) before it writes. A frame holds
 * only sealed envelopes, so a reader learns no password; a writer other than the DLL can at most
 * queue a frame, which the hub then checks (key, binding, DC) like any other.
 */
export interface EndpointLog {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
  error(fields: object, msg: string): void;
}

export interface PipeEndpointOptions {
  /** `\\.\pipe\NAME` on Windows; any socket path elsewhere (tests). */
  pipe: string;
  spoolDir: string;
  log: EndpointLog;
  /** A connection idle this long is cut; default 10 s (the DLL waits at most 2 s). */
  idleMs?: number;
}

export interface PipeEndpoint {
  readonly pipe: string;
  /** Frames acknowledged since start. */
  readonly acked: number;
  close(): Promise<void>;
}

const MAX_CONNECTIONS = 64;

export async function startPipeEndpoint(opts: PipeEndpointOptions): Promise<PipeEndpoint> {
  const paths = spoolPaths(opts.spoolDir);
  let acked = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    serve(socket, opts, paths, () => { acked++; });
  });
  server.maxConnections = MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    const fail = (e: NodeJS.ErrnoException): void => {
      reject(new Error(e.code === 'EADDRINUSE'
        ? `another process already serves the pipe ${opts.pipe}: stop it (another notifier, or a squatter) before starting this one`
        : `cannot serve the pipe ${opts.pipe}: ${e.message}`));
    };
    server.once('error', fail);
    server.listen(opts.pipe, () => {
      server.off('error', fail);
      resolve();
    });
  });
  server.on('error', (e) => opts.log.error({ err: e.message }, 'pipe endpoint error'));
  opts.log.info({ pipe: opts.pipe, spoolDir: opts.spoolDir, platform: process.platform, node: process.version }, 'pipe endpoint listening');
  return {
    pipe: opts.pipe,
    get acked() {
      return acked;
    },
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    }),
  };
}

function serve(socket: Socket, opts: PipeEndpointOptions, paths: ReturnType<typeof spoolPaths>, onAck: () => void): void {
  let buf: Buffer = Buffer.alloc(0);
  socket.setTimeout(opts.idleMs ?? 10_000, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0);
      if (len === 0 || len > MAX_FRAME) {
        opts.log.warn({ frameLen: len }, `a pipe client sent a frame length out of range (1..${MAX_FRAME}); connection cut, nothing acknowledged`);
        socket.destroy();
        return;
      }
      if (buf.length < 4 + len) return;
      const frame = buf.subarray(4, 4 + len);
      buf = buf.subarray(4 + len);
      if (!take(frame, socket, opts, paths)) return;
      onAck();
    }
  });
}

/** Makes one frame durable and answers it; false (connection cut) when it cannot. */
function take(frame: Buffer, socket: Socket, opts: PipeEndpointOptions, paths: ReturnType<typeof spoolPaths>): boolean {
  let decoded;
  try {
    decoded = decodeFrame(frame);
  } catch (e) {
    opts.log.warn({ err: e instanceof FrameError ? e.message : String(e) }, 'a pipe client sent a frame that cannot be read; not acknowledged (the DLL spools it, the drain sets it aside)');
    socket.destroy();
    return false;
  }
  const changeId = decoded.changeId.toString('hex');
  let file: string;
  try {
    file = spoolFrame(paths, Buffer.from(frame), decoded.changeTime, decoded.changeId);
  } catch (e) {
    opts.log.error({ changeId, err: (e as Error).message }, 'cannot make a frame durable in the spool folder; not acknowledged (the DLL spools it itself)');
    socket.destroy();
    return false;
  }
  socket.write(Buffer.concat([Buffer.from([ACK]), decoded.changeId]));
  opts.log.info({ changeId, targets: decoded.entries.map((e) => e.target), file }, 'change received over the pipe and made durable');
  return true;
}
