#!/usr/bin/env bash
# The performance report: every hot-path measurement in one run, printed as one table with each
# figure's target and its ratio to a reference measured in the same run — the plain producer for
# the ingress, and for the rest the same measurement of a baseline build (a git ref) when
# --baseline is given.
#
#   scripts/bench.sh [--baseline REF] [--rounds N] [--carts N] [--out FILE]
#
# What it runs (release builds; a broker it starts itself, Apache Kafka on this machine):
#   - ingress: scripts/load.sh's alternating rounds (wrk → ingress, and the plain producer), 64
#     connections, 10 s each; then the processor role alone over every record those rounds wrote;
#   - instruction counts (valgrind's callgrind) of the ingress hot path and of normalizing the
#     Shopify checkout: examples/instructions.rs;
#   - criterion: benches/normalize.rs, benches/state_step.rs, benches/ingress_hot_path.rs;
#   - examples/state_scale.rs (timers and disk per cart) and examples/delivery_bench.rs;
#   - scripts/dist.sh (the shipped binary's size).
# The baseline is built from `git archive REF` with the measuring tools of this tree
# (examples/instructions.rs, benches/support, examples/delivery_bench.rs) copied in, in its own
# build folder ($CARGO_TARGET_DIR-baseline); its criterion benches are its own. The first
# baseline build compiles RocksDB and librdkafka once.
# The table (Markdown) goes to stdout and to --out (default: bench-report.md in a folder whose
# path is printed at the end); the raw figures (results.txt) and each tool's output beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
baseline=""
rounds=3
carts=1000000
out=""
while (($#)); do
    case "$1" in
    --baseline) baseline=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --carts) carts=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: scripts/bench.sh [--baseline REF] [--rounds N] [--carts N] [--out FILE]" >&2; exit 2 ;;
    esac
done

scripts/install.sh
for tool in wrk valgrind; do
    command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool"; }
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}

work=$(mktemp -d)
keep=$(mktemp -d)
. scripts/lib.sh
trap cleanup EXIT
results="$keep/results.txt"
: >"$results"
out=${out:-$keep/bench-report.md}
# Records a figure: note NAME VALUE (the baseline's under base.NAME).
note() { echo "$1 $2" >>"$results"; echo "  $1 = $2"; }

# Builds the tree at $1 into target folder $2: the daemon, the load tool and the examples.
build() {
    (cd "$1" && CARGO_TARGET_DIR=$2 cargo build --quiet --release -p cartstream -p cartstream-load \
        --bins --example instructions --example state_scale --example delivery_bench)
}

trees=("$root")
targets=("$CARGO_TARGET_DIR")
tags=("")
if [ -n "$baseline" ]; then
    base_tree="$HOME/.cache/cartstream/bench-baseline"
    base_target="${CARGO_TARGET_DIR%/}-baseline"
    rm -rf "$base_tree" && mkdir -p "$base_tree"
    git archive "$baseline" | tar -x -C "$base_tree"
    mkdir -p "$base_tree/benches/support"
    cp examples/instructions.rs examples/delivery_bench.rs "$base_tree/examples/"
    cp benches/support/*.rs "$base_tree/benches/support/"
    echo "baseline: $(git rev-parse --short "$baseline") ($baseline), built in $base_target"
    build "$base_tree" "$base_target"
    trees+=("$base_tree")
    targets+=("$base_target")
    tags+=("base.")
fi
echo "this tree: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' with uncommitted changes')"
build "$root" "$CARGO_TARGET_DIR"
note commit "$(git rev-parse --short HEAD)"
[ -z "$baseline" ] || note base.commit "$(git rev-parse --short "$baseline")"

echo "== instruction counts (callgrind)"
for i in "${!trees[@]}"; do
    exe="${targets[$i]}/release/examples/instructions"
    for path in ingress normalize; do
        counts=()
        for n in 100 1100; do
            counts+=("$(cd "${trees[$i]}" && valgrind --tool=callgrind --callgrind-out-file=/dev/null \
                "$exe" "$path" "$n" 2>&1 | sed -nE 's/.*Collected : ([0-9]+).*/\1/p')")
        done
        note "${tags[$i]}instructions.$path" $(((counts[1] - counts[0]) / 1000))
    done
done

echo "== criterion benches"
for i in "${!trees[@]}"; do
    home="$work/criterion${i}"
    for bench in normalize state_step ingress_hot_path; do
        (cd "${trees[$i]}" && CARGO_TARGET_DIR=${targets[$i]} CRITERION_HOME=$home \
            cargo bench --quiet --bench "$bench" -- --noplot >"$keep/bench-$bench-$i.log" 2>&1) ||
            { cat "$keep/bench-$bench-$i.log" >&2; exit 1; }
    done
    python3 scripts/bench/criterion.py "$home" "${tags[$i]}" | while read -r name value; do note "$name" "$value"; done
