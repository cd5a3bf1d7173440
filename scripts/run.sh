#!/usr/bin/env bash
# Installs what is missing, builds the release binary (cargo's progress shown: a first build
# compiles librocksdb and librdkafka and takes a while), starts a local broker on 127.0.0.1:9092
# (unless one is already there), and runs every role of the daemon (`cartstream all`) with
# config/example.toml. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
. scripts/ccache.sh

echo "building the release binary (cargo build --release); a first build compiles librocksdb and"
echo "librdkafka from source and takes about 20-30 minutes on 2 cores, later ones only what changed"
cargo build --release --bin cartstream

broker_pid=""
if (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
    echo "using the broker already listening on 127.0.0.1:9092"
else
    broker_pid=$(scripts/kafka.sh 9092 .cartstream/kafka)
    echo "started Apache Kafka on 127.0.0.1:9092 (pid $broker_pid, data in .cartstream/kafka)"
fi
trap '[ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; true' EXIT

# Built above: cargo only finds the binary up to date and runs it.
cargo run --quiet --release --bin cartstream -- check-config --config config/example.toml
cargo run --quiet --release --bin cartstream -- all --config config/example.toml
