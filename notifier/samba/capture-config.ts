import { readFileSync } from 'node:fs';

/**
 * What the capture script needs from the notifier, written by the supervisor at each start to
 * `<dataDir>/samba/capture.json` (mode 0600) and named on the wrapper's command line. It holds
 * public keys only: the script seals each password for every hub key before it leaves the script.
 */
export interface CaptureScriptConfig {
  v: 1;
  /** The DC's DNS domain (notifier.domain). */
  domain: string;
  /** The DC's host name (notifier.host): every envelope's source host. */
  host: string;
  /** The notifier's hook socket (notifier.hook.socket). */
  hookSocket: string;
  /** How long the script waits for the notifier's `ok`. */
  timeoutMs: number;
  /** One public key (PEM) per distinct key of the enabled targets. */
  keys: string[];
}

export function readCaptureConfig(file: string): CaptureScriptConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read the capture settings ${file}: ${(e as Error).message} (the notifier writes them when it starts)`);
  }
  const c = raw as Partial<CaptureScriptConfig> | null;
  if (!c || c.v !== 1 || typeof c.domain !== 'string' || typeof c.host !== 'string' || typeof c.hookSocket !== 'string'
    || typeof c.timeoutMs !== 'number' || !Array.isArray(c.keys) || !c.keys.every((k) => typeof k === 'string')) {
    throw new Error(`the capture settings ${file} are not version 1 or lack a field: restart the notifier to rewrite them`);
  }
  return c as CaptureScriptConfig;
}
