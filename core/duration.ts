/**
 * Durations as the YAML writes them (`500ms`, `60s`, `5m`, `72h`, `1d`), to and from milliseconds:
 * the config schema decodes them, and a connector reading its own settings uses the same rule.
 */
export const DURATION = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

export function parseDuration(s: string): number {
  const m = DURATION.exec(s);
  if (!m) throw new Error(`not a duration: ${s}`);
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

export function formatDuration(ms: number): string {
  for (const u of ['d', 'h', 'm', 's'] as const) if (ms % UNIT_MS[u] === 0) return `${ms / UNIT_MS[u]}${u}`;
  return `${ms}ms`;
}
