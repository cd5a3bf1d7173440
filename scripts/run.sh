#!/usr/bin/env bash
# Installs what is missing, starts a local broker on 127.0.0.1:9092 (unless one is already
# there), and runs every role of the daemon (`cartstream all`) with config/example.toml.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh

broker_pid=""
if (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
    echo "using the broker already listening on 127.0.0.1:9092"
else
    broker_pid=$(scripts/kafka.sh 9092 .cartstream/kafka)
    echo "started Apache Kafka on 127.0.0.1:9092 (pid $broker_pid, data in .cartstream/kafka)"
fi
trap '[ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; true' EXIT

cargo run --quiet --release --bin cartstream -- check-config --config config/example.toml
cargo run --quiet --release --bin cartstream -- all --config config/example.toml