done

echo "== state at scale: $carts carts"
note state.carts "$carts"
for i in "${!trees[@]}"; do
    (cd "${trees[$i]}" && "${targets[$i]}/release/examples/state_scale" --carts "$carts") >"$keep/state-$i.log"
    summary=$(tail -n 1 "$keep/state-$i.log")
    note "${tags[$i]}timers.fire_s" "$(jq -r '.fire_s' <<<"$summary")"
    note "${tags[$i]}timers.per_s" "$(jq -r '.fire_timers_per_s' <<<"$summary")"
    note "${tags[$i]}state.bytes_per_cart" "$(jq -r '.bytes_per_cart' <<<"$summary")"
    note "${tags[$i]}state.load_events_per_s" "$(jq -r '.load_events_per_s' <<<"$summary")"
done

start_broker
echo "== delivery: 20,000 transitions to a receiver on loopback, $rounds rounds"
for round in $(seq 1 "$rounds"); do
    for i in "${!trees[@]}"; do
        (cd "${trees[$i]}" && "${targets[$i]}/release/examples/delivery_bench" throughput \
            --brokers "$brokers" --transitions 20000) 2>/dev/null >"$keep/delivery-$i-$round.log"
        note "${tags[$i]}delivery.per_s.$round" "$(sed -nE 's/^deliveries\/s: ([0-9]+).*/\1/p' "$keep/delivery-$i-$round.log")"
        note "${tags[$i]}delivery.cpu_us.$round" "$(sed -nE 's/^process CPU per delivery: ([0-9.]+).*/\1/p' "$keep/delivery-$i-$round.log")"
    done
done

echo "== ingress and the plain producer: $rounds rounds of 10 s, 64 connections"
ingress_port=$(free_port)
admin_port=$(free_port)
prefix=bench
bin="$CARGO_TARGET_DIR/release"
cp tests/fixtures/providers/shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json "$work/body.json"
"$bin/cartstream" sign --provider shopify --secret acme-shopify-dev-secret "$work/body.json" >"$work/signature.txt"
start_daemon "$bin/cartstream" ingress "$work/ingress.log"
ingress_rounds "$rounds" 10 64 > >(tee "$keep/ingress.log")
stop_daemon
note ingress.rps "$ingress_rps"
note ingress.cpu_us "$ingress_cpu_us"
note plain.rps "$plain_rps"
note plain.cpu_us "$plain_cpu_us"
note inbound.records "$produced"

echo "== the processor role over those $produced records"
# Each build's processor starts with empty state in a consumer group of its own, and is done when
# it has applied every record (events, duplicates, invalid and test records counted) and Kafka has
# acknowledged all of its output. Its CPU is the whole process's, from start to done.
metric() { awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%d", s }' "$work/metrics"; }
for i in "${!trees[@]}"; do
    export CARTSTREAM__PROCESSOR__GROUP_ID="bench-processor-$i"
    rm -rf "$work/state"
    started=$(date +%s.%N)
    start_daemon "${targets[$i]}/release/cartstream" processor "$work/processor-$i.log"
    while :; do
        curl -fs "http://127.0.0.1:$admin_port/metrics" >"$work/metrics" || true
        applied=$(($(metric cartstream_processor_events_total) + $(metric cartstream_processor_duplicates_total) +
            $(metric cartstream_processor_invalid_records_total) + $(metric cartstream_processor_test_deliveries_total)))
        if [ "$applied" -ge "$produced" ] && [ "$(metric cartstream_processor_outbox_records)" -eq 0 ]; then break; fi
        kill -0 "$daemon_pid" || { cat "$work/processor-$i.log" >&2; exit 1; }
        sleep 0.2
    done
    cpu=$(process_cpu "$daemon_pid")
    wall=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    stop_daemon
    note "${tags[$i]}processor.records" "$applied"
    note "${tags[$i]}processor.cpu_s" "$cpu"
    note "${tags[$i]}processor.wall_s" "$wall"
done
unset CARTSTREAM__PROCESSOR__GROUP_ID

echo "== the shipped binary"
scripts/dist.sh "$work/dist" >/dev/null
note binary.stripped_bytes "$(stat -c %s "$work/dist/cartstream")"
note binary.release_bytes "$(stat -c %s "$CARGO_TARGET_DIR/release/cartstream")"

python3 scripts/bench/report.py "$results" | tee "$out"
echo "report: $out; figures: $results"
