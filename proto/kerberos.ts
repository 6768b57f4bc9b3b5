import * as grpc from '@grpc/grpc-js';
import { EVENTS } from '../core/events.ts';
import { readKeytab } from '../core/keytab.ts';
import type { Logger } from '../core/log.ts';
import type { CallerIdentity, ClientAuthenticator, ServerAuthenticator } from './auth.ts';
import { DeliveryError } from './delivery-error.ts';
import { explainAcceptorFailure, explainInitiatorFailure, explainReplyFailure, spnOf, type InitiatorContext } from './kerberos-explain.ts';
import { HubRefusal } from './refusal.ts';

/**
 * Kerberos mutual authentication of the notifier→hub call, on top of TLS. Every call carries a
 * fresh AP-REQ for the hub's SPN (`authorization: Negotiate …`); the hub accepts it with its keytab,
 * learns the caller's principal and answers the AP-REP (`www-authenticate: Negotiate …`) in the
 * call's initial metadata; the notifier believes the answer only once that AP-REP verifies. Stateless:
 * no session to expire or to share across connections; the notifier batches changes per call.
 *
 * The `kerberos` package (MIT GSSAPI) has no channel bindings and no wrap, so the password's
 * confidentiality rests on TLS with the hub's certificate checked against a configured CA.
 */

/** What this file uses of the `kerberos` package (kept here so the project typechecks without it). */
export interface GssClient {
  step(challenge: string): Promise<string | null>;
  readonly contextComplete: boolean;
}
export interface GssServer {
  step(token: string): Promise<string>;
  readonly response: string | null;
  readonly username: string;
  readonly contextComplete: boolean;
}
export interface KerberosApi {
  initializeClient(service: string, options: { mechOID?: number; flags?: number; principal?: string }): Promise<GssClient>;
  initializeServer(service: string): Promise<GssServer>;
  readonly GSS_C_MUTUAL_FLAG: number;
  readonly GSS_C_SEQUENCE_FLAG: number;
  readonly GSS_MECH_OID_KRB5: number;
}

/** The caller's clock when it made the token (ms since the epoch): lets the hub say how far apart clocks are. */
export const CLIENT_TIME_HEADER = 'x-pwsync-client-time';
/** Never trusted from a caller: removed before authentication. */
export const PRINCIPAL_HEADER = 'x-pwsync-authenticated-principal';

const INSTALL = 'install its build needs (apt-get install -y libkrb5-dev g++ make python3) and run `npm install` again in the pwsync folder; not `npm rebuild`, which cannot bring back an optional dependency that npm dropped';

let loaded: Promise<KerberosApi> | undefined;
let inUse = false;

/**
 * The `kerberos` package, loaded on first use. It is an optional dependency: npm drops it without a
 * word when it cannot be built, so its absence must be said here, with the fix.
 */
export function loadKerberos(specifier = 'kerberos'): Promise<KerberosApi> {
  const load = async (): Promise<KerberosApi> => {
    let mod: { default?: KerberosApi } & Partial<KerberosApi>;
    try {
      mod = await import(specifier) as typeof mod;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
        throw new Error(`Kerberos is configured but the \`kerberos\` package is not installed (npm skips it silently when it cannot build it): ${INSTALL}`, { cause: e });
      }
      throw new Error(`the \`kerberos\` package cannot be loaded (${e instanceof Error ? e.message : 'unknown error'}): ${INSTALL}`, { cause: e });
    }
    const api = (mod.default ?? mod) as KerberosApi;
    if (typeof api.initializeClient !== 'function') throw new Error(`the module ${specifier} is not the \`kerberos\` package: ${INSTALL}`);
    inUse = true;
    return api;
  };
  if (specifier !== 'kerberos') return load();
  loaded ??= load().catch((e: unknown) => {
    loaded = undefined;
    throw e;
  });
  return loaded;
}

export interface KerberosProcessSettings {
  /** krb5.conf instead of /etc/krb5.conf (KRB5_CONFIG). */
  krb5Config?: string;
  /** The hub's keytab (KRB5_KTNAME). */
  acceptorKeytab?: string;
  /** The hub's replay cache file, shared by every hub of that SPN (KRB5RCACHENAME=file2:…). */
  replayCache?: string;
  /** The notifier's keytab; MIT gets and renews tickets from it (KRB5_CLIENT_KTNAME). */
  clientKeytab?: string;
  /** A credential cache instead of a keytab (KRB5CCNAME); tickets are not renewed. */
  ccache?: string;
}

