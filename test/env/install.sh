#!/usr/bin/env bash
# Installs the Debian packages the tests need, idempotently. As root it installs what is missing;
# otherwise it fails naming the apt-get line to run. The foundation needs none yet: later issues
# add their servers (slapd, krb5-kdc, samba, nats-server, postgresql, mariadb) to PACKAGES.
set -euo pipefail
PACKAGES=()
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "test/env/install.sh: missing Debian packages; run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
