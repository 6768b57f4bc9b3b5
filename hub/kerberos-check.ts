import { enctypeName, isAes, KeytabFormatError, readKeytab, type KeytabEntry } from '../core/keytab.ts';
import { describeError } from '../core/errors.ts';
import { spnOf } from '../proto/channel.ts';

/**
 * The hub's Kerberos set-up, checked at start, before any notifier calls: does the keytab hold an
 * AES key for the hub's SPN, and (with a directory) is the SPN on exactly one account whose key
 * version and encryption types match the keytab? Each problem says how to fix it; the hub still
 * starts (event 6960), since a notifier may already hold a valid ticket.
 */
export interface KerberosProblem {
  problem: string;
  fix: string;
}

/** What the domain's directory says about the account(s) holding an SPN. */
export interface SpnInfo {
  /** DNs of the accounts whose servicePrincipalName holds the SPN. */
  owners: string[];
  /** msDS-KeyVersionNumber of the (single) owner. */
  kvno?: number;
  /** msDS-SupportedEncryptionTypes of the (single) owner. */
  supportedEnctypes?: number;
}

export type SpnLookup = (spn: string) => Promise<SpnInfo>;

export interface HubKerberosSetup {
  keytab: string;
  /** `PWSYNC@hub.example.com` */
  service: string;
  /** The SPN's realm; any realm when absent. */
  realm?: string;
}

/** msDS-SupportedEncryptionTypes bits for AES128 and AES256. */
const AES_BITS = 0x08 | 0x10;

function exportFix(spn: string, keytab: string): string {
  return `export it: \`samba-tool domain exportkeytab ${keytab} --principal=${spn}\` on a Samba DC, or \`ktpass /princ ${spn}@REALM /mapuser ACCOUNT /crypto AES256-SHA1 /ptype KRB5_NT_PRINCIPAL /out ${keytab}\` on Windows; then restart the hub`;
}

export async function checkHubKerberos(setup: HubKerberosSetup, lookup?: SpnLookup): Promise<KerberosProblem[]> {
  const spn = spnOf(setup.service);
  const problems: KerberosProblem[] = [];
  let entries: KeytabEntry[] | undefined;
  try {
    entries = readKeytab(setup.keytab);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') problems.push({ problem: `the keytab ${setup.keytab} (hub.kerberos.keytab) does not exist`, fix: exportFix(spn, setup.keytab) });
    else if (code === 'EACCES') problems.push({ problem: `the keytab ${setup.keytab} cannot be read by the hub's service account`, fix: `give that account read access: chown it to the account and \`chmod 600 ${setup.keytab}\`` });
    else if (e instanceof KeytabFormatError) problems.push({ problem: `${setup.keytab} is not a usable keytab: ${e.message}`, fix: exportFix(spn, setup.keytab) });
    else problems.push({ problem: `the keytab ${setup.keytab} cannot be read: ${describeError(e)}`, fix: 'check the path and its permissions' });
  }

  const realm = setup.realm?.toUpperCase();
  const mine = entries?.filter((e) => e.name.toLowerCase() === spn.toLowerCase() && (!realm || e.realm.toUpperCase() === realm)) ?? [];
  if (entries) {
    if (mine.length === 0) {
      const held = [...new Set(entries.map((e) => e.principal))];
      problems.push({
        problem: `the keytab ${setup.keytab} has no key for ${spn}${realm ? `@${realm}` : ''} (hub.kerberos.service ${setup.service}); it holds ${held.length ? held.join(', ') : 'nothing'}`,
        fix: exportFix(spn, setup.keytab),
      });
    } else if (!mine.some((e) => isAes(e.enctype))) {
      problems.push({
        problem: `the keytab ${setup.keytab} holds only ${[...new Set(mine.map((e) => enctypeName(e.enctype)))].join(', ')} keys for ${spn}: a KDC that issues AES tickets for it (as AD does when the account allows AES) makes every notifier fail with "not with enctype aes256-cts"`,
        fix: `set msDS-SupportedEncryptionTypes to 24 (AES128 + AES256) on the account that holds ${spn} and ${exportFix(spn, setup.keytab)}`,
      });
    }
  }

  if (lookup) problems.push(...await directoryProblems(spn, setup.keytab, mine, lookup));
  return problems;
}

async function directoryProblems(spn: string, keytab: string, mine: readonly KeytabEntry[], lookup: SpnLookup): Promise<KerberosProblem[]> {
  let info: SpnInfo;
  try {
    info = await lookup(spn);
  } catch (e) {
    return [{ problem: `the SPN ${spn} could not be looked up in the directory: ${describeError(e)}`, fix: 'check domains[].directory (URL, CA, bind account); the other Kerberos checks still ran' }];
  }
  if (info.owners.length === 0) {
    return [{
      problem: `no account in the directory holds the SPN ${spn}, so the KDC cannot issue tickets for it`,
      fix: `register it on the hub's service account: \`samba-tool spn add ${spn} ACCOUNT\` on a Samba DC, or \`setspn -S ${spn} ACCOUNT\` on Windows; then export the keytab`,
    }];
  }
  if (info.owners.length > 1) {
    return [{
      problem: `the SPN ${spn} is registered on ${info.owners.length} accounts (${info.owners.join('; ')}): the KDC refuses or encrypts with the wrong account's key`,
      fix: `keep it only on the hub's service account: \`setspn -X\` lists duplicates, \`setspn -D ${spn} OTHER-ACCOUNT\` (or \`samba-tool spn delete ${spn} OTHER-ACCOUNT\`) removes one`,
    }];
  }
  const problems: KerberosProblem[] = [];
  const owner = info.owners[0]!;
  const newest = mine.reduce((max, e) => Math.max(max, e.kvno), 0);
  if (info.kvno !== undefined && mine.length > 0 && newest < info.kvno) {
    problems.push({
      problem: `the keytab ${keytab} holds key version ${newest} of ${spn}, but the account ${owner} is at msDS-KeyVersionNumber ${info.kvno}: its password changed after the export, so tickets will not decrypt`,
      fix: exportFix(spn, keytab),
    });
  }
  if (info.supportedEnctypes !== undefined && (info.supportedEnctypes & AES_BITS) === 0) {
    problems.push({
      problem: `the account ${owner} that holds ${spn} does not allow AES (msDS-SupportedEncryptionTypes ${info.supportedEnctypes}): its tickets are RC4, which current Windows KDCs are phasing out`,
      fix: `set msDS-SupportedEncryptionTypes to 24 (AES128 + AES256) on ${owner} (\`samba-tool user edit\`, or Active Directory Users and Computers → Account → "supports AES 256"), then ${exportFix(spn, keytab)}`,
    });
  }
  return problems;
}
