// Original file: proto/pwsync.proto


/**
 * Account identifiers as the domain controller knows them; empty when unknown. Every string field
 * of every message must be valid UTF-8 (a hub refuses invalid bytes rather than read them as
 * U+FFFD), and names, DNs, domains and host names may not hold control characters (U+0000-U+001F,
 * U+007F): event 6979.
 */
export interface Account {
  'samAccountName'?: (string);
  /**
   * canonical string form, lower case
   */
  'objectGuid'?: (string);
  /**
   * S-1-5-21-...
   */
  'objectSid'?: (string);
  'userPrincipalName'?: (string);
  'distinguishedName'?: (string);
}

/**
 * Account identifiers as the domain controller knows them; empty when unknown. Every string field
 * of every message must be valid UTF-8 (a hub refuses invalid bytes rather than read them as
 * U+FFFD), and names, DNs, domains and host names may not hold control characters (U+0000-U+001F,
 * U+007F): event 6979.
 */
export interface Account__Output {
  'samAccountName': (string);
  /**
   * canonical string form, lower case
   */
  'objectGuid': (string);
  /**
   * S-1-5-21-...
   */
  'objectSid': (string);
  'userPrincipalName': (string);
  'distinguishedName': (string);
}
