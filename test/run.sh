#!/usr/bin/env bash
# The whole suite: system packages the tests need, strict typecheck, then every test file on
# Node's test runner, then the secrecy scan over everything the run wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
bash test/env/install.sh
# The `kerberos` module is an optional dependency built from source against libkrb5-dev: an
# `npm install` that ran before libkrb5-dev was there dropped it silently, and `npm rebuild`
# cannot bring it back. It is built linked to MIT's libraries (not dlopen'ed with RTLD_DEEPBIND)
# so that libfaketime can skew the hub's clock in the Kerberos tests.
export npm_config_kerberos_use_rtld=false
if ! node -e "require('kerberos')" 2>/dev/null; then
  echo "building the kerberos module (npm install)"
  npm install --no-audit --no-fund
fi
if ! ldd node_modules/kerberos/build/Release/kerberos.node | grep -q libkrb5; then
  echo "rebuilding the kerberos module linked to libkrb5 (for the clock-skew tests)"
  npm rebuild kerberos
fi
npx tsc --noEmit -p tsconfig.json
# The folder rules of ARCHITECTURE.md (who may import what, no import cycles): .dependency-cruiser.cjs.
npm run --silent check:imports
export PWSYNC_TEST_ROOT="${PWSYNC_TEST_ROOT:-$(mktemp -d /tmp/pwsync-test.XXXXXX)}"
mkdir -p "$PWSYNC_TEST_ROOT"
echo "test run writes under $PWSYNC_TEST_ROOT"
mapfile -t files < <(find test -name '*.test.ts' -not -path 'test/secrecy/*' -not -path 'test/samba/*' | sort)
mapfile -t samba < <(find test/samba -name '*.test.ts' 2>/dev/null | sort)
status=0
node --import tsx --test --test-reporter=spec "${files[@]}" || status=$?
# The Samba AD DC tests: each file in its own network namespace, with the DC, hub and notifier.
for f in "${samba[@]}"; do
  bash test/env/in-netns.sh node --import tsx --test --test-reporter=spec "$f" || status=$?
done
node --import tsx --test --test-reporter=spec test/secrecy/*.test.ts || status=$?
exit $status
