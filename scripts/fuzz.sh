#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/, cargo-fuzz on the nightly toolchain) for SECONDS each and prints
# each target's executions and corpus size. Any failing input stops the run with status 1 and is
# left in fuzz/artifacts/<target>/ (copy it to fuzz/regressions/<target>/ once fixed: the unit
# tests replay that folder on every run; the corpus, fuzz/corpus/<target>/, is replayed only
# here, as each target starts).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default 10 s, every target
#
# KEEP=1 adds what the fuzzer finds to fuzz/corpus/<target>/ and minimizes the corpus after
# (a campaign); by default the corpus is only read (CI). The nightly toolchain and cargo-fuzz are
# installed when missing. The build (release, debug assertions and overflow checks on, no
# sanitizer: the code under test is safe Rust, and a panic is what the properties report) goes
# to ~/.cache/cartstream/target-fuzz, outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ccache.sh
seconds=${1:-10}
shift || true
export CARGO_TARGET_DIR="${CARTSTREAM_FUZZ_TARGET_DIR:-$HOME/.cache/cartstream/target-fuzz}"
flags=(--sanitizer none --codegen-units 16)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2

python3 fuzz/seeds.py >/dev/null
cargo +nightly fuzz build "${flags[@]}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then mapfile -t targets < <(cargo +nightly fuzz list); fi
if [ ${#targets[@]} -eq 0 ]; then
    echo "scripts/fuzz.sh: no fuzz target to run (cargo fuzz list printed none)" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-12s %14s %8s\n' target executions corpus
total=0
for target in "${targets[@]}"; do
    if [ "${KEEP:-0}" = 1 ]; then
        dirs=("fuzz/corpus/$target")
    else
        mkdir -p "$work/$target"
        dirs=("$work/$target" "fuzz/corpus/$target")
    fi
    log="$work/$target.log"
    if ! cargo +nightly fuzz run "${flags[@]}" "$target" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=5 -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ "${KEEP:-0}" = 1 ]; then
        cargo +nightly fuzz cmin "${flags[@]}" "$target" "fuzz/corpus/$target" >"$log.cmin" 2>&1
    fi
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    printf '%-12s %14s %8s\n' "$target" "$runs" "$corpus"
    total=$((total + runs))
done
printf '%-12s %14s\n' total "$total"
