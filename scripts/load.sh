#!/usr/bin/env bash
# A short load run: verified-and-acknowledged webhooks per second through the ingress, next to
# a plain idempotent acks=all producer's records per second against the same broker, on the same
# machine, alternating rounds. Prints each round and the medians.
#   scripts/load.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-10}
connections=${3:-64}
scripts/install.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

work=$(mktemp -d)
. scripts/lib.sh
trap cleanup EXIT
start_broker
ingress_port=$(free_port)
admin_port=$(free_port)
prefix=load

cargo build --quiet --release -p cartstream -p cartstream-load --bins
bin="${CARGO_TARGET_DIR:-target}/release"
body=tests/fixtures/providers/shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json
cp "$body" "$work/body.json"
"$bin/cartstream" sign --provider shopify --secret acme-shopify-dev-secret "$body" >"$work/signature.txt"

start_daemon "$bin/cartstream" ingress
# The plain producer writes to the same topic (created by the daemon), with the same key and body.

ticks=$(getconf CLK_TCK)
# CPU seconds the daemon process (HTTP, verification, librdkafka threads) has used so far.
daemon_cpu() { awk -v t="$ticks" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$daemon_pid/stat"; }

echo "body: $(wc -c <"$body") bytes; $connections concurrent requests / records in flight; ${seconds} s rounds"
ingress=()
plain=()
for round in $(seq 1 "$rounds"); do
    before=$(daemon_cpu)
    line=$(WRK_DATA="$work" wrk -t1 -c"$connections" -d"${seconds}s" --latency \
        -s scripts/load/shopify.lua "http://127.0.0.1:$ingress_port/api/webhooks/shopify" | grep '^wrk:')
    requests=$(echo "$line" | sed -E 's/^wrk: ([0-9]+) requests.*/\1/')
    cpu=$(awk -v a="$before" -v b="$(daemon_cpu)" -v n="$requests" 'BEGIN { printf "%.0f", (b - a) * 1e6 / n }')
    echo "round $round ingress: $line; daemon CPU ${cpu} µs/request"
    ingress+=("$(echo "$line" | sed -E 's/.*: ([0-9]+) requests\/s.*/\1/')")
    TIMEFORMAT='%U %S'
    if ! { time "$bin/cartstream-load" ceiling --brokers "$brokers" --topic load.inbound.v1 \
        --body "$body" --tenant acme --in-flight "$connections" --seconds "$seconds" >"$work/plain.out"; } 2>"$work/plain.time"; then
        cat "$work/plain.out" "$work/plain.time" >&2
        exit 1
    fi
    line=$(cat "$work/plain.out")
    records=$(echo "$line" | sed -E 's/^plain producer: ([0-9]+) records.*/\1/')
    cpu=$(awk -v n="$records" '{ printf "%.0f", ($1 + $2) * 1e6 / n }' "$work/plain.time")
    echo "round $round $line; producer CPU ${cpu} µs/record"
    plain+=("$(echo "$line" | sed -E 's/.*: ([0-9]+) records\/s.*/\1/')")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mi=$(median "${ingress[@]}")
mp=$(median "${plain[@]}")
echo "median ingress: $mi verified-and-acknowledged requests/s"
echo "median plain producer: $mp acknowledged records/s"
awk -v a="$mi" -v b="$mp" 'BEGIN { printf "ingress / plain producer: %.2f\n", a / b }'
