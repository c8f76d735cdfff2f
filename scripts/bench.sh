#!/usr/bin/env bash
# Builds the release binaries and runs the benchmark: raw baselines and the marketplace on this
# machine in one run. Flags go to `bench` (see `bench --help`); the report lands in
# target/bench/report.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-infra.sh
cargo build --release -p ticketing -p load-tests
exec target/release/bench "$@"
