/** Where a command writes its lines; the tests hand in their own. */
export interface CommandIO {
  out(line: string): void;
  err(line: string): void;
}

export const STD_IO: CommandIO = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};
