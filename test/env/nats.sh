#!/usr/bin/env bash
# A private NATS JetStream for the broker tests: N nodes (3: a cluster, 1: a single server) of
# Debian's nats-server on free 127.0.0.1 ports, everything (config, TLS, store dirs, logs) under DIR.
# Clients must use TLS (a self-signed certificate for IP:127.0.0.1 and DNS:localhost, its own CA);
# routes between nodes stay on loopback in plain.
#   test/env/nats.sh start DIR [N]       writes and prints DIR/nats.env; waits until every /healthz is ok
#   test/env/nats.sh stop DIR            stops every node by its PID (SIGTERM: a clean shutdown)
#   test/env/nats.sh stop-node DIR K     stops node K (1..N) the same way
#   test/env/nats.sh start-node DIR K    starts node K again on its ports and store (after a stop or a kill -9),
#                                        waits for its /healthz; nats-server 2.9.10 may keep a node that was
#                                        killed "not current" for minutes: if it is not healthy in 20 s it is
#                                        stopped cleanly and started once more (that is what fixes it)
# Who may connect: DIR/auth.conf, included by every node. By default it holds the users `pwsync`
# (everything) and `norights` (may connect, may publish nothing); their passwords are random, in
# DIR/pwsync.password and DIR/norights.password (mode 0600; never in argv or env). NATS_AUTH_CONF=FILE
# at start uses FILE instead (accounts, users with per-subject permissions, as nats-server's config).
# Needs nats-server (Debian package nats-server, 2.9.10), openssl and curl.
set -euo pipefail
cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start DIR [N] | stop DIR | stop-node DIR K | start-node DIR K" >&2; exit 2; }
NATS=/usr/sbin/nats-server
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

val() { sed -n "s/^$1=//p" "$DIR/nats.env"; }
pid_of() { cat "$DIR/n$1.pid" 2>/dev/null || true; }

# Only a nats-server started with this node's config is signalled, never a process that reused the PID.
ours() {
  local pid=$1 k=$2
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "-c $DIR/n$k.conf"
}

stop_node() {
  local k=$1 pid
  pid=$(pid_of "$k")
  if ours "$pid" "$k"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/n$k.pid"
}

launch() {
  local k=$1
  setsid "$NATS" -c "$DIR/n$k.conf" >>"$DIR/n$k.log" 2>&1 </dev/null &
  echo $! >"$DIR/n$k.pid"
}

# Polls node K's /healthz (plain: in a cluster it is ok only once JetStream has a current meta leader).
wait_healthy() {
  local k=$1 tries=$2 port pid
  port=$(sed -n "s/^http: 127.0.0.1://p" "$DIR/n$k.conf")
  pid=$(pid_of "$k")
  for _ in $(seq 1 "$tries"); do
    curl -fsS -m 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { echo "nats.sh: node $k exited: $(tail -n 5 "$DIR/n$k.log" | tr '\n' ' ')" >&2; return 1; }
    sleep 0.05
  done
  return 1
}

if [ "$cmd" != start ]; then
  [ -d "$DIR" ] || { echo "nats.sh: no folder $DIR" >&2; exit 1; }
  DIR=$(cd "$DIR" && pwd)
  [ -f "$DIR/nats.env" ] || { echo "nats.sh: no $DIR/nats.env: start it first" >&2; exit 1; }
  N=$(val NATS_NODES)
fi
case "$cmd" in
  stop)
    for k in $(seq 1 "$N"); do stop_node "$k"; done
    exit 0 ;;
  stop-node|start-node)
    K=${3:-}
    [[ "$K" =~ ^[0-9]+$ ]] && [ "$K" -ge 1 ] && [ "$K" -le "$N" ] || { echo "nats.sh: node must be 1..$N, got '$K'" >&2; exit 2; }
    stop_node "$K"
    [ "$cmd" = stop-node ] && exit 0
    launch "$K"
    if ! wait_healthy "$K" 400; then
      echo "nats.sh: node $K not healthy after 20 s; restarting it cleanly once" >&2
      stop_node "$K"
      launch "$K"
      wait_healthy "$K" 1200 || { stop_node "$K"; echo "nats.sh: node $K did not become healthy: $(tail -n 3 "$DIR/n$K.log" | tr '\n' ' ')" >&2; exit 1; }
    fi
    sed -i "s/^NATS_N${K}_PID=.*/NATS_N${K}_PID=$(pid_of "$K")/" "$DIR/nats.env"
    echo "NATS_N${K}_PID=$(pid_of "$K")"
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 start DIR [N] | stop DIR | stop-node DIR K | start-node DIR K" >&2; exit 2 ;;
esac

