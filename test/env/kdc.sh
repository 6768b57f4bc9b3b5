#!/usr/bin/env bash
# A private MIT Kerberos realm for the tests, entirely under DIR (never /etc):
#   test/env/kdc.sh start DIR   creates the realm, its principals and keytabs, starts a TCP-only
#                               krb5kdc on a free 127.0.0.1 port, waits until it answers, and
#                               writes and prints DIR/kdc.env (KEY=VALUE lines)
#   test/env/kdc.sh stop DIR    stops that krb5kdc by its PID and waits for it to exit
# Every MIT tool is driven by KRB5_CONFIG and KRB5_KDC_PROFILE only. Needs krb5-kdc and
# krb5-admin-server (kdb5_util, kadmin.local, krb5kdc in /usr/sbin).
set -euo pipefail
REALM=PWSYNC.TEST
SBIN=${KRB5_SBIN:-/usr/sbin}
cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

stop() {
  local pidfile="$DIR/krb5kdc.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  # Only our own krb5kdc: the PID must still be a krb5kdc reading this realm's profile.
  if [ -r "/proc/$pid/environ" ] && tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "KRB5_KDC_PROFILE=$DIR/kdc.conf"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
for tool in kdb5_util kadmin.local krb5kdc; do
  [ -x "$SBIN/$tool" ] || { echo "kdc.sh: $SBIN/$tool is missing: apt-get install -y krb5-kdc krb5-admin-server krb5-user" >&2; exit 1; }
done

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
export KRB5_CONFIG="$DIR/krb5.conf" KRB5_KDC_PROFILE="$DIR/kdc.conf"

write_conf() {
  cat >"$DIR/krb5.conf" <<CONF
[libdefaults]
    default_realm = $REALM
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
    udp_preference_limit = 1
    default_ccache_name = MEMORY:default
    forwardable = false
[realms]
    $REALM = {
        kdc = 127.0.0.1:$1
    }
[domain_realm]
    .pwsync.test = $REALM
    pwsync.test = $REALM
CONF
  cat >"$DIR/kdc.conf" <<CONF
[kdcdefaults]
    kdc_listen = ""
    kdc_tcp_listen = 127.0.0.1:$1
[realms]
    $REALM = {
        database_name = $DIR/principal
        key_stash_file = $DIR/stash
        acl_file = $DIR/kadm5.acl
        max_life = 10h
        max_renewable_life = 1d
        master_key_type = aes256-cts-hmac-sha1-96
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }
[logging]
    kdc = FILE:$DIR/kdc.log
    admin_server = FILE:$DIR/kadmin.log
    default = FILE:$DIR/krb5lib.log
CONF
}

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

write_conf 0
: >"$DIR/kadm5.acl"
"$SBIN/kdb5_util" -r "$REALM" create -s -P "master-$RANDOM$RANDOM$RANDOM" >/dev/null
# The hub's SPN, a DC's machine account, a second service (wrong-SPN cases) and a user.
"$SBIN/kadmin.local" -r "$REALM" >/dev/null 2>&1 <<CMDS
addprinc -randkey PWSYNC/hub.pwsync.test@$REALM
ktadd -k $DIR/hub.keytab PWSYNC/hub.pwsync.test@$REALM
addprinc -randkey +requires_preauth DC1\$@$REALM
ktadd -k $DIR/dc1.keytab DC1\$@$REALM
addprinc -randkey PWSYNC/other.pwsync.test@$REALM
ktadd -k $DIR/other.keytab PWSYNC/other.pwsync.test@$REALM
addprinc -randkey alice@$REALM
ktadd -k $DIR/alice.keytab alice@$REALM
CMDS
for k in hub dc1 other alice; do
  [ -s "$DIR/$k.keytab" ] || { echo "kdc.sh: kadmin.local did not write $DIR/$k.keytab" >&2; exit 1; }
  chmod 600 "$DIR/$k.keytab"
done

# A port picked here may be taken before krb5kdc binds it: then krb5kdc exits and we try another.
for attempt in 1 2 3 4 5; do
  PORT=$(free_port)
  write_conf "$PORT"
  "$SBIN/krb5kdc" -n -r "$REALM" >"$DIR/krb5kdc.stdout" 2>&1 </dev/null &
  PID=$!
  echo "$PID" >"$DIR/krb5kdc.pid"
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      cat >"$DIR/kdc.env" <<ENV
KDC_DIR=$DIR
KDC_REALM=$REALM
KDC_PORT=$PORT
KDC_PID=$PID
KRB5_CONFIG=$DIR/krb5.conf
KRB5_KDC_PROFILE=$DIR/kdc.conf
KDC_HUB_PRINCIPAL=PWSYNC/hub.pwsync.test@$REALM
KDC_HUB_SERVICE=PWSYNC@hub.pwsync.test
KDC_HUB_KEYTAB=$DIR/hub.keytab
KDC_DC_PRINCIPAL=DC1\$@$REALM
KDC_DC_KEYTAB=$DIR/dc1.keytab
KDC_OTHER_SERVICE=PWSYNC@other.pwsync.test
KDC_OTHER_KEYTAB=$DIR/other.keytab
KDC_USER_PRINCIPAL=alice@$REALM
KDC_USER_KEYTAB=$DIR/alice.keytab
ENV
      cat "$DIR/kdc.env"
      exit 0
    fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  stop
  echo "kdc.sh: krb5kdc did not start on 127.0.0.1:$PORT (attempt $attempt): $(tail -n 3 "$DIR/kdc.log" 2>/dev/null | tr '\n' ' ')" >&2
done
exit 1
