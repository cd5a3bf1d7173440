#!/usr/bin/env bash
# Fuzzes the admin API v1 against its OpenAPI document (docs/openapi.json) with schemathesis:
# a daemon (the debug build the tests use) reading its tenants from the tenants topic, and every
# check on — no 5xx, every status, header and body as documented, schema-violating requests
# refused and schema-valid ones accepted, stateful sequences (create, then read, change and
# delete what was created). Any failure fails the run and prints how to reproduce it.
#   scripts/api-fuzz.sh BROKERS [MAX_EXAMPLES]     # 100 examples per operation by default
# schemathesis comes from PyPI into a virtualenv outside the clone (scripts/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
brokers=${1:?usage: scripts/api-fuzz.sh BROKERS [MAX_EXAMPLES]}
examples=${2:-100}
. scripts/schemathesis.env
schemathesis="$SCHEMATHESIS_VENV/bin/schemathesis"
[ -x "$schemathesis" ] || scripts/install.sh

cargo build --quiet --workspace --all-targets --features cartstream/fault-injection
bin="${CARGO_TARGET_DIR:-target}/debug"

work=$(mktemp -d)
. scripts/lib.sh
trap cleanup EXIT
ingress_port=$(free_port)
admin_port=$(free_port)
prefix="apifuzz$(date +%s)$$"
token="apifuzz-$(openssl rand -hex 16)"
export CARTSTREAM__TENANTS__SOURCE=topic
CARTSTREAM__TENANTS__SEALING_KEY="$(openssl rand -base64 32)"
export CARTSTREAM__TENANTS__SEALING_KEY
export CARTSTREAM__ADMIN__TOKEN="$token"
# Thousands of cases a minute: the limit would answer most of them 429 and test nothing else.
export CARTSTREAM__ADMIN__WRITES_PER_MINUTE=0
start_daemon "$bin/cartstream" ingress "$work/daemon.log"

# From the scratch folder, where schemathesis keeps its cache.
if ! (cd "$work" && "$schemathesis" run "http://127.0.0.1:$admin_port/admin/v1/openapi.json" \
    --url "http://127.0.0.1:$admin_port" -H "Authorization: Bearer $token" \
    --checks all --max-examples "$examples" --no-color >"$work/schemathesis.log" 2>&1); then
    cat "$work/schemathesis.log" >&2
    echo "scripts/api-fuzz.sh: the admin API does not keep to docs/openapi.json; daemon log:" >&2
    tail -n 30 "$work/daemon.log" >&2
    exit 1
fi
grep -E '^ +[0-9]+ generated|passed' "$work/schemathesis.log" | tail -n 2
if grep -q ' ERROR \| panicked' "$work/daemon.log"; then
    grep ' ERROR \| panicked' "$work/daemon.log" >&2
    echo "scripts/api-fuzz.sh: the daemon logged errors while fuzzed" >&2
    exit 1
fi
