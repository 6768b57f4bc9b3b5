#!/usr/bin/env bash
# Installs the Debian packages the tests need, idempotently. As root it installs what is missing;
# otherwise it fails naming the apt-get line to run.
#   Samba AD DC (capture, DC check, scope): samba … python3-gpg, iproute2 for its network namespace
#   MIT Kerberos KDC and tools, libkrb5-dev to build the `kerberos` npm module, faketime for skew tests
#   slapd: an LDAPS directory with the AD attributes the DC check reads, for the Kerberos tests
#   postgresql-15: private TLS instances for the SQL connector (passwordcheck ships in the package)
#   mariadb-server: private MariaDB instances for the SQL connector (test/lib/mariadb.ts); its postinst
#     initialises /var/lib/mysql but never starts it here (policy-rc.d denies it), and no test starts it
#   mingw-w64, clang, lld, wine: the Windows filter DLL, built and run under Wine (test/windows/)
#   nats-server, curl: a private 3-node JetStream cluster for the NATS broker (test/env/nats.sh); its
#     postinst enables nats-server.service but starts it only under systemd, and no test uses it
set -euo pipefail
PACKAGES=(
  samba samba-ad-dc samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind ldb-tools
  gnupg python3-gpg ldap-utils iproute2
  krb5-kdc krb5-admin-server krb5-user libkrb5-dev faketime
  slapd openssl
  postgresql-15
  mariadb-server
  nats-server curl
  gcc-mingw-w64-x86-64 clang lld wine wine64
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
# mariadb-server, postgresql-15, samba: the same. Their postinst scripts would start system
# instances (3306, 5432, the AD DC) unless policy-rc.d denies it: where it does not, deny starts
# for the length of this install only, and put the machine back as it was afterwards.
if ! { [ -x /usr/sbin/policy-rc.d ] && ! /usr/sbin/policy-rc.d mariadb start >/dev/null 2>&1; }; then
  saved=""
  if [ -e /usr/sbin/policy-rc.d ]; then saved=$(mktemp) && cp -p /usr/sbin/policy-rc.d "$saved"; fi
  restore() { if [ -n "$saved" ]; then mv -f "$saved" /usr/sbin/policy-rc.d; else rm -f /usr/sbin/policy-rc.d; fi; }
  trap restore EXIT
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
fi
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
# postgresql-15: no system cluster (15/main on 5432) either; postgresql-common reads this file when
# the server package installs, so it must exist first. An admin's own setting is left alone.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
elif ! grep -q '^[[:space:]]*create_main_cluster' /etc/postgresql-common/createcluster.conf; then
  echo "create_main_cluster = false" >> /etc/postgresql-common/createcluster.conf
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
