#!/usr/bin/env bash
# Runs the whole test suite; the tests start (and stop) the brokers and stores they need.
# The Rust tests first, then the Helm chart checks; both always run, and the script fails if
# either did.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-broker.sh
cargo_status=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast "$@" || cargo_status=$?
else
    cargo test --workspace --locked --no-fail-fast "$@" || cargo_status=$?
fi
chart_status=0
scripts/test-chart.sh || chart_status=$?
if [ "$cargo_status" -ne 0 ] || [ "$chart_status" -ne 0 ]; then
    echo "test.sh: FAILED (cargo tests: exit $cargo_status, chart checks: exit $chart_status)"
    # The cargo tests' status when they failed, else the chart checks'.
    [ "$cargo_status" -ne 0 ] && exit "$cargo_status"
    exit "$chart_status"
fi
