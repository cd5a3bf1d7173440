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

echo "body: $(wc -c <"$body") bytes; $connections concurrent requests / records in flight; ${seconds} s rounds"
ingress_rounds "$rounds" "$seconds" "$connections"
echo "median ingress: $ingress_rps verified-and-acknowledged requests/s, daemon CPU $ingress_cpu_us µs/request"
echo "median plain producer: $plain_rps acknowledged records/s, producer CPU $plain_cpu_us µs/record"
awk -v a="$ingress_rps" -v b="$plain_rps" 'BEGIN { printf "ingress / plain producer: %.2f\n", a / b }'
