# Shared by the test/env scripts (source it). Prints a TCP port on 127.0.0.1 that nothing listens on
# now; the caller must still cope with losing it to another process before it binds.
# A port nothing listens on, below the kernel's ephemeral range: a port picked inside it can be
# the local end of some client's connection, which does not answer a probe yet makes bind fail.
free_port() {
  local p low=32768 high
  read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  [ "$low" -gt 21000 ] || low=32768
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % (low - 20000)))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  echo "$(basename "$0"): no free port found on 127.0.0.1" >&2
  return 1
}

# Stops the slapd whose pid file is in DIR ($1), only if that PID is still a slapd reading DIR's
# slapd.conf (never another process that reused the PID).
stop_slapd() {
  local pidfile="$1/slapd.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "-f $1/slapd.conf"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}
