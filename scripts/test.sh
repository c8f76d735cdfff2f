#!/usr/bin/env bash
# Runs the whole test suite; the tests start (and stop) the brokers and stores they need.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-broker.sh
if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --workspace --locked --no-fail-fast "$@"
else
    exec cargo test --workspace --locked --no-fail-fast "$@"
fi
