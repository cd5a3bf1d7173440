#!/usr/bin/env bash
# Fuzzes both ports of a daemon running every role (the debug build the tests use, reading its
# tenants from the tenants topic) with schemathesis, each against its OpenAPI document:
# - the admin API v1 against docs/openapi.json, with every check on — no 5xx, every status,
#   header and body as documented, schema-violating requests refused and schema-valid ones
#   accepted, stateful sequences (create, then read, change and delete what was created);
# - the ingress port against docs/openapi-ingress.json (read from the file: the public port does
#   not serve it), with every check on but one for the webhook routes (below). Its webhooks are
#   unsigned, so each is answered 401 (or 400, 404, 405 before its signature is looked at), and
#   its storefront signals name no tenant's publishable key (none has one before the admin
#   API's cases run), so each is answered 401 (or 400, 403, 405, 413 before the key is looked
#   at): the daemon's metrics must show no webhook and no signal accepted.
# Any failure fails the run and prints how to reproduce it.
#   scripts/api-fuzz.sh BROKERS [MAX_EXAMPLES]     # 100 examples per operation by default
# schemathesis comes from PyPI into a virtualenv outside the clone (scripts/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
brokers=${1:?usage: scripts/api-fuzz.sh BROKERS [MAX_EXAMPLES]}
examples=${2:-100}
. scripts/schemathesis.env
schemathesis="$SCHEMATHESIS_VENV/bin/schemathesis"
config="$PWD/scripts/schemathesis.toml"
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
# Likewise the storefront signals' limit per client address (every case comes from one).
export CARTSTREAM__INGRESS__TRACKING__ADDRESS_RATE_LIMIT_PER_SECOND=0
export CARTSTREAM__INGRESS__TRACKING__ADDRESS_RATE_LIMIT_BURST=0
# Platform apps, so that a Shopify or Salla store connected without a secret of its own (signed
# by the app, docs/platforms.md), and an OAuth connect of each, are accepted as the document
# says.
export CARTSTREAM__PLATFORMS__SHOPIFY__CLIENT_ID="apifuzz-shopify"
CARTSTREAM__PLATFORMS__SHOPIFY__CLIENT_SECRET="shpss_$(openssl rand -hex 16)"
export CARTSTREAM__PLATFORMS__SHOPIFY__CLIENT_SECRET
export CARTSTREAM__PLATFORMS__SALLA__CLIENT_ID="apifuzz-salla"
CARTSTREAM__PLATFORMS__SALLA__CLIENT_SECRET="salla_$(openssl rand -hex 16)"
CARTSTREAM__PLATFORMS__SALLA__WEBHOOK_SECRET="salla_$(openssl rand -hex 16)"
export CARTSTREAM__PLATFORMS__SALLA__CLIENT_SECRET CARTSTREAM__PLATFORMS__SALLA__WEBHOOK_SECRET
export CARTSTREAM__PLATFORMS__ZID__CLIENT_ID="apifuzz-zid"
CARTSTREAM__PLATFORMS__ZID__CLIENT_SECRET="zid_$(openssl rand -hex 16)"
export CARTSTREAM__PLATFORMS__ZID__CLIENT_SECRET
# And ShopiMind's OAuth installations, whose consent page needs the app's secret (which needs
# the key that seals what installations send).
CARTSTREAM__INGRESS__CREDENTIALS_KEY="$(openssl rand -base64 32)"
CARTSTREAM__INGRESS__SHOPIMIND_APP_SECRET="spm_$(openssl rand -hex 16)"
export CARTSTREAM__INGRESS__CREDENTIALS_KEY CARTSTREAM__INGRESS__SHOPIMIND_APP_SECRET
export CARTSTREAM__PLATFORMS__SHOPIMIND__RETURN_URLS='["https://app.shopimind.example/"]'
# Every role: retries, redrives and replays are answered by a delivery worker (with none, 503).
start_daemon "$bin/cartstream" all "$work/daemon.log"

# Runs schemathesis from the scratch folder, where it keeps its cache; on a failure prints its
# report and the daemon's last lines and fails the run, else the counts of cases.
fuzz() { # what is fuzzed (a word), then schemathesis run's arguments
    local what=$1 log="$work/schemathesis-$1.log"
    shift
    if ! (cd "$work" && "$schemathesis" --config-file "$config" run "$@" --max-examples "$examples" --no-color >"$log" 2>&1); then
        cat "$log" >&2
        echo "scripts/api-fuzz.sh: $what: an answer does not keep to the document; daemon log:" >&2
        tail -n 30 "$work/daemon.log" >&2
        exit 1
    fi
    echo "$what:"
    grep -E '^ +[0-9]+ generated|passed' "$log" | tail -n 2
}

ingress="$PWD/docs/openapi-ingress.json"
fuzz ingress-probes "$ingress" --url "http://127.0.0.1:$ingress_port" \
    --include-path-regex '^/(healthz|readyz)$' --checks all
# positive_data_acceptance expects a schema-valid request to be accepted (2xx). A webhook is
# accepted only when signed with its integration's secret over its exact body, which no
# generated request is: every one is refused, as it should be, so that check cannot apply.
# Every other check does, negative_data_rejection and unsupported_method among them.
fuzz ingress-webhooks "$ingress" --url "http://127.0.0.1:$ingress_port" \
    --include-path-regex '^/api/webhooks/' --checks all --exclude-checks positive_data_acceptance
# The same for storefront signals: accepted only with a tenant's publishable key.
fuzz ingress-tracking "$ingress" --url "http://127.0.0.1:$ingress_port" \
    --include-path-regex '^/api/tracking/' --checks all --exclude-checks positive_data_acceptance
# And OAuth connect's steps: only a link or a state this deployment signed goes on, which no
# generated request holds.
fuzz ingress-oauth "$ingress" --url "http://127.0.0.1:$ingress_port" \
    --include-path-regex '^/api/oauth/' --checks all --exclude-checks positive_data_acceptance

# What the ingress answered the fuzzed webhooks, from its own count; none may have been accepted.
answers=$(curl -fs "http://127.0.0.1:$admin_port/metrics" | grep '^cartstream_ingress_requests_total{' || true)
if [ -z "$answers" ]; then
    echo "scripts/api-fuzz.sh: the ingress counted no webhook answered" >&2
    exit 1
fi
echo "ingress answers (provider, status, count):"
echo "$answers" | sed -E 's/.*provider="([^"]*)",status="([0-9]+)"} ([0-9]+)$/  \1 \2 \3/' | sort -k2,2 -k1,1
if echo "$answers" | grep -q 'status="2\|status="302'; then
    echo "scripts/api-fuzz.sh: the ingress accepted an unsigned fuzzed webhook, a signal without a key or a connect step without a signed link or state" >&2
    exit 1
fi
# The admin API last: its cases may turn maintenance mode on (PUT /admin/v1/maintenance), and
# every webhook would then be answered 503.
fuzz admin-api "http://127.0.0.1:$admin_port/admin/v1/openapi.json" \
    --url "http://127.0.0.1:$admin_port" -H "Authorization: Bearer $token" --checks all

# The TLS verifier logs an error of its own for a test send to a fuzzed address whose server
# shows another name's certificate: that send's answer says so, and it is no error of the daemon.
errors() { grep ' ERROR \| panicked' "$work/daemon.log" | grep -v ' ERROR rustls_platform_verifier::'; }
if errors >/dev/null; then
    errors >&2
    echo "scripts/api-fuzz.sh: the daemon logged errors while fuzzed" >&2
    exit 1
fi
