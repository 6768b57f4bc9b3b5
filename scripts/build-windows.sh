#!/usr/bin/env bash
# Builds the Windows filter DLL and its test programs with mingw-w64 (npm run build:windows).
#   build/windows/pwsyncfilter.dll         production: SEH (clang), suite 1 only, 3 exports
#   build/windows/pwsyncfilter-test.dll    test: + test suite 0xF1 and PwsyncTest*/PwsyncLastCall exports
#   build/windows/pwsyncfilter-nowipe.dll  test build that never wipes: the memory scan's negative control
#   build/windows/pwsync-pipe.exe          the notifier's pipe server (service pwsync-pipe; SYSTEM-only DACL)
#   build/windows/harness.exe, pipeserver.exe   the LSASS stand-in and a stand-in pipe end (tests only)
# clang compiles the DLLs (mingw gcc has no __try/__except); mingw gcc links them (Debian's clang
# mingw driver cannot find libgcc). As root, installs missing Debian packages; otherwise names them.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(gcc-mingw-w64-x86-64 clang lld wine wine64)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "build-windows: missing Debian packages; run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

SRC=notifier/windows/dll
OUT=build/windows
mkdir -p "$OUT"
CC=x86_64-w64-mingw32-gcc
SEH=(clang --target=x86_64-w64-mingw32 -fms-extensions -O2 -Wall -Wextra -Werror -DPWSYNC_SEH)
# No libgcc_s or winpthread DLLs may follow the filter into LSASS.
LINK=(-shared -static-libgcc -Wl,--nxcompat,--dynamicbase,--high-entropy-va -lbcrypt -ladvapi32)

dll() { # name, def, extra defines...
  local name=$1 def=$2
  shift 2
  "${SEH[@]}" "$@" -c -o "$OUT/$name.o" "$SRC/pwsyncfilter.c"
  "$CC" -o "$OUT/$name.dll" "$OUT/$name.o" "$SRC/$def" "${LINK[@]}"
  rm -f "$OUT/$name.o"
}
dll pwsyncfilter pwsyncfilter.def
dll pwsyncfilter-test pwsyncfilter-test.def -DPWSYNC_TEST_SUITES
dll pwsyncfilter-nowipe pwsyncfilter-test.def -DPWSYNC_TEST_SUITES -DPWSYNC_NO_WIPE_FOR_TEST
"$CC" -O2 -Wall -Wextra -Werror -municode -o "$OUT/harness.exe" "$SRC/harness.c"
"$CC" -O2 -Wall -Wextra -Werror -municode -o "$OUT/pipeserver.exe" "$SRC/pipeserver.c"
# The pipe server runs as a service: only kernel32, advapi32 and msvcrt (a test checks its imports).
"$CC" -O2 -Wall -Wextra -Werror -municode -static-libgcc -Wl,--nxcompat,--dynamicbase,--high-entropy-va \
  -o "$OUT/pwsync-pipe.exe" "$SRC/pwsync-pipe.c" -ladvapi32
rm -f "$OUT/pwsync-pipe.mjs" # the Node pipe endpoint it replaces
echo "build-windows: built $(cd "$OUT" && ls *.dll *.exe | tr '\n' ' ')in $OUT"
