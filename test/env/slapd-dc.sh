#!/usr/bin/env bash
# A directory standing in for a domain's Active Directory, for tests that need the hub's DC check
# and SPN lookup but not a whole Samba DC: OpenLDAP slapd on a free 127.0.0.1 port, LDAPS only,
# entirely under DIR (never /etc), with the AD attributes those checks read (their Microsoft OIDs)
# and three entries: the DC's computer account DC1$ in OU=Domain Controllers, a workstation WS1$
# elsewhere (dNSHostName dc1.DOMAIN and ws1.DOMAIN, DOMAIN from the base DN), and the hub's
# service account holding the SPN PWSYNC/hub.pwsync.test (kvno 2, AES).
#   test/env/slapd-dc.sh start DIR [BASE_DN]   writes and prints DIR/directory.env
#   test/env/slapd-dc.sh stop DIR              stops that slapd by its PID
# Needs slapd (Debian package slapd) and openssl.
set -euo pipefail
cmd=${1:-}
DIR=${2:-}
BASE=${3:-DC=corp,DC=example,DC=com}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR [BASE_DN]" >&2; exit 2; }

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
stop() { stop_slapd "$DIR"; }

if [ "$cmd" = stop ]; then [ -d "$DIR" ] && DIR=$(cd "$DIR" && pwd); stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR [BASE_DN]" >&2; exit 2; }
for tool in /usr/sbin/slapd /usr/sbin/slapadd openssl; do
  command -v "$tool" >/dev/null || { echo "slapd-dc.sh: $tool is missing: apt-get install -y slapd openssl" >&2; exit 1; }
done

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
rm -rf "$DIR/db"; mkdir -p "$DIR/db"
umask 077
PASSWORD=$(openssl rand -hex 16)
printf '%s' "$PASSWORD" >"$DIR/bind.password"
BIND_DN="CN=pwsync-reader,$BASE"
first=$(echo "$BASE" | sed -E 's/^DC=([^,]+).*/\1/I')
DNS_DOMAIN=$(echo "$BASE" | sed -E 's/DC=//Ig; s/,/./g' | tr 'A-Z' 'a-z')

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$DIR/ldap.key" -out "$DIR/ldap.crt" \
  -days 2 -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' 2>/dev/null
chmod 644 "$DIR/ldap.crt"

cat >"$DIR/ad.schema" <<'SCHEMA'
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.98 NAME 'primaryGroupID' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.1960 NAME 'msDS-isRODC' EQUALITY booleanMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.771 NAME 'servicePrincipalName' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.2.840.113556.1.4.1963 NAME 'msDS-SupportedEncryptionTypes' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.1782 NAME 'msDS-KeyVersionNumber' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.619 NAME 'dNSHostName' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.2.840.113556.1.5.9 NAME 'user' SUP organizationalPerson STRUCTURAL
  MAY ( sAMAccountName $ userAccountControl $ primaryGroupID $ servicePrincipalName $ msDS-SupportedEncryptionTypes $ msDS-KeyVersionNumber ) )
objectclass ( 1.2.840.113556.1.3.30 NAME 'computer' SUP user STRUCTURAL MAY ( msDS-isRODC $ dNSHostName ) )
SCHEMA

write_conf() {
  cat >"$DIR/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include $DIR/ad.schema
pidfile $DIR/slapd.pid
argsfile $DIR/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile $DIR/ldap.crt
TLSCertificateKeyFile $DIR/ldap.key
database mdb
suffix "$BASE"
rootdn "$BIND_DN"
rootpw $PASSWORD
directory $DIR/db
CONF
}
write_conf

/usr/sbin/slapadd -f "$DIR/slapd.conf" >/dev/null <<LDIF
dn: $BASE
objectClass: domain
dc: $first

dn: OU=Domain Controllers,$BASE
objectClass: organizationalUnit
ou: Domain Controllers

dn: OU=Computers,$BASE
objectClass: organizationalUnit
ou: Computers

dn: OU=Users,$BASE
objectClass: organizationalUnit
ou: Users

dn: CN=DC1,OU=Domain Controllers,$BASE
objectClass: computer
cn: DC1
sn: DC1
sAMAccountName: DC1\$
dNSHostName: dc1.$DNS_DOMAIN
userAccountControl: 532480
primaryGroupID: 516

dn: CN=WS1,OU=Computers,$BASE
objectClass: computer
cn: WS1
sn: WS1
sAMAccountName: WS1\$
dNSHostName: ws1.$DNS_DOMAIN
userAccountControl: 4096
primaryGroupID: 515

dn: CN=pwsync-hub,OU=Users,$BASE
objectClass: user
cn: pwsync-hub
sn: pwsync-hub
sAMAccountName: pwsync-hub
userAccountControl: 512
servicePrincipalName: PWSYNC/hub.pwsync.test
msDS-SupportedEncryptionTypes: 24
msDS-KeyVersionNumber: 2
LDIF


# A port picked here may be taken before slapd binds it: then slapd exits and we try another.
for attempt in 1 2 3 4 5; do
  PORT=$(free_port)
  # -d 0: stay in the foreground, so that $! is slapd itself.
  /usr/sbin/slapd -f "$DIR/slapd.conf" -h "ldaps://127.0.0.1:$PORT/" -d 0 >"$DIR/slapd.out" 2>&1 </dev/null &
  PID=$!
  echo "$PID" >"$DIR/slapd.pid"
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      cat >"$DIR/directory.env" <<ENV
DIRECTORY_DIR=$DIR
DIRECTORY_PID=$PID
DIRECTORY_URL=ldaps://127.0.0.1:$PORT
DIRECTORY_CA=$DIR/ldap.crt
DIRECTORY_SERVER_NAME=localhost
DIRECTORY_BASE_DN=$BASE
DIRECTORY_BIND_DN=$BIND_DN
DIRECTORY_PASSWORD_FILE=$DIR/bind.password
ENV
      cat "$DIR/directory.env"
      exit 0
    fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  stop
  echo "slapd-dc.sh: slapd did not start on 127.0.0.1:$PORT (attempt $attempt): $(tail -n 3 "$DIR/slapd.out" | tr '\n' ' ')" >&2
done
exit 1
