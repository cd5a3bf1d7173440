#!/usr/bin/env bash
# What ships: the release build stripped (dist/cartstream), its symbols and line tables in
# dist/cartstream.debug, linked from the binary by a debuglink (gdb and perf find it there).
# Prints both sizes.
#   scripts/dist.sh [OUT_DIR]          # default dist/
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
cargo build --quiet --release --locked --bin cartstream
built="${CARGO_TARGET_DIR:-target}/release/cartstream"
mkdir -p "$out"
objcopy --only-keep-debug "$built" "$out/cartstream.debug"
objcopy --strip-all --add-gnu-debuglink="$out/cartstream.debug" "$built" "$out/cartstream"
ls -l "$built" "$out/cartstream" "$out/cartstream.debug" | awk '{printf "%-50s %6.1f MB\n", $NF, $5 / 1e6}'
