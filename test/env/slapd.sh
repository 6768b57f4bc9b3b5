#!/usr/bin/env bash
# A plain OpenLDAP target directory for the ldap connector's tests: slapd on free 127.0.0.1 ports
# (ldaps, and ldap for StartTLS), entirely under DIR, mdb with the ppolicy overlay (min length 16
# bytes, history 5, cleartext hashed to {SSHA}), and two service accounts: cn=pwsync with `write` on
# userPassword (never `manage`, never the rootDN: both bypass ppolicy) and cn=norights with read only.
# People (uid=alice, bob, carol, dave, erin under ou=people) start without a password: tests set them.
#   test/env/slapd.sh start DIR [N]  writes and prints DIR/slapd.env; N adds people user0000…user(N-1)
#                                    (bench/ldap.ts), also without a password; cn=pwsync may then read
#                                    more than slapd's default 500 entries per search
#   test/env/slapd.sh stop DIR       stops that slapd by its PID
#   test/env/slapd.sh restart DIR    starts slapd again on DIR's data and the same ports (after a kill -9)
# SLAPD_DEBUG=stats (start) logs each connection and operation to DIR/slapd.out (`conn=… ACCEPT …
# (IP=127.0.0.1:PORT)`), to count what reached a port; restart keeps the level and appends.
# Needs slapd (Debian package slapd, 2.5: ppolicy schema built into the module) and openssl.
set -euo pipefail
cmd=${1:-}
DIR=${2:-}
USERS=${3:-0}
SUFFIX=dc=pwsync,dc=test
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop|restart DIR" >&2; exit 2; }

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
stop() { stop_slapd "$DIR"; }

if [ "$cmd" = stop ]; then [ -d "$DIR" ] && DIR=$(cd "$DIR" && pwd); stop; exit 0; fi
if [ "$cmd" = restart ]; then
  DIR=$(cd "$DIR" && pwd)
  [ -f "$DIR/slapd.env" ] || { echo "slapd.sh: no $DIR/slapd.env: start it first" >&2; exit 1; }
  stop
  val() { sed -n "s/^$1=//p" "$DIR/slapd.env"; }
  LDAP_URL=$(val SLAPD_LDAP_URL); LDAPS_URL=$(val SLAPD_LDAPS_URL); LEVEL=$(val SLAPD_DEBUG)
  /usr/sbin/slapd -f "$DIR/slapd.conf" -h "$LDAP_URL/ $LDAPS_URL/" -d "${LEVEL:-0}" >>"$DIR/slapd.out" 2>&1 </dev/null &
  PID=$!
  echo "$PID" >"$DIR/slapd.pid"
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/${LDAPS_URL##*:}") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/${LDAP_URL##*:}") 2>/dev/null; then
      sed -i "s/^SLAPD_PID=.*/SLAPD_PID=$PID/" "$DIR/slapd.env"
      cat "$DIR/slapd.env"
      exit 0
    fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  stop
  echo "slapd.sh: slapd did not restart on $LDAP_URL $LDAPS_URL: $(tail -n 3 "$DIR/slapd.out" | tr '\n' ' ')" >&2
  exit 1
fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ "$USERS" =~ ^[0-9]+$ ]] && [ "$USERS" -le 10000 ] || { echo "slapd.sh: the people count $USERS is not a number from 0 to 10000" >&2; exit 2; }
for tool in /usr/sbin/slapd /usr/sbin/slapadd openssl; do
  command -v "$tool" >/dev/null || { echo "slapd.sh: $tool is missing: apt-get install -y slapd openssl" >&2; exit 1; }
done

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
rm -rf "$DIR/db"; mkdir -p "$DIR/db"
umask 077
# Service account passwords: random, in files only (never argv or env).
openssl rand -hex 16 | tr -d '\n' >"$DIR/service.password"
openssl rand -hex 16 | tr -d '\n' >"$DIR/norights.password"
openssl rand -hex 16 | tr -d '\n' >"$DIR/root.password"
SERVICE_DN="cn=pwsync,ou=services,$SUFFIX"
NORIGHTS_DN="cn=norights,ou=services,$SUFFIX"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$DIR/ldap.key" -out "$DIR/ldap.crt" \
  -days 2 -subj /CN=pwsync-test-ldap -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' 2>/dev/null
