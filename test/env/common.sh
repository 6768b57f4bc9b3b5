# Shared by the test/env scripts (source it). Prints a TCP port on 127.0.0.1 that nothing listens on
# now; the caller must still cope with losing it to another process before it binds.
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  echo "$(basename "$0"): no free port found on 127.0.0.1" >&2
  return 1
}
