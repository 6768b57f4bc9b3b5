#!/usr/bin/env bash
# A throwaway Samba AD DC (Debian's packages) for the tests, in the CURRENT network namespace
# (the test process runs inside one: test/env/in-netns.sh), loopback only.
#
#   samba-dc.sh start BASE   copy the run's template DC into BASE (provisioning it first if this
#                            run has none yet), start samba, wait until LDAP, LDAPS and the KDC
#                            answer; BASE/facts.json then says everything a test needs
#   samba-dc.sh stop BASE    stop samba by its PID, and the gpg-agent of BASE/gnupg
#
# Provisioning costs ~10 s, so it happens once per run, into $PWSYNC_SAMBA_TEMPLATE (default
# $PWSYNC_TEST_ROOT/samba-template), under a lock; each test file copies it. Only smb.conf and
# facts.json hold absolute paths, and the copy rewrites them.
#
# The template: realm PWSYNC.TEST, DC1, minimum password age 0, ldap/ SPNs on DC1$, the GPG key of
# `pwsync samba setup` (so `samba-tool user syncpasswords --decrypt-samba-gpg` works), the users,
# groups, service accounts and keytabs of test/env/samba-fixture.py, and TLS material (private/tls/,
# made by a first start; the certificate is CN=DC1.pwsync.test without a SAN).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
REALM=PWSYNC.TEST
DOMAIN=PWSYNC

die() { echo "samba-dc.sh: $*" >&2; exit 1; }

need() {
  for c in samba samba-tool gpg ldapsearch kinit ss unshare setsid flock; do
    command -v "$c" >/dev/null || die "'$c' is missing; as root: apt-get install -y --no-install-recommends samba samba-ad-dc samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind krb5-user ldb-tools ldap-utils gnupg python3-gpg iproute2 util-linux"
  done
  /usr/bin/python3 -c 'import samba, gpg' 2>/dev/null \
    || die "/usr/bin/python3 cannot import samba and gpg: apt-get install -y python3-samba python3-gpg"
  [ -n "${PWSYNC_NETNS:-}" ] || die "run inside a private network namespace (bash test/env/in-netns.sh ...): the DC binds the loopback's ports 88, 389, 445, 464 and 636"
}

# Samba's own private /run/samba (recipe gotcha 5: smbd's libwbclient only knows the compiled-in
# /run/samba/winbindd) through a bind mount in a mount namespace of its own; setsid gives it a
# process group of its own. The exec chain keeps $! = the samba master's PID.
start_samba() {
  local b=$1
  mkdir -p /run/samba "$b/dc/run" "$b/dc/log"
  rm -f "$b/dc/run/"*.pid
  GNUPGHOME="$b/gnupg" setsid unshare -m --propagation private \
    sh -c "mount --bind '$b/dc/run' /run/samba && exec samba -F -s '$b/dc/etc/smb.conf'" \
    </dev/null >>"$b/dc/log/samba.stdout" 2>&1 &
  echo $! > "$b/samba.pid"
}

wait_ready() {
  local b=$1 bound=$2 pid ports missing p
  pid=$(cat "$b/samba.pid")
  local deadline=$((SECONDS + bound))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$b/dc/log/samba.log" "$b/dc/log/samba.stdout" >&2; die "samba (pid $pid) exited while starting"; }
    ports=" $(ss -ltnH 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -un | tr '\n' ' ')"
    missing=0
    for p in 88 389 445 464 636; do case "$ports" in *" $p "*) ;; *) missing=1 ;; esac; done
    if [ $missing = 0 ] \
      && ldapsearch -x -H ldap://127.0.0.1 -b '' -s base dnsHostName >/dev/null 2>&1 \
      && KRB5_CONFIG="$b/krb5.conf" KRB5CCNAME=MEMORY: kinit "Administrator@$REALM" <"$b/admin.pw" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  tail -20 "$b/dc/log/samba.log" >&2
  die "samba did not answer LDAP and Kerberos within ${bound} s"
}

