#!/usr/bin/env bash
# Starts a local tansu broker in the background and waits until it accepts connections.
#   scripts/broker.sh PORT DATA_DIR   → prints the broker's PID
# Its data lives in DATA_DIR/broker.db (SQLite), so it survives restarts and reports correct
# high watermarks.
#
# tansu 0.6.0's SQLite schema has no index on the record headers (header(topition, offset_id)),
# so fetching one record scans every header ever written: with ~70,000 headers (a minute of
# load) a fetch costs ~15 ms per record, and since tansu runs one storage operation at a time,
# consumers reading a backlog starve the producers. This script adds that index once tansu has
# created its tables (fetching a record then costs ~0.03 ms); everything else is tansu's own.
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
        if python3 - "$dir/broker.db" <<'PY'; then
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
db.execute("create index if not exists header_topition_offset_id on header (topition, offset_id)")
db.commit()
PY
            echo "$pid"
            exit 0
        fi
        echo "cannot add the header index to $dir/broker.db" >&2
        kill "$pid" 2>/dev/null || true
        exit 1
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$dir/broker.log" >&2; echo "the broker exited" >&2; exit 1; }
    sleep 0.1
done
echo "the broker did not listen on port $port within 30 s" >&2
kill "$pid" 2>/dev/null || true
exit 1
