#!/usr/bin/env bash
# The whole suite: system packages the tests need, strict typecheck, then every test file on
# Node's test runner, then the secrecy scan over everything the run wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
bash test/env/install.sh
npx tsc --noEmit -p tsconfig.json
export PWSYNC_TEST_ROOT="${PWSYNC_TEST_ROOT:-$(mktemp -d /tmp/pwsync-test.XXXXXX)}"
mkdir -p "$PWSYNC_TEST_ROOT"
echo "test run writes under $PWSYNC_TEST_ROOT"
mapfile -t files < <(find test -name '*.test.ts' -not -path 'test/secrecy/*' | sort)
status=0
node --import tsx --test --test-reporter=spec "${files[@]}" || status=$?
node --import tsx --test --test-reporter=spec test/secrecy/*.test.ts || status=$?
exit $status
