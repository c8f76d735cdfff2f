#!/usr/bin/env bash
# Starts everything on this machine: a local Kafka broker (log under ./data), the schema registry,
# the command services, the projectors and the query API, behind http://127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh
scripts/install-infra.sh
exec cargo run --release --locked -p ticketing -- up
