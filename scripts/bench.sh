#!/usr/bin/env bash
# Builds the release binaries and runs the benchmark twice, once per read store (embedded, then
# CQL on a local Cassandra node): each run measures its raw baselines (Kafka keyed idempotent
# produce and consume, fjall and Cassandra writes and point reads, bare HTTP) and the
# marketplace on this machine. Flags go to both `bench` runs (see `bench --help`); the reports
# land in target/bench/{embedded,cql}/report.{md,json}. BENCH_STORES=embedded (or cql) runs one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh
scripts/install-infra.sh
cargo build --release --locked -p ticketing -p load-tests
for store in ${BENCH_STORES:-embedded cql}; do
    target/release/bench --store "$store" --out "target/bench/$store" "$@"
done
