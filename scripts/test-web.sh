#!/usr/bin/env bash
# The web client's tests: installs what they need (scripts/install-web.sh), runs the Vitest unit
# and component tests, then the end-to-end tests in headless Chromium, which start the real
# backend (`ticketing up`, from TICKETING_BIN, default target/debug/ticketing) on free ports
# with a fresh data directory and stop it afterwards. Screenshots and logs of every step:
# web/e2e/artifacts/. Both parts always run; the script fails if either did.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

scripts/install-web.sh

unit_status=0
npm --prefix web test --silent || unit_status=$?

e2e_status=0
bin="${TICKETING_BIN:-target/debug/ticketing}"
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
if [ ! -x "$bin" ]; then
    echo "test-web: the ticketing binary is missing at $bin: build it first (cargo build -p ticketing)," >&2
    echo "test-web: or point TICKETING_BIN at one. The end-to-end tests need the real backend." >&2
    e2e_status=1
else
    # A hung browser or backend must not hold the run forever; the tests stop what they start.
    TICKETING_BIN="$bin" timeout --signal=TERM --kill-after=30s "${WEB_E2E_TIMEOUT:-15m}" \
        npm --prefix web run --silent test:e2e || e2e_status=$?
fi

if [ "$unit_status" -ne 0 ] || [ "$e2e_status" -ne 0 ]; then
    echo "web tests: FAILED (unit: exit $unit_status, end-to-end: exit $e2e_status; artifacts in web/e2e/artifacts/) ($((SECONDS - start))s)"
    [ "$unit_status" -ne 0 ] && exit "$unit_status"
    exit "$e2e_status"
fi
echo "web tests: passed ($((SECONDS - start))s)"