const applied = new Map<string, string | null>();

/**
 * MIT reads its settings from the environment, so they are per process. They are set once, before
 * any GSS call (libkrb5 reads them on worker threads; changing them later would race). A hub and a
 * notifier may share a process as long as their settings do not contradict each other.
 */
export function configureKerberosProcess(s: KerberosProcessSettings): void {
  const want = new Map<string, string | null>();
  if (s.krb5Config) want.set('KRB5_CONFIG', s.krb5Config);
  if (s.acceptorKeytab) want.set('KRB5_KTNAME', `FILE:${s.acceptorKeytab}`);
  if (s.replayCache) want.set('KRB5RCACHENAME', `file2:${s.replayCache}`);
  if (s.clientKeytab) {
    want.set('KRB5_CLIENT_KTNAME', `FILE:${s.clientKeytab}`);
    want.set('KRB5CCNAME', s.ccache ?? 'MEMORY:pwsync');
  } else if (s.ccache) {
    // Only the configured cache: an inherited client keytab would renew tickets nobody configured.
    want.set('KRB5CCNAME', s.ccache);
    want.set('KRB5_CLIENT_KTNAME', null);
  }
  const conflicts = [...want].filter(([k, v]) => applied.has(k) && applied.get(k) !== v);
  if (conflicts.length > 0) {
    throw new Error(`Kerberos is already set up in this process with other settings (${conflicts.map(([k]) => `${k}: ${applied.get(k) ?? 'unset'}`).join(', ')}): run services with different Kerberos settings in separate processes`);
  }
  const fresh = [...want].filter(([k]) => !applied.has(k));
  if (fresh.length === 0) return;
  if (inUse) {
    throw new Error(`Kerberos is already in use in this process; it cannot be set up again (${fresh.map(([k]) => k).join(', ')}): set every Kerberos setting before the first call`);
  }
  for (const [k, v] of fresh) {
    applied.set(k, v);
    if (v === null) delete process.env[k];
    else process.env[k] = v;
  }
}

export interface KerberosClientOptions {
  /** The hub's GSS host-based service name, `PWSYNC@hub.example.com`. */
  service: string;
  /** The notifier's principal (`DC1$@EXAMPLE.COM`); the keytab's first when absent. */
  principal?: string;
  /** host:port, for messages. */
  hubAddress: string;
  /** Where the credentials come from, for messages. */
  keytab?: string;
  ccache?: string;
}

function firstPrincipal(keytab: string | undefined): string | undefined {
  if (!keytab) return undefined;
  try {
    return readKeytab(keytab)[0]?.principal;
  } catch {
    return undefined;
  }
}