N=${3:-3}
[[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 1 ] && [ "$N" -le 5 ] || { echo "nats.sh: the node count $N is not a number from 1 to 5" >&2; exit 2; }
for tool in "$NATS" openssl curl; do
  command -v "$tool" >/dev/null || { echo "nats.sh: $tool is missing: apt-get install -y nats-server openssl curl" >&2; exit 1; }
done
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
umask 077

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$DIR/server.key" -out "$DIR/server.crt" \
  -days 2 -subj /CN=pwsync-test-nats -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' 2>/dev/null
chmod 644 "$DIR/server.crt"

if [ -n "${NATS_AUTH_CONF:-}" ]; then
  cp "$NATS_AUTH_CONF" "$DIR/auth.conf"
else
  openssl rand -hex 16 | tr -d '\n' >"$DIR/pwsync.password"
  openssl rand -hex 16 | tr -d '\n' >"$DIR/norights.password"
  cat >"$DIR/auth.conf" <<CONF
authorization {
  users = [
    { user: pwsync, password: "$(cat "$DIR/pwsync.password")" }
    { user: norights, password: "$(cat "$DIR/norights.password")", permissions: { publish: { deny: ">" }, subscribe: { allow: "_INBOX.>" } } }
  ]
}
CONF
fi

ports=()
for _ in $(seq 1 $((3 * N))); do ports+=("$(free_port)"); done
routes=""
for k in $(seq 1 "$N"); do routes+="nats://127.0.0.1:${ports[$((3 * k - 1))]}, "; done
for k in $(seq 1 "$N"); do
  mkdir -p "$DIR/n$k/store"
  {
    echo "server_name: n$k"
    echo "listen: 127.0.0.1:${ports[$((3 * k - 3))]}"
    echo "http: 127.0.0.1:${ports[$((3 * k - 2))]}"
    echo "jetstream { store_dir: \"$DIR/n$k/store\", max_memory_store: 64MB, max_file_store: 4GB }"
    echo "tls { cert_file: \"$DIR/server.crt\", key_file: \"$DIR/server.key\", timeout: 5 }"
    echo "include auth.conf"
    if [ "$N" -gt 1 ]; then
      echo "cluster { name: pwsync-test, listen: 127.0.0.1:${ports[$((3 * k - 1))]}, routes: [ ${routes%, } ] }"
    fi
  } >"$DIR/n$k.conf"
done
"$NATS" -t -c "$DIR/n1.conf" >/dev/null 2>"$DIR/config-check.log" || { echo "nats.sh: bad config: $(cat "$DIR/config-check.log")" >&2; exit 1; }
for k in $(seq 1 "$N"); do launch "$k"; done
for k in $(seq 1 "$N"); do
  wait_healthy "$k" 600 || { for j in $(seq 1 "$N"); do stop_node "$j"; done; echo "nats.sh: node $k not healthy in 30 s: $(tail -n 3 "$DIR/n$k.log" | tr '\n' ' ')" >&2; exit 1; }
done

urls=""
for k in $(seq 1 "$N"); do urls+="tls://127.0.0.1:${ports[$((3 * k - 3))]},"; done
{
  echo "NATS_NODES=$N"
  echo "NATS_URLS=${urls%,}"
  echo "NATS_CA=$DIR/server.crt"
  if [ -z "${NATS_AUTH_CONF:-}" ]; then
    echo "NATS_USER=pwsync"
    echo "NATS_PASSWORD_FILE=$DIR/pwsync.password"
    echo "NATS_NORIGHTS_PASSWORD_FILE=$DIR/norights.password"
  fi
  for k in $(seq 1 "$N"); do
    echo "NATS_N${k}_PID=$(pid_of "$k")"
    echo "NATS_N${k}_PORT=${ports[$((3 * k - 3))]}"
    echo "NATS_N${k}_MONITOR=${ports[$((3 * k - 2))]}"
    echo "NATS_N${k}_STORE=$DIR/n$k/store"
  done
} >"$DIR/nats.env"
cat "$DIR/nats.env"
