#!/usr/bin/env bash
# CI's completeness check: the daemon (`cartstream all`, debug build) on a broker that is already
# running, the short scenario scenarios/ci.toml (a few thousand requests with a burst, duplicates,
# forged signatures, journeys and abandonments), and the checks that every valid request was
# acknowledged and every forged one refused with 401, that every acknowledged delivery is in
# <prefix>.inbound.v1 / .events.v1 exactly as often as it should be, that .transitions.v1 holds
# exactly the journeys' completions and the abandonments, once each, and that every transition
# was delivered once, signed, to the load tool's receiver (.deliveries.v1) — still so after a
# quiet period of LOAD_QUIET (3s) past the last expected record. scripts/test.sh calls it with
# its broker.
#   load-tests/ci.sh BROKERS
# The environment may add, for load-tests/failover.sh: LOAD_DURING, a command run in the
# background once the daemon is ready (its failure fails the check), LOAD_DISRUPTION (FROM..TO
# from the start of the load, when LOAD_DURING disturbs the daemon) with LOAD_MAX_DISRUPTED (the
# share of the requests overlapping it that may be answered 503, 504 or not in time),
# LOAD_MAX_RECEIPTS (receipts per transition, 1), LOAD_PATIENCE (how long the check waits for
# the last records, 30s) and LOAD_TIMEOUT (seconds for the whole run, 150).
set -euo pipefail
cd "$(dirname "$0")/.."
brokers=${1:?usage: load-tests/ci.sh BROKERS}
scenario=load-tests/scenarios/ci.toml

# The same targets and features as scripts/test.sh's `cargo test`, so nothing is
# built twice (a `-p … --bins` build would unify features differently and build librocksdb again).
cargo build --quiet --workspace --all-targets --features cartstream/fault-injection
bin="${CARGO_TARGET_DIR:-target}/debug"

work=$(mktemp -d)
. scripts/lib.sh
trap cleanup EXIT

ingress_port=$(free_port)
admin_port=$(free_port)
receiver_port=$(free_port)
# A prefix of its own, so that the topics hold this run's records only.
prefix="loadci$(date +%s)$$"
"$bin/cartstream-load" tenants --scenario "$scenario" --out "$work/tenants.toml" \
    --receiver "http://127.0.0.1:$receiver_port"
export CARTSTREAM__TENANTS__FILE="$work/tenants.toml"
start_daemon "$bin/cartstream" all "$work/daemon.log"

disruption=()
if [ -n "${LOAD_DISRUPTION:-}" ]; then
    disruption=(--disruption "$LOAD_DISRUPTION" --max-disrupted-share "${LOAD_MAX_DISRUPTED:?with LOAD_DISRUPTION}")
fi
during=""
if [ -n "${LOAD_DURING:-}" ]; then
    bash -c "$LOAD_DURING" &
    during=$!
fi
status=0
timeout "${LOAD_TIMEOUT:-150}" "$bin/cartstream-load" run --scenario "$scenario" \
    --ingress "http://127.0.0.1:$ingress_port" --brokers "$brokers" --prefix "$prefix" \
    --processor --receiver "127.0.0.1:$receiver_port" --patience "${LOAD_PATIENCE:-30s}" \
    --quiet "${LOAD_QUIET:-3s}" --max-receipts "${LOAD_MAX_RECEIPTS:-1}" "${disruption[@]}" \
    --out "$work/result" || status=$?
[ -z "$during" ] || wait "$during" || status=$?
if [ "$status" -ne 0 ]; then
    echo "load-tests/ci.sh: the completeness check failed (exit $status); daemon log:" >&2
    tail -n 50 "$work/daemon.log" >&2
fi
exit "$status"
