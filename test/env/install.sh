#!/usr/bin/env bash
# Installs the Debian packages the tests need, idempotently. As root it installs what is missing;
# otherwise it fails naming the apt-get line to run.
#   Samba AD DC (capture, DC check, scope): samba … python3-gpg, iproute2 for its network namespace
#   MIT Kerberos KDC and tools, libkrb5-dev to build the `kerberos` npm module, faketime for skew tests
#   slapd: an LDAPS directory with the AD attributes the DC check reads, for the Kerberos tests
set -euo pipefail
PACKAGES=(
  samba samba-ad-dc samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind ldb-tools
  gnupg python3-gpg ldap-utils iproute2
  krb5-kdc krb5-admin-server krb5-user libkrb5-dev faketime
  slapd openssl
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "test/env/install.sh: missing Debian packages; run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
# slapd: no system instance; the tests run their own in private folders.
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
