import type { NotifierConfig, TargetConfig } from '../config/schema.ts';
import { configureKerberosProcess, kerberosClient, tlsOnlyClient, type ClientAuthenticator } from '../proto/channel.ts';

/**
 * How the notifier proves itself to a target's hub and checks that the hub is the one it meant:
 * Kerberos (this DC's machine account, the hub's SPN, the hub's AP-REP verified before any
 * acknowledgement counts) when the target names a service; TLS alone otherwise.
 */
export function targetAuthenticator(t: TargetConfig, kerberos: NotifierConfig['notifier']['kerberos'], address = t.address): ClientAuthenticator {
  if (!t.kerberos) return tlsOnlyClient();
  if (!kerberos) throw new Error(`target ${t.name}: targets[].kerberos needs notifier.kerberos (keytab) to say which account this DC authenticates as`);
  configureKerberosProcess({
    ...(kerberos.krb5Config ? { krb5Config: kerberos.krb5Config } : {}),
    ...(kerberos.keytab ? { clientKeytab: kerberos.keytab } : {}),
    ...(kerberos.ccache ? { ccache: kerberos.ccache } : {}),
  });
  return kerberosClient({
    service: t.kerberos.service, hubAddress: address,
    ...(kerberos.principal ? { principal: kerberos.principal } : {}),
    ...(kerberos.keytab ? { keytab: kerberos.keytab } : {}),
    ...(kerberos.ccache ? { ccache: kerberos.ccache } : {}),
  });
}