/** The notifier's side: a fresh context per call; the call counts only once the hub's AP-REP verifies. */
export function kerberosClient(opts: KerberosClientOptions): ClientAuthenticator {
  const ctx: InitiatorContext = {
    service: opts.service, hubAddress: opts.hubAddress,
    ...(opts.keytab ? { keytab: opts.keytab } : {}), ...(opts.ccache ? { ccache: opts.ccache } : {}),
  };
  const principal = (): string | undefined => opts.principal ?? firstPrincipal(opts.keytab);
  return {
    async start() {
      let k: KerberosApi;
      try {
        k = await loadKerberos();
      } catch (e) {
        throw new DeliveryError('UNAUTHENTICATED', `cannot authenticate to the hub at ${opts.hubAddress}: ${e instanceof Error ? e.message : 'unknown error'}`, { cause: e, retryable: true });
      }
      let client: GssClient;
      let token: string | null;
      try {
        // `flags`, not the `gssFlag` of the package's typings, which its native code never reads.
        client = await k.initializeClient(opts.service, {
          mechOID: k.GSS_MECH_OID_KRB5, flags: k.GSS_C_MUTUAL_FLAG | k.GSS_C_SEQUENCE_FLAG,
          ...(opts.principal ? { principal: opts.principal } : {}),
        });
        token = await client.step('');
      } catch (e) {
        const p = principal();
        throw new DeliveryError('UNAUTHENTICATED', explainInitiatorFailure(e instanceof Error ? e.message : String(e), { ...ctx, ...(p ? { principal: p } : {}) }), { cause: e, retryable: true });
      }
      if (!token) throw new DeliveryError('UNAUTHENTICATED', `the Kerberos library made no token for ${spnOf(opts.service)}`, { retryable: true });
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Negotiate ${token}`);
      metadata.set(CLIENT_TIME_HEADER, String(Date.now()));
      return {
        metadata,
        async verifyReply(reply: grpc.Metadata) {
          const header = reply.get('www-authenticate')[0];
          if (typeof header !== 'string' || !header.startsWith('Negotiate ')) throw new Error(explainReplyFailure({ missing: true }, ctx));
          try {
            await client.step(header.slice('Negotiate '.length));
          } catch (e) {
            throw new Error(explainReplyFailure({ message: e instanceof Error ? e.message : String(e) }, ctx), { cause: e });
          }
          // Without mutual authentication complete, the answer may come from anyone holding the TLS key.
          if (!client.contextComplete) throw new Error(explainReplyFailure({ message: 'the context is not complete after the reply token' }, ctx));
        },
      };
    },
  };
}

export interface KerberosServerOptions {
  /** The hub's GSS host-based service name, `PWSYNC@hub.example.com` (never empty: that would accept any key in the keytab). */
  service: string;
  /** The keytab, for messages. */
  keytab?: string;
  log: Logger;
}

/** The hub's side: accepts the caller's AP-REQ with the keytab, names the caller, returns the AP-REP. */
export function kerberosServer(opts: KerberosServerOptions): ServerAuthenticator {
  if (!/^[^@\s]+@[^@\s]+$/.test(opts.service)) throw new Error(`hub.kerberos.service must be SERVICE@host (PWSYNC@hub.example.com), not ${JSON.stringify(opts.service)}`);
  const spn = spnOf(opts.service);
  const refuse = (peer: string, reason: string): HubRefusal => {
    // The token never goes in the log: only who, from where, and why.
    opts.log.error({ eventId: 6954, peer, spn, reason }, EVENTS[6954].text);
    return new HubRefusal('unauthenticated', reason);
  };
  return {
    async authenticate(metadata, peer): Promise<CallerIdentity> {
      metadata.remove(PRINCIPAL_HEADER);
      const header = metadata.get('authorization')[0];
      if (header === undefined) {
        throw refuse(peer, `this hub requires Kerberos: the caller at ${peer} sent no Kerberos token for ${spn}: set targets[].kerberos.service: ${opts.service} for this hub and notifier.kerberos (keytab) in the notifier's YAML`);
      }
      if (typeof header !== 'string' || !/^Negotiate [A-Za-z0-9+/=]+$/.test(header)) {
        throw refuse(peer, `the caller at ${peer} sent an authorization that is not a Kerberos token (\`Negotiate\` and base64) for ${spn}: a pwsync notifier with targets[].kerberos.service sends one`);
      }
      const sent = Number(metadata.get(CLIENT_TIME_HEADER)[0]);
      const clientTimeMs = Number.isFinite(sent) && sent > 0 ? sent : undefined;
      const k = await loadKerberos();
      let server: GssServer;
      try {
        server = await k.initializeServer(opts.service);
        await server.step(header.slice('Negotiate '.length));
      } catch (e) {
        throw refuse(peer, explainAcceptorFailure(e instanceof Error ? e.message : String(e), {
          service: opts.service, peer, hubTimeMs: Date.now(),
          ...(opts.keytab ? { keytab: opts.keytab } : {}), ...(clientTimeMs !== undefined ? { clientTimeMs } : {}),
        }));
      }
      if (!server.contextComplete || !server.username) {
        throw refuse(peer, `the caller at ${peer} did not complete Kerberos authentication for ${spn} in one step: a pwsync notifier uses the krb5 mechanism, which does`);
      }
      // Whether this principal may speak for a domain (its realm, a DC of it) is the DC check's to say.
      const principal = server.username;
      opts.log.debug({ principal, peer }, 'caller authenticated by Kerberos');
      return { principal, mechanism: 'kerberos', peer, ...(server.response ? { replyToken: server.response } : {}) };
    },
    replyMetadata(identity) {
      const md = new grpc.Metadata();
      if (identity.replyToken) md.set('www-authenticate', `Negotiate ${identity.replyToken}`);
      return md;
    },
  };
}
