/**
 * A DNS name a client certificate may name a domain controller by (its dNSHostName): at least two
 * labels of letters, digits and '-', no wildcard, nothing a directory filter or a log could misread.
 */
const DC_NAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/i;

export function isDcName(name: string): boolean {
  return DC_NAME.test(name);
}