stop_samba() {
  local b=$1 pid i
  if [ -f "$b/samba.pid" ]; then
    pid=$(cat "$b/samba.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for i in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        echo "samba-dc.sh: samba ($pid) ignored SIGTERM for 15 s; killing its process group" >&2
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    rm -f "$b/samba.pid"
  fi
  # The agent gpgme started for this home (samba encrypting, syncpasswords decrypting), by its socket.
  if [ -d "$b/gnupg" ]; then GNUPGHOME="$b/gnupg" gpgconf --kill gpg-agent 2>/dev/null || true; fi
}

write_client_files() {
  local b=$1 lc=${REALM,,}
  cat >"$b/krb5.conf" <<EOF
[libdefaults]
	default_realm = $REALM
	dns_lookup_realm = false
	dns_lookup_kdc = false
	rdns = false
	dns_canonicalize_hostname = false
	udp_preference_limit = 1
[realms]
	$REALM = {
		kdc = 127.0.0.1
		admin_server = 127.0.0.1
		kpasswd_server = 127.0.0.1
	}
[domain_realm]
	.$lc = $REALM
	$lc = $REALM
EOF
  printf '127.0.0.1\tlocalhost\n127.0.0.1\tdc1.%s dc1 %s\n127.0.0.1\thub.%s\n' "$lc" "$lc" "$lc" >"$b/hosts"
}

build_template() {
  local t=$1 d=$1/dc t0=$SECONDS
  rm -rf "$d" "$t/gnupg"
  mkdir -p "$d"/{log,run,cache,ntp_signd}
  chmod 750 "$d/ntp_signd"   # samba refuses to start otherwise (gotcha 3)
  : >"$t/empty.conf"           # provision must not copy Debian's /etc/samba/smb.conf (gotcha 1)
  # Administrator gets a random password from the fixture afterwards (not in any argv).
  samba-tool domain provision -s "$t/empty.conf" --targetdir="$d" --realm="$REALM" --domain="$DOMAIN" \
    --host-name=DC1 --server-role=dc --dns-backend=NONE --use-rfc2307 --adminpass="Provision-$RANDOM$RANDOM-Aa1!" \
    --option="interfaces = lo" --option="bind interfaces only = yes" \
    --option="server services = s3fs, rpc, ldap, cldap, kdc, drepl, winbindd, kcc" \
    --option="log file = $d/log/samba.log" --option="log level = 1" \
    --option="pid directory = $d/run" --option="ncalrpc dir = $d/run/ncalrpc" \
    --option="winbindd socket directory = $d/run/winbindd" \
    --option="ntp signd socket directory = $d/ntp_signd" --option="tls enabled = yes" \
    >"$t/provision.log" 2>&1 || { tail -30 "$t/provision.log" >&2; die "provisioning failed"; }
  echo "samba-dc.sh: provisioned $REALM in $((SECONDS - t0)) s" >&2
  node "$REPO/bin/pwsync.mjs" samba setup --smb-conf "$d/etc/smb.conf" --gnupg-home "$t/gnupg" >"$t/setup.log" \
    || die "pwsync samba setup failed: $(cat "$t/setup.log")"
  GNUPGHOME="$t/gnupg" /usr/bin/python3 "$HERE/samba-fixture.py" "$d/etc/smb.conf" "$t" \
    || die "the fixture (test/env/samba-fixture.py) failed"
  write_client_files "$t"
  # A first start makes the TLS material (private/tls/*.pem), so that copies start in ~1 s.
  start_samba "$t"
  wait_ready "$t" 90
  stop_samba "$t"
  rm -rf "$t/gnupg/"S.* "$d/log/"*
  touch "$t/.complete"
  echo "samba-dc.sh: template ready in $((SECONDS - t0)) s" >&2
}

ensure_template() {
  local t=$1
  [ -f "$t/.complete" ] && return 0
  mkdir -p "$t"
  exec 9>"$t.lock"
  flock -w 300 9 || die "waited 300 s for another run to build the template $t"
  [ -f "$t/.complete" ] || build_template "$t"
  exec 9>&-
}

cmd_start() {
  local b=$1 t
  need
  t=${PWSYNC_SAMBA_TEMPLATE:-${PWSYNC_TEST_ROOT:-/tmp/pwsync-test}/samba-template}
  mkdir -p "$b"
  b=$(cd "$b" && pwd)
  ensure_template "$t"
  if [ ! -f "$b/facts.json" ]; then
    cp -a "$t/." "$b/"
    rm -f "$b/.complete"
    sed -i "s#$t/#$b/#g" "$b/dc/etc/smb.conf"
    sed -i "s#\"$t/#\"$b/#g; s#\"$t\"#\"$b\"#g" "$b/facts.json"
  fi
  start_samba "$b"
  wait_ready "$b" 60
  echo "$b/facts.json"
}

case "${1:-}" in
  start) [ -n "${2:-}" ] || die "usage: samba-dc.sh start BASE"; cmd_start "$2" ;;
  stop) [ -n "${2:-}" ] || die "usage: samba-dc.sh stop BASE"; stop_samba "$2" ;;
  *) die "usage: samba-dc.sh start|stop BASE" ;;
esac
