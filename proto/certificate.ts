import type { PeerCertificate } from 'node:tls';
import { isDcName } from '../core/dc-name.ts';
import { EVENTS } from '../core/events.ts';
import type { Logger } from '../core/log.ts';
import type { CallerIdentity, ServerAuthenticator } from './auth.ts';
import { HubRefusal } from './refusal.ts';

/**
 * Callers authenticated by a TLS client certificate. The handshake has already verified it against
 * hub.tls.clientCa (chain, validity, clientAuth use); what is left is to read whom it names: the
 * one DNS name of its subjectAltName (what `pwsync tls client --dc` writes), which the DC check
 * then looks up as a domain controller's dNSHostName. A certificate that names no such single
 * host is refused (event 6977), so a name can never be guessed from a CN or a wildcard.
 */

/** Node's subjectaltname is `DNS:a, DNS:b, IP Address:…`; a name with odd characters comes quoted. */
function dnsNames(certificate: PeerCertificate): string[] {
  return (certificate.subjectaltname ?? '').split(', ').filter((n) => n.startsWith('DNS:')).map((n) => n.slice('DNS:'.length));
}

/** The DC name a verified client certificate speaks for, or why it names none. */
export function dcNameOf(certificate: PeerCertificate): { name: string } | { reason: string } {
  const names = dnsNames(certificate);
  const subject = certificate.subject?.CN ? `CN=${String(certificate.subject.CN)}` : 'no CN';
  const fix = 'issue the DC its own certificate with `pwsync tls client --dc dc1.corp.example.com` (one DNS name: the DC\'s dNSHostName)';
  if (names.length !== 1) {
    return { reason: `the client certificate (${subject}, serial ${certificate.serialNumber}) names ${names.length === 0 ? 'no DNS name' : `${names.length} DNS names (${names.join(', ')})`} in its subjectAltName, so it names no one domain controller: ${fix}` };
  }
  const name = names[0]!;
  if (!isDcName(name)) return { reason: `the client certificate names "${name}", which is not a host's DNS name (a wildcard or odd characters): ${fix}` };
  return { name: name.toLowerCase() };
}

function certificateOf(certificate: PeerCertificate | undefined, peer: string, log: Logger): string {
  const refuse = (reason: string): HubRefusal => {
    log.error({ eventId: 6977, peer, reason, fix: EVENTS[6977].fix }, EVENTS[6977].text);
    return new HubRefusal('unauthenticated', reason);
  };
  // The handshake required a verified certificate; without one here, the server was set up without hub.tls.clientCa.
  if (!certificate) throw refuse(`the caller at ${peer} presented no verified TLS client certificate: the hub requires one from hub.tls.clientCa`);
  const dc = dcNameOf(certificate);
  if ('reason' in dc) throw refuse(dc.reason);
  return dc.name;
}

/** The hub's side, certificates alone: the caller is the DC its certificate names. */
export function certificateServer(opts: { log: Logger }): ServerAuthenticator {
  return {
    async authenticate(_metadata, peer, certificate): Promise<CallerIdentity> {
      const name = certificateOf(certificate, peer, opts.log);
      opts.log.debug({ principal: name, peer }, 'caller authenticated by its client certificate');
      return { principal: name, mechanism: 'certificate', peer };
    },
  };
}

/**
 * Certificate and Kerberos both required: the handshake proved the certificate, `kerberos` names
 * the principal (and proves the hub back); the DC check is made on that principal, the
 * certificate's name is kept beside it for logs and status.
 */
export function certificateAndKerberosServer(kerberos: ServerAuthenticator, opts: { log: Logger }): ServerAuthenticator {
  return {
    async authenticate(metadata, peer, certificate): Promise<CallerIdentity> {
      const name = certificateOf(certificate, peer, opts.log);
      return { ...await kerberos.authenticate(metadata, peer, certificate), certificate: name };
    },
    ...(kerberos.replyMetadata ? { replyMetadata: kerberos.replyMetadata.bind(kerberos) } : {}),
  };
}
