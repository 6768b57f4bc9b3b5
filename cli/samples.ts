import type { LabConnector } from './lab.ts';

/**
 * Sample target files, one per file kind, for the demo and tests. Each lists some of the
 * people; `pwdHash` is where the example extension stores the salted scrypt hash.
 */
export interface Person {
  sam: string;
  name: string;
  mail: string;
}

export const PEOPLE: readonly Person[] = [
  { sam: 'alice', name: 'Alice Émond', mail: 'alice@corp.example.com' },
  { sam: 'bob', name: 'Bob Ça', mail: 'bob@corp.example.com' },
  { sam: 'carol', name: 'Carol £ewis', mail: 'carol@corp.example.com' },
];

export const csv = (people: readonly Person[]): string =>
  `id,login,name,mail,pwdHash\n${people.map((p, i) => `${1000 + i},${p.sam.toUpperCase()},"${p.name}",${p.mail},`).join('\n')}\n`;

const fixed = (people: readonly Person[]): string =>
  people.map((p) => `${p.sam.padEnd(12)}${p.name.padEnd(24)}${''.padEnd(100)}`).join('\n') + '\n';

const avp = (people: readonly Person[]): string =>
  `# mail system accounts\n\n${people.map((p) => `id: ${p.mail}\nuser: ${p.sam}\ncn: ${p.name}\npwdHash: \n`).join('\n')}`;

const ldif = (people: readonly Person[]): string =>
  `version: 1\n\n${people.map((p) => `dn: uid=${p.sam},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: ${p.sam}\nmail: ${p.mail}\n`).join('\n')}`;

const dsml = (people: readonly Person[]): string => `<?xml version="1.0" encoding="UTF-8"?>
<batchResponse xmlns="urn:oasis:names:tc:DSML:2:0:core">
  <searchResponse>
${people.map((p) => `    <searchResultEntry dn="cn=${p.sam},ou=portal,o=example">
      <attr name="cn"><value>${p.sam}</value></attr>
      <attr name="mail"><value>${p.mail}</value></attr>
      <attr name="pwdHash"><value></value></attr>
    </searchResultEntry>`).join('\n')}
    <searchResultDone><resultCode code="0"/></searchResultDone>
  </searchResponse>
</batchResponse>
`;

/** The five file kinds; the LDIF directory does not list alice, to show an unjoined target. */
export function sampleConnectors(people: readonly Person[] = PEOPLE, cost = 1024): LabConnector[] {
  const ext = { attribute: 'pwdHash', cost };
  return [
    { name: 'hr-csv', kind: 'delimited', file: 'hr.csv', content: csv(people), connection: { anchor: 'id' }, join: [{ target: 'login', source: 'sAMAccountName' }], extension: ext },
    { name: 'badge-fixed', kind: 'fixed-width', file: 'badge.txt', content: fixed(people), connection: { anchor: 'id', fields: [{ name: 'id', width: 12 }, { name: 'name', width: 24 }, { name: 'pwdHash', width: 100 }] }, join: [{ target: 'id', source: 'sAMAccountName' }], extension: ext },
    { name: 'mail-avp', kind: 'avp', file: 'mail.avp', content: avp(people), connection: { anchor: 'id' }, join: [{ target: 'user', source: 'sAMAccountName' }], extension: ext },
    { name: 'dir-ldif', kind: 'ldif', file: 'dir.ldif', content: ldif(people.filter((p) => p.sam !== 'alice')), join: [{ target: 'uid', source: 'sAMAccountName' }], extension: { ...ext, attribute: 'userPassword' } },
    { name: 'portal-dsml', kind: 'dsml', file: 'portal.dsml', content: dsml(people), join: [{ target: 'cn', source: 'sAMAccountName' }], extension: ext },
  ];
}
