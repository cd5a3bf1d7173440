#!/usr/bin/env bash
# Scrapes a real daemon and checks the exposition: starts a throw-away Apache Kafka broker and
# `cartstream all` with config/example.toml, sends one correctly signed and one badly signed
# Shopify webhook, lets the processor apply them, then runs `promtool check metrics` on
# /metrics and checks that every cartstream_ metric it shows is documented in docs/metrics.md
# and that the ones this traffic must produce are there.
#   scripts/ops/check_scrape.sh BINARY
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$1

work=$(mktemp -d)
. scripts/lib.sh
trap cleanup EXIT
start_broker
ingress_port=$(free_port)
admin_port=$(free_port)
prefix=opscheck

start_daemon "$bin" all "$work/daemon.log"
admin="http://127.0.0.1:$admin_port"
curl -fsS "$admin/healthz" >/dev/null

body=tests/fixtures/providers/shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json
send() { # signature, delivery id → HTTP status
    curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ingress_port/api/webhooks/shopify" \
        -H 'Content-Type: application/json' -H 'X-Shopify-Shop-Domain: acme-demo.myshopify.com' \
        -H 'X-Shopify-Topic: checkouts/create' -H "X-Shopify-Webhook-Id: $2" \
        -H "X-Shopify-Hmac-Sha256: $1" --data-binary @"$body"
}
good=$(send "$("$bin" sign --provider shopify --secret acme-shopify-dev-secret "$body")" ops-check-1)
bad=$(send "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" ops-check-2)
[ "$good" = 200 ] && [ "$bad" = 401 ] || { echo "webhooks answered $good and $bad, expected 200 and 401" >&2; exit 1; }

# Wait until the processor has published the event of the accepted webhook.
for _ in $(seq 1 150); do
    curl -fs "$admin/metrics" | grep -q '^cartstream_processor_events_total{' && break
    sleep 0.2
done
curl -fsS "$admin/metrics" >"$work/metrics.txt"

promtool check metrics <"$work/metrics.txt"
python3 - "$work/metrics.txt" docs/metrics.md <<'PY'
import re, sys
scrape, docs = sys.argv[1], sys.argv[2]
documented = set(re.findall(r"^\|\s*`(cartstream_[a-z0-9_]+)`", open(docs).read(), re.M))
families = set(re.findall(r"^# TYPE (cartstream_[a-z0-9_]+) ", open(scrape).read(), re.M))
missing = families - documented
if missing:
    sys.exit(f"metrics exposed but not in {docs}: {sorted(missing)}")
# What one accepted and one refused Shopify webhook, applied by the processor, must show.
needed = {
    "cartstream_ingress_requests_total", "cartstream_ingress_request_duration_seconds",
    "cartstream_ingress_signature_failures_total", "cartstream_ingress_in_flight_requests",
    "cartstream_ingress_body_size_bytes", "cartstream_kafka_ack_duration_seconds",
    "cartstream_kafka_producer_queue_messages", "cartstream_processor_events_total",
    "cartstream_processor_timers_pending", "cartstream_processor_consumer_lag_records",
    "cartstream_processor_outbox_records", "cartstream_processor_assigned_partitions",
    "cartstream_state_carts", "cartstream_state_write_duration_seconds",
}
absent = needed - families
if absent:
    sys.exit(f"metrics absent from the scrape: {sorted(absent)}")
text = open(scrape).read()
for series in ('cartstream_ingress_requests_total{provider="shopify",status="200"} 1',
               'cartstream_ingress_requests_total{provider="shopify",status="401"} 1',
               'cartstream_ingress_signature_failures_total{provider="shopify"} 1'):
    if series not in text:
        sys.exit(f"expected series not in the scrape: {series}")
print(f"scrape: {len(families)} cartstream metric families, all documented; promtool check metrics passed")
PY
