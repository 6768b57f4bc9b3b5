import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { HubConfig } from '../config/schema.ts';
import { isLoopbackListen } from '../config/semantic.ts';
import { UsageError, describeError } from '../core/errors.ts';
import { EVENTS } from '../core/events.ts';
import type { Logger } from '../core/log.ts';
import {
  certificateAndKerberosServer, certificateServer, configureKerberosProcess, kerberosServer, loadKerberos, tlsOnlyServer,
  type ServerAuthenticator,
} from '../proto/channel.ts';
import { checkHubKerberos, type SpnLookup } from './kerberos-check.ts';

type AuthSettings = Pick<HubConfig, 'hub'>;

/** Whether the hub authenticates its callers at all (Kerberos, client certificates, or both). */
export function authenticatesCallers(config: AuthSettings): boolean {
  return config.hub.kerberos !== undefined || config.hub.tls.clientCa !== undefined;
}

/** Event 6952: logged at start and every hour while the hub hears callers it cannot name. */
export function warnUnauthenticated(config: AuthSettings, log: Logger): void {
  const allowedBy = isLoopbackListen(config.hub.listen) ? 'loopback' : 'hub.unauthenticatedCallers';
  log.warn({ eventId: 6952, listen: config.hub.listen, allowedBy, fix: EVENTS[6952].fix }, EVENTS[6952].text);
}

/**
 * How the hub authenticates notifiers. hub.tls.clientCa: the TLS handshake requires a client
 * certificate from that CA and the caller is the DC it names. hub.kerberos: Kerberos on top of
 * TLS, after checking the keytab (and, given `lookup`, the SPN in the directory), each problem
 * logged as event 6960 with its fix. Both: both required, the caller named by Kerberos. Neither:
 * TLS alone, only on loopback or with hub.unauthenticatedCallers (event 6952), else refused.
 */
export async function hubAuthenticator(config: AuthSettings, log: Logger, lookup?: SpnLookup): Promise<ServerAuthenticator> {
  const k = config.hub.kerberos;
  const certificates = config.hub.tls.clientCa !== undefined;
  if (!k && !certificates) {
    if (!isLoopbackListen(config.hub.listen) && config.hub.unauthenticatedCallers === undefined) {
      throw new UsageError(`the hub listens on ${config.hub.listen} and authenticates no caller: set hub.tls.clientCa or hub.kerberos, listen on 127.0.0.1, or set hub.unauthenticatedCallers (see \`pwsync config check\`)`);
    }
    warnUnauthenticated(config, log);
    return tlsOnlyServer();
  }
  if (!k) {
    log.info({ clientCa: config.hub.tls.clientCa }, 'notifiers are authenticated by TLS client certificates');
    return certificateServer({ log: log.child({ component: 'certificates' }) });
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
  const kerberos = kerberosServer({ service: k.service, keytab: k.keytab, log: log.child({ component: 'kerberos' }) });
  if (!certificates) {
    log.info({ service: k.service, keytab: k.keytab }, 'notifiers are authenticated by Kerberos');
    return kerberos;
  }
  log.info({ service: k.service, keytab: k.keytab, clientCa: config.hub.tls.clientCa }, 'notifiers are authenticated by TLS client certificates and Kerberos, both required');
  return certificateAndKerberosServer(kerberos, { log: log.child({ component: 'certificates' }) });
}
