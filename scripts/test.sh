#!/usr/bin/env bash
# Runs the whole test suite; the tests start (and stop) the brokers and stores they need.
# The Rust tests first, then the web client's tests (scripts/test-web.sh: Vitest, then
# end-to-end in headless Chromium against the `ticketing` binary the Rust tests built), the
# fuzz targets for a bounded time (scripts/fuzz.sh, FUZZ_SECONDS each), then the Helm chart
# checks; all always run, and the script fails if any did.
#
# `cargo test` runs each test binary in one process, so the binary's tests share one Kafka
# broker and one Cassandra node (platform::local::shared); a runner with a process per test
# would start a JVM per test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh
scripts/install-infra.sh
scripts/install-python-clients.sh
cargo_status=0
# A hung test must not hold CI forever.
timeout --signal=KILL "${TEST_TIMEOUT:-75m}" cargo test --workspace --locked --no-fail-fast "$@" || cargo_status=$?
web_status=0
scripts/test-web.sh || web_status=$?
fuzz_status=0
scripts/fuzz.sh || fuzz_status=$?
chart_status=0
scripts/test-chart.sh || chart_status=$?
if [ "$cargo_status" -ne 0 ] || [ "$web_status" -ne 0 ] || [ "$fuzz_status" -ne 0 ] || [ "$chart_status" -ne 0 ]; then
    echo "test.sh: FAILED (cargo tests: exit $cargo_status, web client: exit $web_status, fuzzing: exit $fuzz_status, chart checks: exit $chart_status)"
    # The first failure's status: cargo tests, web client, fuzzing, chart checks.
    [ "$cargo_status" -ne 0 ] && exit "$cargo_status"
    [ "$web_status" -ne 0 ] && exit "$web_status"
    [ "$fuzz_status" -ne 0 ] && exit "$fuzz_status"
    exit "$chart_status"
fi
