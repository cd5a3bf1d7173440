#!/usr/bin/env bash
# One load run, start to finish: a fresh Apache Kafka broker, the daemon (`cartstream all`, release
# build) with a generated registry of the scenario's tenants (each subscribing an endpoint at the
# load tool's receiver), the scenario with its completeness check of the inbound, events,
# transitions and deliveries topics, then — with the daemon stopped — a plain acks=all producer against the same broker for
# the ceiling. Prints the report; writes load-tests/results/<scenario>-<time>/result.json and
# latency.svg.
#   load-tests/run.sh [SCENARIO_FILE] [CEILING_SECONDS]
# PROFILE=dev uses debug builds (for a quick try; the numbers are then not comparable).
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-load-tests/scenarios/steady.toml}
ceiling_seconds=${2:-15}
profile=${PROFILE:-release}
scripts/install.sh

if [ "$profile" = release ]; then
    cargo build --quiet --release -p cartstream -p cartstream-load --bins
    bin="${CARGO_TARGET_DIR:-target}/release"
else
    cargo build --quiet -p cartstream -p cartstream-load --bins
    bin="${CARGO_TARGET_DIR:-target}/debug"
fi

work=$(mktemp -d)
. scripts/lib.sh
trap cleanup EXIT
start_broker
ingress_port=$(free_port)
admin_port=$(free_port)
receiver_port=$(free_port)

name=$(basename "$scenario" .toml)
out="load-tests/results/$name-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
prefix=load
"$bin/cartstream-load" tenants --scenario "$scenario" --out "$work/tenants.toml" \
    --receiver "http://127.0.0.1:$receiver_port"
export CARTSTREAM__TENANTS__FILE="$work/tenants.toml"
start_daemon "$bin/cartstream" all "$out/daemon.log"

status=0
"$bin/cartstream-load" run --scenario "$scenario" --ingress "http://127.0.0.1:$ingress_port" \
    --brokers "$brokers" --prefix "$prefix" --processor --receiver "127.0.0.1:$receiver_port" \
    --out "$out" || status=$?
stop_daemon
concurrency=$(sed -nE 's/^concurrency *= *([0-9]+).*/\1/p' "$scenario")
"$bin/cartstream-load" ceiling --brokers "$brokers" --topic "$prefix.inbound.v1" \
    --in-flight "$concurrency" --seconds "$ceiling_seconds" --report "$out/result.json"
echo "report: $out/result.json, chart: $out/latency.svg (build: $profile, $(nproc) cores)"
exit "$status"
