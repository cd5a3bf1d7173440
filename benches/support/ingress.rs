//! The ingress hot path, without sockets or Kafka — route the path, read the tenant clue,
//! resolve the integration, verify the signature, and build the record's Kafka headers — and
//! its cases: real vendor payloads from `tests/fixtures/providers/`, correctly signed. Shared by
//! `benches/ingress_hot_path.rs` (time) and `examples/instructions.rs` (instruction counts).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use cartstream::ingress::route::{self, Route};
use cartstream::kafka::inbound;
use cartstream::providers::{self, Provider};
use cartstream::tenants::Registry;
use http::{HeaderMap, HeaderName, HeaderValue};

const TENANTS: &str = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "acme.myshopify.com"
  secret = "acme-shopify-secret"
  previous_secret = "acme-shopify-old-secret"
  [[tenant.integration]]
  provider = "salla"
  merchant_id = "1305146709"
  secret = "acme-salla-secret"
  [[tenant.integration]]
  provider = "standard"
  integration_key = "int_acme_standard_0000001"
  secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"#;

const TIMESTAMP: u64 = 1_700_000_000;

fn fixture(relative: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/providers")
            .join(relative),
    )
    .unwrap()
}

fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

pub struct Case {
    pub name: &'static str,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

pub fn cases() -> Vec<Case> {
    let shopify = fixture("shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json");
    let salla = fixture("salla/docs_order_created.json");
    let standard = fixture("shopify/derived_orders_create_body_from_sdkjs_2024-04.json");
    let standard_key = providers::standard::Standard
        .key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    vec![
        Case {
            name: "shopify",
            path: "/api/webhooks/shopify".into(),
            headers: headers(&[
                (
                    "x-shopify-hmac-sha256",
                    providers::shopify::sign(b"acme-shopify-secret", &shopify),
                ),
                ("x-shopify-shop-domain", "acme.myshopify.com".into()),
                ("x-shopify-topic", "checkouts/create".into()),
                (
                    "x-shopify-webhook-id",
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".into(),
                ),
            ]),
            body: shopify,
        },
        Case {
            name: "salla",
            path: "/api/webhooks/salla".into(),
            headers: headers(&[
                ("x-salla-security-strategy", "Signature".into()),
                (
                    "x-salla-signature",
                    providers::salla::sign(b"acme-salla-secret", &salla),
                ),
            ]),
            body: salla,
        },
        Case {
            name: "standard",
            path: "/api/webhooks/standard/int_acme_standard_0000001".into(),
            headers: headers(&[
                ("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W".into()),
                ("webhook-timestamp", TIMESTAMP.to_string()),
                (
                    "webhook-signature",
                    providers::standard::sign(
                        &standard_key,
                        "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
                        TIMESTAMP,
                        &standard,
                    ),
                ),
            ]),
            body: standard,
        },
    ]
}

/// What the ingress does between reading the body and handing the record to the producer.
pub fn hot_path(registry: &Registry, case: &Case) -> rdkafka::message::OwnedHeaders {
    let Route::Webhook { provider, key } = route::parse(&case.path) else {
        panic!("route")
    };
    let provider = providers::find(provider).unwrap();
    let request = providers::Request::new(&case.headers, &case.body);
    let seen = provider.inspect(&request).unwrap();
    let integration = registry
        .resolve(provider.slug(), key, seen.clue.as_deref())
        .unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(TIMESTAMP);
    let keys = integration
        .keys
        .as_ref()
        .expect("the bench's integration has its secret");
    provider.verify(&request, keys, now).unwrap();
    integration
        .status
        .authentic(TIMESTAMP as i64 * 1000, seen.test);
    let delivery_id = seen
        .delivery_id
        .unwrap_or_else(|| providers::body_hash_id(&case.body).into());
    inbound::Metadata {
        provider: provider.slug(),
        tenant: &integration.tenant.id,
        event_type: seen.event_type.as_deref(),
        delivery_id: &delivery_id,
        received_at: now,
        content_type: Some("application/json"),
        payload_version: seen.payload_version.as_deref(),
        test: seen.test,
    }
    .headers()
}

/// The registry the cases are signed for.
pub fn registry() -> Registry {
    Registry::from_toml(TENANTS, Path::new("."), &HashMap::new()).unwrap()
}