chmod 644 "$DIR/ldap.crt"

cat >"$DIR/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile $DIR/slapd.pid
argsfile $DIR/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
password-hash {SSHA}
TLSCertificateFile $DIR/ldap.crt
TLSCertificateKeyFile $DIR/ldap.key
database mdb
suffix "$SUFFIX"
rootdn "cn=admin,$SUFFIX"
rootpw $(cat "$DIR/root.password")
directory $DIR/db
index objectClass eq
index uid eq
$( ((USERS > 0)) && echo "limits dn.exact=\"$SERVICE_DN\" size=unlimited")
overlay ppolicy
ppolicy_default "cn=default,ou=policies,$SUFFIX"
ppolicy_hash_cleartext
access to attrs=userPassword
  by dn.exact="$SERVICE_DN" write
  by dn.exact="$NORIGHTS_DN" read
  by self write
  by anonymous auth
  by * none
access to *
  by * read
CONF

/usr/sbin/slapadd -q -f "$DIR/slapd.conf" >/dev/null <<LDIF
dn: $SUFFIX
objectClass: dcObject
objectClass: organization
dc: pwsync
o: pwsync test

dn: ou=people,$SUFFIX
objectClass: organizationalUnit
ou: people

dn: ou=services,$SUFFIX
objectClass: organizationalUnit
ou: services

dn: ou=policies,$SUFFIX
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,$SUFFIX
objectClass: organizationalRole
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdMinLength: 16
pwdInHistory: 5
pwdCheckQuality: 2
pwdAllowUserChange: TRUE
pwdMustChange: FALSE
pwdLockout: FALSE

dn: $SERVICE_DN
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: pwsync
userPassword: $(cat "$DIR/service.password")

dn: $NORIGHTS_DN
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: norights
userPassword: $(cat "$DIR/norights.password")

$(for u in alice bob carol dave erin; do printf 'dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s Test\nsn: Test\nmail: %s@pwsync.test\n\n' "$u" "$SUFFIX" "$u" "${u^}" "$u"; done
  for ((i = 0; i < USERS; i++)); do printf -v u 'user%04d' "$i"; printf 'dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: Bench\nmail: %s@pwsync.test\n\n' "$u" "$SUFFIX" "$u" "$u" "$u"; done)
LDIF


# A port picked here may be taken before slapd binds it: then slapd exits and we try another.
for attempt in 1 2 3 4 5; do
  PORT=$(free_port)
  SPORT=$(free_port)
  # -d: stay in the foreground, so that $! is slapd itself.
  /usr/sbin/slapd -f "$DIR/slapd.conf" -h "ldap://127.0.0.1:$PORT/ ldaps://127.0.0.1:$SPORT/" -d "${SLAPD_DEBUG:-0}" >"$DIR/slapd.out" 2>&1 </dev/null &
  PID=$!
  echo "$PID" >"$DIR/slapd.pid"
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$SPORT") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      cat >"$DIR/slapd.env" <<ENV
SLAPD_DIR=$DIR
SLAPD_PID=$PID
SLAPD_LDAPS_URL=ldaps://127.0.0.1:$SPORT
SLAPD_LDAP_URL=ldap://127.0.0.1:$PORT
SLAPD_CA=$DIR/ldap.crt
SLAPD_SUFFIX=$SUFFIX
SLAPD_PEOPLE=ou=people,$SUFFIX
SLAPD_SERVICE_DN=$SERVICE_DN
SLAPD_SERVICE_PASSWORD_FILE=$DIR/service.password
SLAPD_NORIGHTS_DN=$NORIGHTS_DN
SLAPD_NORIGHTS_PASSWORD_FILE=$DIR/norights.password
SLAPD_ROOT_DN=cn=admin,$SUFFIX
SLAPD_ROOT_PASSWORD_FILE=$DIR/root.password
SLAPD_DEBUG=${SLAPD_DEBUG:-0}
ENV
      cat "$DIR/slapd.env"
      exit 0
    fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  stop
  echo "slapd.sh: slapd did not start on 127.0.0.1:$PORT/$SPORT (attempt $attempt): $(tail -n 3 "$DIR/slapd.out" | tr '\n' ' ')" >&2
done
exit 1
