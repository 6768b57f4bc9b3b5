/** Where a command writes its lines; the tests hand in their own. */
export interface CommandIO {
  out(line: string): void;
  err(line: string): void;
}

export const STD_IO: CommandIO = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/**
 * A reader that closes the output early (`pwsync status | head`) ends the output, not the command:
 * what is left is dropped without a stack trace, and the command's own exit code stands.
 */
export function quietOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') return;
      // Anything else is as loud as without this listener.
      process.nextTick(() => { throw e; });
    });
  }
}
