#!/usr/bin/env bash
# Runs the whole test suite against a broker of its own: installs what is missing, starts tansu
# on a free port with a throw-away data folder, runs `cargo test`, then the load tool's
# completeness check against the real daemon (load-tests/ci.sh), and stops the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh

data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
broker_pid=$(scripts/broker.sh "$port" "$data")
cleanup() {
    kill "$broker_pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT

export CARTSTREAM_TEST_BROKERS="127.0.0.1:$port"
CARTSTREAM_TEST_TANSU=$(command -v tansu)
export CARTSTREAM_TEST_TANSU
echo "testing against tansu on $CARTSTREAM_TEST_BROKERS"
cargo test --workspace --all-targets "$@"
load-tests/ci.sh "$CARTSTREAM_TEST_BROKERS"
