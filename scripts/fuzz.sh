#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for FUZZ_SECONDS each (default 30), starting from
# its checked-in corpus (fuzz/corpus/<target>/). New inputs the fuzzer finds go to a scratch
# directory; a crash or a timeout fails the run and leaves its input in fuzz/artifacts/<target>/
# (reproduce with `cargo fuzz run <target> <that file>`). Installs cargo-fuzz when missing.
#
# libFuzzer's instrumentation is passed to rustc as unstable options (-Z…); RUSTC_BOOTSTRAP=1
# lets the stable toolchain accept them, so no nightly toolchain is needed. AddressSanitizer's
# runtime ships with the stable toolchain too.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
case "$seconds" in
    ''|*[!0-9]*) echo "fuzz.sh: FUZZ_SECONDS must be a whole number of seconds, got '$seconds'" >&2; exit 2 ;;
esac
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
start=$SECONDS
targets=$(cd fuzz/fuzz_targets && ls ./*.rs | sed 's#^\./##; s#\.rs$##')
echo "fuzz.sh: building the targets"
cargo fuzz build --fuzz-dir fuzz
status=0
for target in $targets; do
    scratch=$(mktemp -d)
    echo "fuzz.sh: $target for ${seconds}s from fuzz/corpus/$target"
    if ! cargo fuzz run --fuzz-dir fuzz "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>"$scratch.log"; then
        tail -n 60 "$scratch.log"
        echo "fuzz.sh: $target FAILED (its input is under fuzz/artifacts/$target/)"
        status=1
    else
        grep -E "^stat::number_of_executed_units|^Done" "$scratch.log" | sed "s/^/fuzz.sh: $target: /" || true
    fi
    rm -rf "$scratch" "$scratch.log"
done
echo "fuzz.sh: $([ $status -eq 0 ] && echo passed || echo FAILED) ($((SECONDS - start))s)"
exit "$status"
