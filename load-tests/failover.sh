#!/usr/bin/env bash
# The completeness check (scenarios/ci.toml, as load-tests/ci.sh runs it) on a three-node Kafka
# cluster that loses a broker in the middle of the run: node 1 is killed (SIGKILL) five seconds
# in and restarted with its data six seconds later. Every acknowledged delivery must still be in
# <prefix>.inbound.v1 / .events.v1 / .transitions.v1 exactly as often as it should be, and every
# transition delivered once. scripts/test.sh runs it after the failover tests.
#   load-tests/failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=load-tests/scenarios/ci.toml

# The same targets as `cargo test --workspace --all-targets`, so nothing is built twice.
cargo build --quiet --workspace --all-targets
bin="${CARGO_TARGET_DIR:-target}/debug"

work=$(mktemp -d)
. scripts/lib.sh
# cleanup removes $work: stop the nodes first.
trap 'for p in "$work"/cluster/node-*/pid; do kill -9 "$(cat "$p")" 2>/dev/null; done; cleanup' EXIT

brokers=$(scripts/kafka-cluster.sh "$work/cluster")
ingress_port=$(free_port)
admin_port=$(free_port)
receiver_port=$(free_port)
prefix="failover$(date +%s)$$"
"$bin/cartstream-load" tenants --scenario "$scenario" --out "$work/tenants.toml" \
    --receiver "http://127.0.0.1:$receiver_port"
export CARTSTREAM__TENANTS__FILE="$work/tenants.toml"
export CARTSTREAM__KAFKA__REPLICATION_FACTOR=3
start_daemon "$bin/cartstream" all "$work/daemon.log"

node1="$work/cluster/node-1"
(
    sleep 5
    kill -9 "$(cat "$node1/pid")"
    echo "failover: node 1 killed"
    sleep 6
    scripts/kafka.sh "$(cat "$node1/port")" "$node1" >/dev/null
    echo "failover: node 1 restarted"
) &
killer=$!

status=0
timeout 240 "$bin/cartstream-load" run --scenario "$scenario" \
    --ingress "http://127.0.0.1:$ingress_port" --brokers "$brokers" --prefix "$prefix" \
    --processor --receiver "127.0.0.1:$receiver_port" --patience 60s --out "$work/result" \
    || status=$?
wait "$killer" || status=$?
if [ "$status" -ne 0 ]; then
    echo "load-tests/failover.sh: the completeness check failed (exit $status); daemon log:" >&2
    tail -n 50 "$work/daemon.log" >&2
fi
exit "$status"
