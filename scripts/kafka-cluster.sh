#!/usr/bin/env bash
# Starts a three-node Apache Kafka cluster (KRaft; each node a broker and a controller) on free
# loopback ports, with its data in DATA_DIR/node-1 … node-3, waits until every broker is in the
# metadata, and prints the bootstrap list (host:port,host:port,host:port).
#   scripts/kafka-cluster.sh DATA_DIR
# New topics and the internal ones get three replicas and min.insync.replicas=2, so one node can
# be lost without losing an acknowledged record or refusing writes. Each node's pid is in
# DATA_DIR/node-N/pid and its port in DATA_DIR/node-N/port; `scripts/kafka.sh PORT DATA_DIR/node-N`
# restarts a stopped node with its data.
set -euo pipefail
dir=${1:?usage: scripts/kafka-cluster.sh DATA_DIR}
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$dir"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ports=() controllers=() voters=""
for node in 1 2 3; do
    ports+=("$(free_port)")
    controllers+=("$(free_port)")
    voters="$voters${voters:+,}$node@127.0.0.1:${controllers[$((node - 1))]}"
done
cluster=$(python3 "$here/kafka/cluster_id.py")
bootstrap=""
for node in 1 2 3; do
    port=${ports[$((node - 1))]}
    mkdir -p "$dir/node-$node"
    echo "$port" >"$dir/node-$node/port"
    KAFKA_NODE_ID=$node KAFKA_CONTROLLER_PORT=${controllers[$((node - 1))]} KAFKA_VOTERS=$voters \
        KAFKA_CLUSTER_ID=$cluster KAFKA_REPLICATION=3 KAFKA_MIN_ISR=2 KAFKA_WAIT_BROKERS=0 \
        KAFKA_HEAP="${KAFKA_HEAP:--Xms256m -Xmx768m}" \
        "$here/kafka.sh" "$port" "$dir/node-$node" >/dev/null
    bootstrap="$bootstrap${bootstrap:+,}127.0.0.1:$port"
done
if ! python3 "$here/kafka/ready.py" "127.0.0.1:${ports[0]}" 3 90; then
    for node in 1 2 3; do tail -n 20 "$dir/node-$node/server.log" >&2; done
    echo "the cluster did not list three brokers within 90 s" >&2
    for node in 1 2 3; do kill "$(cat "$dir/node-$node/pid")" 2>/dev/null || true; done
    exit 1
fi
echo "$bootstrap"
