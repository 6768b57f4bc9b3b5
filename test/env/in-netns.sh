#!/usr/bin/env bash
# Runs a command inside a fresh private network namespace (loopback only), then deletes it.
# The Samba AD DC tests run this way: the DC's ports 88/389/636 exist only in that namespace, and
# the test process, the hub and the notifier live there with it. The namespace's name is exported
# as PWSYNC_NETNS so that scripts started from inside know where they are.
#   usage: bash test/env/in-netns.sh node --import tsx --test test/samba/x.test.ts
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "test/env/in-netns.sh: creating a network namespace needs root (ip netns add); run npm test as root" >&2
  exit 1
fi
command -v ip >/dev/null || { echo "test/env/in-netns.sh: 'ip' is missing; run as root: apt-get install -y --no-install-recommends iproute2" >&2; exit 1; }
NS="pwsync-$$-$RANDOM"
ip netns add "$NS"
cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
ip netns exec "$NS" ip link set lo up
rc=0
PWSYNC_NETNS="$NS" ip netns exec "$NS" "$@" || rc=$?
exit $rc
