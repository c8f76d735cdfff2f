#!/usr/bin/env bash
# Starts everything on this machine: a local Kafka broker (log under ./data), the schema registry,
# the command services, the projectors and the query API, and the web client, behind
# http://127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh
scripts/install-infra.sh
# The web client served at / (npm packages from the registry, built when its sources changed).
scripts/install-web.sh --no-browser
exec cargo run --release --locked -p ticketing -- up
