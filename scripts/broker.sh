#!/usr/bin/env bash
# Starts a local tansu broker in the background and waits until it accepts connections.
#   scripts/broker.sh PORT DATA_DIR   → prints the broker's PID
# Its data lives in DATA_DIR/broker.db (SQLite), so it survives restarts and reports correct
# high watermarks.
set -euo pipefail
port=$1
dir=$2
mkdir -p "$dir"
(cd "$dir" && exec tansu broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "sqlite://broker.db" >broker.log 2>&1) &
pid=$!
for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "$pid"
        exit 0
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$dir/broker.log" >&2; echo "the broker exited" >&2; exit 1; }
    sleep 0.1
done
echo "the broker did not listen on port $port within 30 s" >&2
kill "$pid" 2>/dev/null || true
exit 1
