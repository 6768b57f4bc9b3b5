import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { describeError, isPwsyncError, type PwsyncError } from '../core/errors.ts';
import { TargetUnavailableError, type TargetObject } from '../core/extension.ts';
import {
  isExtensionHost, isIncrementalObjectSource, isNativePasswordSetter, isObjectSource, isRemoteApplier,
  type Connector, type RemoteApplier, type ExtensionHost, type IncrementalObjectSource, type NativePasswordSetter, type ObjectSource,
} from './contract.ts';
import { ConnectorMetrics, type CallOutcome } from './metrics.ts';

export interface WrapOptions {
  /** Longest one call may take before it fails retryably. */
  readonly timeoutMs: number;
  readonly log: Logger;
  /** Shared across connectors to read them all at once; a fresh one otherwise. */
  readonly metrics?: ConnectorMetrics;
}

export type WrappedConnector<C extends Connector> = C & { readonly metrics: ConnectorMetrics };

/**
 * The one place timeouts, logging, metrics and error typing happen for every connector kind
 * (ConnId's framework-side wrapping). The result has exactly the capabilities of `inner`, so the
 * hub's type guards answer the same. Every error it throws is a PwsyncError: one the connector
 * typed stays as it is; anything else is an unexpected connection or I/O failure and retries.
 * A call that times out keeps running inside the connector (JS cannot cancel it); a batch
 * connection that arrives after its timeout is released at once so the file or pool is not held.
 */
export function wrapConnector<C extends Connector>(inner: C, options: WrapOptions): WrappedConnector<C> {
  const { timeoutMs } = options;
  const log = options.log.child({ connector: inner.name });
  const metrics = options.metrics ?? new ConnectorMetrics();

  function typed(e: unknown, operation: string): PwsyncError {
    if (isPwsyncError(e)) return e;
    return new TargetUnavailableError(`connector ${inner.name}: ${operation} failed: ${describeError(e)}`, { cause: e });
  }

  function observe(operation: string, started: number, error?: PwsyncError, timedOut = false): void {
    const ms = performance.now() - started;
    const outcome: CallOutcome = !error ? 'ok' : timedOut ? 'timeout' : error.retryable ? 'retryable' : 'failed';
    metrics.observe(inner.name, operation, outcome, ms);
    log.debug({ operation, outcome, ms: Math.round(ms * 1000) / 1000, ...(error ? { eventId: error.eventId, err: error.message } : {}) }, 'connector call');
  }

  /** Runs `fn` with the timeout; errors come out typed. `onLate` gets a result that came too late. */
  async function guard<T>(operation: string, fn: () => Promise<T>, onLate?: (late: T) => void): Promise<{ value: T } | { error: PwsyncError; timedOut: boolean }> {
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const work = Promise.resolve().then(fn);
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new TargetUnavailableError(`connector ${inner.name}: ${operation} timed out after ${timeoutMs / 1000}s`));
      }, timeoutMs);
    });
    try {
      return { value: await Promise.race([work, deadline]) };
    } catch (e) {
      if (timedOut) work.then((late) => onLate?.(late), () => undefined);
      return { error: typed(e, operation), timedOut };
    } finally {
      clearTimeout(timer);
    }
  }

  async function call<T>(operation: string, fn: () => Promise<T>, onLate?: (late: T) => void): Promise<T> {
    const started = performance.now();
    const r = await guard(operation, fn, onLate);
    if ('error' in r) {
      observe(operation, started, r.error, r.timedOut);
      throw r.error;
    }
    observe(operation, started);
    return r.value;
  }

  const wrapped: Record<string, unknown> = {
    name: inner.name,
    kind: inner.kind,
    metrics,
    open: () => call('open', () => inner.open()),
    close: () => call('close', () => inner.close()),
    securityLevel: () => inner.securityLevel(),
    test: () => call('test', () => inner.test()),
  };

  if (isObjectSource(inner)) {
    const source: ObjectSource = {
      list: () => list(inner),
      find: (attribute, value, ignoreCase) => call('find', () => inner.find(attribute, value, ignoreCase)),
      version: () => call('version', () => inner.version()),
      attributes: () => call('attributes', () => inner.attributes()),
    };
    Object.assign(wrapped, source);
    if (isIncrementalObjectSource(inner)) {
      const incremental: IncrementalObjectSource = { changedSince: (since) => call('changedSince', () => inner.changedSince(since)) };
      Object.assign(wrapped, incremental);
    }
  }

  /** Each step of the listing has the timeout; the whole listing is one call in the metrics. */
  async function* list(source: ObjectSource): AsyncGenerator<TargetObject> {
    const started = performance.now();
    let iterator: AsyncIterator<TargetObject> | undefined;
    let finished = false;
    try {
      for (;;) {
        const r = await guard('list', async () => (iterator ??= source.list()[Symbol.asyncIterator]()).next());
        if ('error' in r) {
          observe('list', started, r.error, r.timedOut);
          finished = true;
          throw r.error;
        }
        if (r.value.done) break;
        yield r.value.value;
      }
      observe('list', started);
      finished = true;
    } finally {
      // The consumer stopped early (break, throw): let the connector close its cursor.
      if (!finished) {
        observe('list', started);
        await iterator?.return?.().catch(() => undefined);
      }
    }
  }

  if (isNativePasswordSetter(inner)) {
    const setter: NativePasswordSetter = {
      setPassword: (object, password, ctx) => call('setPassword', () => inner.setPassword(object, password, ctx)),
    };
    const change = inner.changePassword?.bind(inner);
    if (change) setter.changePassword = (object, oldPassword, newPassword, ctx) => call('changePassword', () => change(object, oldPassword, newPassword, ctx));
    Object.assign(wrapped, setter);
  }

  if (isExtensionHost(inner)) {
    const host: ExtensionHost = {
      connect: () => call('connect', async () => {
        const c = await inner.connect();
        return { connection: c.connection, release: () => call('release', () => c.release()) };
      }, (late) => { late.release().catch((e: unknown) => log.warn({ err: describeError(e) }, 'releasing a connection that arrived after its timeout failed')); }),
    };
    Object.assign(wrapped, host);
  }

  if (isRemoteApplier(inner)) {
    const remote: RemoteApplier = { applyRemote: (ops, open) => call('applyRemote', () => inner.applyRemote(ops, open)) };
    Object.assign(wrapped, remote);
  }

  return wrapped as unknown as WrappedConnector<C>;
}
