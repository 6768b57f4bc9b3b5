import { Attribute, Change, type Client, type PasswordPolicyValue } from 'ldapts';
import type { PwsyncError } from '../../core/errors.ts';
import type { OperationContext, TargetObject } from '../../core/extension.ts';
import type { Secret } from '../../core/secret.ts';
import type { ConnectorEnv, ConnectorKind } from '../contract.ts';
import type { AdSettings } from '../kinds-schema.ts';
import type { LdapFailureContext } from '../ldap/errors.ts';
import { LdapConnector, type DirectoryKindDefaults } from '../ldap/ldap.ts';
import { adRefusedAsAlreadyUsed, CHANGE_PASSWORD, mapAdError, RESET_PASSWORD } from './errors.ts';
import { withUnicodePwd } from './unicode-pwd.ts';

/** objectGUID is binary (shown as text); uSNChanged moves on every change to an object on this DC. */
const AD_DEFAULTS: DirectoryKindDefaults = { binary: ['objectGUID'], changeMarker: 'uSNChanged' };

/** Root DSE supportedCapabilities: Active Directory, and AD LDS (ADAM). */
const AD_CAPABILITY = '1.2.840.113556.1.4.800';
const ADAM_CAPABILITY = '1.2.840.113556.1.4.1851';

const unicodePwd = (operation: 'replace' | 'delete' | 'add', value: Buffer): Change =>
  new Change({ operation, modification: new Attribute({ type: 'unicodePwd', values: [value] }) });

/**
 * Active Directory, AD LDS or a Samba AD DC as a target: an LDAP connector (joins, TLS, pool,
 * verify bind) whose password write is unicodePwd. An admin set replaces it (the service account
 * needs "Reset Password"); a change with the old password deletes the old value and adds the new
 * one in one modify (the DC checks the old one and the full policy, history included, and the
 * account needs only "Change Password", which Everyone has by default).
 */
export class AdConnector extends LdapConnector {
  override readonly kind: string = 'ad';

  constructor(name: string, settings: AdSettings, env: ConnectorEnv) {
    // AD writes unicodePwd (writePassword below): the ldap kind's setWith does not apply.
    super(name, { ...settings, setWith: 'userPassword' }, env, AD_DEFAULTS);
  }

  override async test(): Promise<string> {
    const [root] = await this.directory().search('', { scope: 'base', filter: '(objectClass=*)', attributes: ['supportedCapabilities'] })
      .catch((e: unknown) => { throw this.mapFailure(e, this.failure('(root DSE)', 'read the root DSE')); });
    const caps = root?.strings('supportedCapabilities') ?? [];
    const what = caps.includes(AD_CAPABILITY) ? 'an Active Directory DC' : caps.includes(ADAM_CAPABILITY) ? 'an AD LDS instance'
      : 'a directory that does not say it is Active Directory (no AD capability in the root DSE): use kind ldap for other directories';
    let n = 0;
    for await (const _ of this.list()) n++;
    return `${this.s.url} as ${this.s.bindDn}: ${this.channel()} to ${what}; passwords written as unicodePwd; ${n} objects under ${this.s.baseDn}`;
  }

  async changePassword(object: TargetObject, oldPassword: Secret, newPassword: Secret, ctx: OperationContext): Promise<void> {
    await this.onObject(object, 'change the password', (dn) => this.changeAt(dn, oldPassword, newPassword, ctx));
  }

  private async changeAt(dn: string, oldPassword: Secret, newPassword: Secret, ctx: OperationContext): Promise<void> {
    const fail = this.failure(dn, 'change the password', CHANGE_PASSWORD.name);
    try {
      await this.directory().use((client) => oldPassword.use((oldBytes) => newPassword.use((newBytes) =>
        withUnicodePwd(oldBytes, (oldValue) => withUnicodePwd(newBytes, (newValue) =>
          client.modify(dn, [unicodePwd('delete', oldValue), unicodePwd('add', newValue)]))))));
    } catch (e) {
      if (this.s.verifyBind && adRefusedAsAlreadyUsed(e, true) && await this.bindsAs(dn, newPassword, fail)) {
        // A retry whose first attempt landed but whose answer was lost: the old password is gone, the new one works.
        ctx.log.info({ dn }, 'change refused (the old password no longer matches, or already used), but a bind as the user with the new one works: the password is in place');
        return;
      }
      throw this.mapFailure(e, fail);
    }
  }

  /** An admin set: unicodePwd replaced. The `bytes` are the Secret's unmasked copy, wiped by Secret.use. */
  protected override async writePassword(client: Client, dn: string, bytes: Buffer): Promise<void> {
    await withUnicodePwd(bytes, (value) => client.modify(dn, unicodePwd('replace', value)));
  }

  protected override alreadyUsed(e: unknown, _policy: PasswordPolicyValue | undefined): boolean {
    return adRefusedAsAlreadyUsed(e, false);
  }

  protected override mapFailure(e: unknown, ctx: LdapFailureContext): PwsyncError {
    return mapAdError(e, ctx);
  }

  protected override failure(dn: string, operation: string, right: string = RESET_PASSWORD.name): LdapFailureContext {
    return super.failure(dn, operation, right);
  }
}

export const adKind: ConnectorKind<AdSettings> = {
  kind: 'ad',
  description: 'Active Directory, AD LDS or a Samba AD DC: unicodePwd replaced for a set, old deleted and new added for a change, over LDAPS or StartTLS',
  create: (name, settings, env) => new AdConnector(name, settings, env),
};
