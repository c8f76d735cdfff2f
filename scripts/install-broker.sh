#!/usr/bin/env bash
# Installs the Tansu broker (Kafka API) from crates.io unless it is already there.
# Built with the libsql feature: its SQLite engine keeps the log on disk (see README).
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

if [ -n "${TANSU_BIN:-}" ] && [ -x "${TANSU_BIN}" ]; then
    exit 0
fi
if [ -x "$CARGO_BIN/tansu" ] && "$CARGO_BIN/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    exit 0
fi

echo "Installing the Tansu broker $TANSU_VERSION from crates.io (about 17 minutes on 2 cores, once)..." >&2
cargo install tansu --version "$TANSU_VERSION" --locked --no-default-features --features libsql
