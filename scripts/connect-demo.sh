#!/usr/bin/env bash
# Connects a store of a fake Shopify to cartstream through OAuth, as a merchant would, and shows
# its first webhook arriving — on this machine, nothing to set up:
# - a Kafka broker of its own on a free port (or the one given), and cartstream running every
#   role, its tenants on the tenants topic, with a Shopify app whose platform is the fake;
# - the fake Shopify (examples/fake_shopify.rs), HTTPS on loopback with a CA of its own, which
#   cartstream is told to trust (platforms.ca_file);
# - the tenant acme made through the admin API, and its install link for the shop
#   demo-store.myshopify.com (POST /admin/v1/tenants/acme/connect);
# - the link opened the way the merchant's browser opens it (curl following the redirects, with
#   a cookie jar): to the fake's consent screen, which consents, and back to cartstream's
#   callback, which exchanges the code, subscribes the shop's webhooks and writes the
#   integration;
# - the fake then sends the shop's first webhook, checkouts/create, signed with the app's secret,
#   and the script prints it as it landed on the inbound topic under acme.
# Everything it started stops when it ends. Fails if any step does.
#   scripts/connect-demo.sh [BROKERS]
# The binaries are the release build (built if missing); CARTSTREAM_DEMO_PROFILE=debug uses
# the debug build the tests made.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
profile=${CARTSTREAM_DEMO_PROFILE:-release}
case $profile in
release) cargo build --quiet --release --bin cartstream --example fake_shopify --example read_topic ;;
*) cargo build --quiet --features cartstream/fault-injection --bin cartstream --example fake_shopify --example read_topic ;;
esac
bin="$CARGO_TARGET_DIR/$profile"

work=$(mktemp -d)
. scripts/lib.sh
fake_pid=""
stop_fake() {
    if [ -n "$fake_pid" ]; then kill "$fake_pid" 2>/dev/null && wait "$fake_pid" 2>/dev/null; fi
    fake_pid=""
}
trap 'stop_fake || true; cleanup' EXIT
if [ -n "${1:-}" ]; then brokers=$1; else start_broker; fi

shop=demo-store.myshopify.com
client_id=demo-shopify-app
client_secret="shpss_$(openssl rand -hex 16)"
"$bin/examples/fake_shopify" "$client_id" "$client_secret" "$work/fake-ca.pem" "$shop" >"$work/fake.log" 2>&1 &
fake_pid=$!
for _ in $(seq 100); do [ -s "$work/fake.log" ] && break; sleep 0.1; done
fake=$(head -n 1 "$work/fake.log")
case $fake in https://*) ;; *) cat "$work/fake.log" >&2; echo "connect-demo: the fake Shopify did not start" >&2; exit 1 ;; esac
echo "== the fake Shopify listens on $fake"

ingress_port=$(free_port)
admin_port=$(free_port)
prefix="demo$(date +%s)$$"
token="demo-$(openssl rand -hex 16)"
export CARTSTREAM__TENANTS__SOURCE=topic
CARTSTREAM__TENANTS__SEALING_KEY="$(openssl rand -base64 32)"
export CARTSTREAM__TENANTS__SEALING_KEY
export CARTSTREAM__ADMIN__TOKEN="$token"
# `localhost`: a browser (and curl) sends the Secure cookie that ties the consent to it back to
# a loopback address over plain HTTP only under that name.
export CARTSTREAM__INGRESS__PUBLIC_URL="http://localhost:$ingress_port"
export CARTSTREAM__PLATFORMS__SHOPIFY__CLIENT_ID="$client_id"
export CARTSTREAM__PLATFORMS__SHOPIFY__CLIENT_SECRET="$client_secret"
export CARTSTREAM__PLATFORMS__SHOPIFY__API_URL="$fake/{shop}"
export CARTSTREAM__PLATFORMS__CA_FILE="$work/fake-ca.pem"
start_daemon "$bin/cartstream" all "$work/daemon.log"
echo "== cartstream listens on $CARTSTREAM__INGRESS__PUBLIC_URL (admin API on 127.0.0.1:$admin_port)"

api() { curl -sS --fail-with-body -H "Authorization: Bearer $token" "$@"; echo; }
echo "== the tenant acme, and the install link the merchant is sent"
api -d '{"id":"acme"}' "http://127.0.0.1:$admin_port/admin/v1/tenants"
link=$(api -d "{\"provider\":\"shopify\",\"shop\":\"$shop\"}" "http://127.0.0.1:$admin_port/admin/v1/tenants/acme/connect")
echo "$link"
install_url=$(echo "$link" | python3 -c 'import json,sys; print(json.load(sys.stdin)["install_url"])')

echo "== the merchant's browser opens it: the consent screen, then the callback"
curl -sS --fail-with-body -L --cacert "$work/fake-ca.pem" -c "$work/cookies" -b "$work/cookies" "$install_url"
echo

echo "== the shop's first webhook, as the fake Shopify sent it and cartstream answered"
for _ in $(seq 100); do [ "$(wc -l <"$work/fake.log")" -ge 2 ] && break; sleep 0.1; done
sed -n 2p "$work/fake.log"
grep -q ': 200 OK' "$work/fake.log" || { cat "$work/fake.log" "$work/daemon.log" >&2; exit 1; }

echo "== and on the inbound topic ($prefix.inbound.v1), under the tenant acme"
"$bin/examples/read_topic" "$prefix.inbound.v1" "$brokers" | cut -c1-400 | tee "$work/inbound.txt"
grep -q 'cartstream-tenant: acme' "$work/inbound.txt" || { echo "connect-demo: the webhook is not on the inbound topic" >&2; exit 1; }
echo "connect-demo: the store demo-store.myshopify.com is connected to acme and its first webhook arrived"
