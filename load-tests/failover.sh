#!/usr/bin/env bash
# The completeness check (load-tests/ci.sh, scenarios/ci.toml) on a three-node Kafka cluster that
# loses a broker in the middle of the run: node 1 is killed (SIGKILL) five seconds in and
# restarted with its data six seconds later. Every acknowledged delivery must still be in
# <prefix>.inbound.v1 / .events.v1 / .transitions.v1 exactly as often as it should be, and every
# transition delivered once. scripts/test.sh runs it after the failover tests.
# The disruption window: from 4 s into the load (the kill comes at 5 s from the daemon being
# ready, the load starts a moment after) to 30 s (the partitions of node 1 get new leaders once
# its session times out, 9 s after the kill, and the node is back by then); requests overlapping
# it may be answered 503, 504 or not in time, at most a quarter of them (each of the 32 requests
# in flight waits out the 5 s ack timeout once or twice: 64 of about 1,000 in one run). Before
# and after it, every valid request must be acknowledged.
#   load-tests/failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
cluster=$(mktemp -d)
trap 'for p in "$cluster"/node-*/pid; do stop_kafka "$(cat "$p")"; done; rm -rf "$cluster"' EXIT
brokers=$(scripts/kafka-cluster.sh "$cluster")

# Runs in a shell of its own (load-tests/ci.sh's LOAD_DURING), whose failure fails the check: a
# kill that kills nothing or a restart that does not answer must not pass for a disruption.
disrupt() {
    set -euo pipefail
    local node1="$1" pid
    pid=$(cat "$node1/pid")
    kill -0 "$pid" || { echo "failover: node 1 ($pid) is not running before the kill" >&2; exit 1; }
    sleep 5
    kill -9 "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "failover: node 1 ($pid) survived SIGKILL" >&2
        exit 1
    fi
    echo "failover: node 1 killed"
    sleep 6
    # scripts/kafka.sh fails unless the node answers a metadata request.
    pid=$(scripts/kafka.sh "$(cat "$node1/port")" "$node1")
    kill -0 "$pid"
    echo "$pid" >"$node1/pid"
    echo "failover: node 1 restarted"
}
export -f disrupt

CARTSTREAM__KAFKA__REPLICATION_FACTOR=3 LOAD_DURING="disrupt '$cluster/node-1'" \
    LOAD_DISRUPTION=4s..30s LOAD_MAX_DISRUPTED=0.25 \
    LOAD_PATIENCE=60s LOAD_TIMEOUT=240 load-tests/ci.sh "$brokers"
