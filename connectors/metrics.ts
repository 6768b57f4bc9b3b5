/**
 * Counts and latencies of connector calls, per connector, operation and outcome. The wrapper
 * records into it; `snapshot()` is what status and benchmarks read.
 */
export type CallOutcome = 'ok' | 'retryable' | 'failed' | 'timeout';

/** Upper bounds (ms) of the latency buckets; a call counts in the first bucket it fits. */
export const LATENCY_BUCKETS_MS = [1, 5, 10, 50, 100, 500, 1000, 5000, 30_000, Infinity] as const;

export interface CallStats {
  readonly connector: string;
  readonly operation: string;
  readonly outcome: CallOutcome;
  readonly count: number;
  readonly totalMs: number;
  readonly maxMs: number;
  /** Calls per bucket, in the order of LATENCY_BUCKETS_MS (not cumulative). */
  readonly buckets: readonly number[];
}

interface Mutable {
  count: number;
  totalMs: number;
  maxMs: number;
  buckets: number[];
}

export class ConnectorMetrics {
  readonly #stats = new Map<string, { key: [string, string, CallOutcome]; s: Mutable }>();

  observe(connector: string, operation: string, outcome: CallOutcome, ms: number): void {
    const id = `${connector}\u0000${operation}\u0000${outcome}`;
    let entry = this.#stats.get(id);
    if (!entry) {
      entry = { key: [connector, operation, outcome], s: { count: 0, totalMs: 0, maxMs: 0, buckets: LATENCY_BUCKETS_MS.map(() => 0) } };
      this.#stats.set(id, entry);
    }
    entry.s.count++;
    entry.s.totalMs += ms;
    entry.s.maxMs = Math.max(entry.s.maxMs, ms);
    entry.s.buckets[LATENCY_BUCKETS_MS.findIndex((b) => ms <= b)]!++;
  }

  snapshot(): CallStats[] {
    return [...this.#stats.values()].map(({ key: [connector, operation, outcome], s }) => ({
      connector, operation, outcome, count: s.count, totalMs: s.totalMs, maxMs: s.maxMs, buckets: [...s.buckets],
    }));
  }
}
