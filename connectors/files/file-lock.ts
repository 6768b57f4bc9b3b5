/**
 * One writer per file in this process: a batch holds its file's lock from connect() to release(),
 * so two batches never stage changes on the same read and overwrite each other's commit.
 */
const tails = new Map<string, Promise<void>>();

/** Waits for the previous holder of `key` to release; returns this holder's release (idempotent). */
export async function lockFile(key: string): Promise<() => void> {
  const previous = tails.get(key) ?? Promise.resolve();
  let unlock!: () => void;
  const mine = new Promise<void>((resolve) => { unlock = resolve; });
  const tail = previous.then(() => mine);
  tails.set(key, tail);
  await previous;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    unlock();
    if (tails.get(key) === tail) tails.delete(key);
  };
}
