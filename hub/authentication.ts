import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { HubConfig } from '../config/schema.ts';
import { UsageError, describeError } from '../core/errors.ts';
import { EVENTS } from '../core/events.ts';
import type { Logger } from '../core/log.ts';
import { configureKerberosProcess, kerberosServer, loadKerberos, tlsOnlyServer, type ServerAuthenticator } from '../proto/channel.ts';
import { checkHubKerberos, type SpnLookup } from './kerberos-check.ts';

/**
 * How the hub authenticates notifiers. With hub.kerberos: Kerberos on top of TLS, after checking
 * the keytab (and, given `lookup`, the SPN in the directory), each problem logged as event 6960
 * with its fix; the hub still starts. Without it: TLS alone, with event 6952 once.
 */
export async function hubAuthenticator(config: Pick<HubConfig, 'hub'>, log: Logger, lookup?: SpnLookup): Promise<ServerAuthenticator> {
  const k = config.hub.kerberos;
  if (!k) {
    log.warn({ eventId: 6952, fix: EVENTS[6952].fix }, EVENTS[6952].text);
    return tlsOnlyServer();
  }
  try {
    mkdirSync(path.dirname(k.replayCache), { recursive: true, mode: 0o700 });
    configureKerberosProcess({ acceptorKeytab: k.keytab, replayCache: k.replayCache, ...(k.krb5Config ? { krb5Config: k.krb5Config } : {}) });
    await loadKerberos();
  } catch (e) {
    throw new UsageError(`hub.kerberos: ${describeError(e)}`, { cause: e });
  }
  for (const p of await checkHubKerberos({ keytab: k.keytab, service: k.service }, lookup)) {
    log.error({ eventId: 6960, problem: p.problem, fix: p.fix }, EVENTS[6960].text);
  }
  log.info({ service: k.service, keytab: k.keytab }, 'notifiers are authenticated by Kerberos');
  return kerberosServer({
    service: k.service, keytab: k.keytab, log: log.child({ component: 'kerberos' }),
  });
}
