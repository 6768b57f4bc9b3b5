// Original file: proto/pwsync.proto


/**
 * Account identifiers as the domain controller knows them; empty when unknown.
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
 * Account identifiers as the domain controller knows them; empty when unknown.
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
