#!/usr/bin/env bash
# Starts an Apache Kafka node (KRaft, broker and controller in one process) in the background on
# 127.0.0.1:PORT with its data in DATA_DIR, waits until it answers a metadata request, and prints
# its pid.
#   scripts/kafka.sh PORT DATA_DIR
# The first start writes DATA_DIR/server.properties and formats the storage; a later start with
# the same DATA_DIR restarts the same node with its data. The broker's log is DATA_DIR/server.log.
# scripts/install.sh must have run (it fetches the jars from Maven Central into a cache).
#
# One node alone is fit for development and tests: the internal topics (consumer offsets,
# transaction state, share-group state) have one replica and a min ISR of 1 — with Kafka's
# defaults (3 and 2) transactions never initialise on one node — and a group's first rebalance
# is not delayed. Records are kept whatever their timestamps: tests run the daemon on manual
# clocks set to fixed dates, by now further back than the default seven-day retention, and a
# retention pass (every five minutes) would delete a test's partition up to its end before the
# test has consumed it — a processor resuming there skips to the new start of the log. The
# environment shapes other nodes (scripts/kafka-cluster.sh uses it):
#   KAFKA_NODE_ID          node id (1)
#   KAFKA_CONTROLLER_PORT  the controller listener's port (a free one)
#   KAFKA_VOTERS           the controller quorum, id@host:port,… (this node alone)
#   KAFKA_CLUSTER_ID       the cluster id every node is formatted with (a random one)
#   KAFKA_REPLICATION      replicas of the internal topics and new topics' default (1)
#   KAFKA_MIN_ISR          min.insync.replicas of internal and new topics (1)
#   KAFKA_WAIT_BROKERS     brokers the metadata answer must list before this returns (1; 0: don't wait)
#   KAFKA_HEAP             JVM heap flags (-Xms256m -Xmx1g)
#   KAFKA_SASL_SSL_PORT    also listen with SASL_SSL (SCRAM-SHA-512) on this port; the TLS
#                          material is generated into DATA_DIR/tls (ca.pem is the CA to trust) and
#                          the SCRAM user KAFKA_SCRAM_USER / KAFKA_SCRAM_PASSWORD is created at format
set -euo pipefail
port=${1:?usage: scripts/kafka.sh PORT DATA_DIR}
dir=${2:?usage: scripts/kafka.sh PORT DATA_DIR}
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/kafka/env.sh"
[ -d "$KAFKA_LIBS" ] || { echo "Apache Kafka is not installed in $KAFKA_LIBS: run scripts/install.sh" >&2; exit 1; }
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
config="$dir/server.properties"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

jvm=(java ${KAFKA_HEAP:--Xms256m -Xmx1g} -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15
    -Djava.awt.headless=true "-Dlog4j2.configurationFile=$here/kafka/log4j2.properties"
    "-Dkafka.logs.dir=$dir/logs" -cp "$KAFKA_LIBS/*")

if [ ! -f "$config" ]; then
    node=${KAFKA_NODE_ID:-1}
    controller_port=${KAFKA_CONTROLLER_PORT:-$(free_port)}
    voters=${KAFKA_VOTERS:-$node@127.0.0.1:$controller_port}
    replication=${KAFKA_REPLICATION:-1}
    min_isr=${KAFKA_MIN_ISR:-1}
    listeners="PLAINTEXT://127.0.0.1:$port"
    protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if [ -n "${KAFKA_SASL_SSL_PORT:-}" ]; then
        listeners="$listeners,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT"
        protocols="$protocols,SASL_SSL:SASL_SSL"
    fi
    cat >"$config" <<EOF
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=$listeners,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=$listeners
listener.security.protocol.map=$protocols
log.dirs=$dir/data
num.network.threads=2
num.io.threads=4
num.partitions=1
auto.create.topics.enable=false
default.replication.factor=$replication
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$replication
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=$replication
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
log.retention.ms=-1
EOF
    format=()
    if [ -n "${KAFKA_SASL_SSL_PORT:-}" ]; then
        tls="$dir/tls"
        mkdir -p "$tls"
        password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
        # A CA of this node's own and a certificate for 127.0.0.1 / localhost signed by it.
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=cartstream test CA" \
            -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout "$tls/broker.key" -out "$tls/broker.csr" 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tls/san.ext"
        openssl x509 -req -in "$tls/broker.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
            -CAcreateserial -days 30 -extfile "$tls/san.ext" -out "$tls/broker.pem" 2>/dev/null
        openssl pkcs12 -export -in "$tls/broker.pem" -inkey "$tls/broker.key" -certfile "$tls/ca.pem" \
            -name broker -passout "pass:$password" -out "$tls/broker.p12"
        cat >>"$config" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/broker.p12
ssl.keystore.password=$password
ssl.key.password=$password
EOF
        user=${KAFKA_SCRAM_USER:?KAFKA_SCRAM_USER is needed with KAFKA_SASL_SSL_PORT}
        secret=${KAFKA_SCRAM_PASSWORD:?KAFKA_SCRAM_PASSWORD is needed with KAFKA_SASL_SSL_PORT}
        format+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$secret]")
    fi
    cluster=${KAFKA_CLUSTER_ID:-$(python3 "$here/kafka/cluster_id.py")}
    if ! "${jvm[@]}" kafka.tools.StorageTool format --cluster-id "$cluster" --config "$config" \
        "${format[@]}" >"$dir/format.log" 2>&1; then
        cat "$dir/format.log" >&2
        rm -f "$config"
        exit 1
    fi
fi

(exec "${jvm[@]}" kafka.Kafka "$config" >>"$dir/server.log" 2>&1 </dev/null) &
pid=$!
echo "$pid" >"$dir/pid"
wait_brokers=${KAFKA_WAIT_BROKERS:-1}
if [ "$wait_brokers" -gt 0 ]; then
    if ! python3 "$here/kafka/ready.py" "127.0.0.1:$port" "$wait_brokers" 60; then
        tail -n 30 "$dir/server.log" >&2
        echo "the Kafka broker on 127.0.0.1:$port did not answer within 60 s" >&2
        kill "$pid" 2>/dev/null || true
        exit 1
    fi
fi
echo "$pid"
