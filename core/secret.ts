import { randomFillSync } from 'node:crypto';
import { inspect } from 'node:util';

const REDACTED = '[REDACTED]';

/**
 * A password held as bytes, never as a JS string (strings cannot be wiped and outlive the call).
 * Kept XOR-masked with a random pad so a heap snapshot or core dump does not show it; `use(fn)`
 * unmasks into a fresh buffer for the length of `fn` and zero-fills that buffer after, even when
 * `fn` throws or its promise rejects. `dispose()` wipes the Secret itself.
 */
export class Secret {
  #masked: Buffer;
  #pad: Buffer;
  #disposed = false;

  private constructor(masked: Buffer, pad: Buffer) {
    this.#masked = masked;
    this.#pad = pad;
  }

  /** Takes ownership of `bytes`: they are copied, masked, and the original is zero-filled. */
  static adopt(bytes: Buffer): Secret {
    const pad = randomFillSync(Buffer.allocUnsafeSlow(bytes.length));
    const masked = Buffer.allocUnsafeSlow(bytes.length);
    for (let i = 0; i < bytes.length; i++) masked[i] = bytes[i]! ^ pad[i]!;
    bytes.fill(0);
    return new Secret(masked, pad);
  }

  get length(): number {
    return this.#masked.length;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  use<T>(fn: (bytes: Buffer) => T): T {
    if (this.#disposed) throw new Error('Secret used after dispose()');
    const clear = Buffer.allocUnsafeSlow(this.#masked.length);
    for (let i = 0; i < clear.length; i++) clear[i] = this.#masked[i]! ^ this.#pad[i]!;
    let result: T;
    try {
      result = fn(clear);
    } catch (e) {
      clear.fill(0);
      throw e;
    }
    if (result instanceof Promise) {
      return result.finally(() => clear.fill(0)) as T;
    }
    clear.fill(0);
    return result;
  }

  /** Constant-time comparison with another Secret. */
  equals(other: Secret): boolean {
    if (other.length !== this.length) return false;
    return this.use((a) => other.use((b) => {
      let diff = 0;
      for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
      return diff === 0;
    }));
  }

  dispose(): void {
    this.#masked.fill(0);
    this.#pad.fill(0);
    this.#disposed = true;
  }

  toJSON(): string {
    return REDACTED;
  }

  toString(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}
