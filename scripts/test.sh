#!/usr/bin/env bash
# Runs the whole test suite against Apache Kafka: installs what is missing, starts a broker on a
# free port with a throw-away data folder, runs `cargo test`, then the load tool's completeness
# check against the real daemon (load-tests/ci.sh), the README's OAuth connect of a fake Shopify
# store (scripts/connect-demo.sh) and the fuzzing of the admin API and the
# ingress port against their OpenAPI documents (scripts/api-fuzz.sh), and stops the broker. Then the failover
# step, on three-node clusters of its own: the tests that kill and freeze a broker under traffic
# (one at a time), and the completeness check with a broker killed and restarted mid-run.
#   scripts/test.sh [cargo test arguments]
# FAILOVER=0 skips the failover step.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
. scripts/ccache.sh
. scripts/browser.env

work=$(mktemp -d)
. scripts/lib.sh
trap cleanup EXIT
start_broker

export CARTSTREAM_TEST_BROKERS="$brokers"
echo "testing against Apache Kafka on $CARTSTREAM_TEST_BROKERS"
cargo test --workspace --all-targets --features cartstream/fault-injection "$@"
load-tests/ci.sh "$CARTSTREAM_TEST_BROKERS"
# The README's OAuth connect, end to end against the fake Shopify, as a new user runs it.
CARTSTREAM_DEMO_PROFILE=debug scripts/connect-demo.sh "$CARTSTREAM_TEST_BROKERS"
scripts/api-fuzz.sh "$CARTSTREAM_TEST_BROKERS"
cleanup

if [ "${FAILOVER:-1}" != 0 ]; then
    echo "failover: three-node clusters"
    cargo test --test it --features cartstream/fault-injection failover -- --ignored --test-threads=1
    load-tests/failover.sh
fi
