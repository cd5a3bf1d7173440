//! Arbitrary bytes and arbitrary JSON never panic a provider's inspection, verification or
//! normalization (these run on unauthenticated input), and whatever normalization makes of
//! them still matches `schemas/event.v1.json`.

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use cartstream::providers::{self, Key, Keys, Request};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::Value;

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
        // Values that look like what providers read, so the typed paths get exercised.
        prop_oneof![
            Just("2024-01-01T00:00:00Z"),
            Just("Tue Jan 21 2025 18:00:32 GMT+0300"),
            Just("+1 (502) 459-2181"),
            Just("12.50"),
            Just("SAR"),
            Just("checkouts/create"),
            Just("https://x.example/recover"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    let keys = prop_oneof![
        Just("id"),
        Just("token"),
        Just("event"),
        Just("merchant"),
        Just("data"),
        Just("customer"),
        Just("total"),
        Just("amount"),
        Just("currency"),
        Just("items"),
        Just("line_items"),
        Just("quantity"),
        Just("mobile"),
        Just("mobile_code"),
        Just("email"),
        Just("type"),
        Just("created_at"),
        Just("updated_at"),
        Just("total_price"),
        Just("billing_address"),
        Just("country_code"),
        Just("phone"),
        Just("cart"),
        Just("timestamp"),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone().prop_map(str::to_string), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn headers(extra: &[(&'static str, String)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
    headers
}

fn schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/event.v1.json");
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        jsonschema::validator_for(&schema).unwrap()
    })
}

/// Runs every provider over one request, with and without plausible headers.
fn exercise(body: &[u8], header_value: &str) {
    let keys = Keys::new(Key::new(b"secret"), Some(Key::new(b"old")));
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let variants = [
        headers(&[]),
        headers(&[
            ("x-shopify-topic", header_value.to_string()),
            ("x-shopify-hmac-sha256", header_value.to_string()),
            ("x-shopify-shop-domain", header_value.to_string()),
            ("x-salla-signature", header_value.to_string()),
            ("x-salla-security-strategy", "Token".to_string()),
            ("authorization", header_value.to_string()),
            ("webhook-id", header_value.to_string()),
            ("webhook-timestamp", "1700000000".to_string()),
            (
                "webhook-signature",
                format!("v1,{header_value} v1a,{header_value}"),
            ),
        ]),
    ];
    for provider in providers::all() {
        for headers in &variants {
            let request = Request::new(headers, body);
            let _ = provider.verify(&request, &keys, now);
            if let Ok(seen) = provider.inspect(&request) {
                let event = serde_json::to_value(provider.normalize(body, &seen)).unwrap();
                let errors: Vec<String> = schema()
                    .iter_errors(&event)
                    .map(|e| e.to_string())
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{}: {event} violates the schema: {errors:?}",
                    provider.slug()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), header in ".{0,40}") {
        exercise(&body, &header);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json(), header in "[ -~]{0,40}") {
        exercise(value.to_string().as_bytes(), &header);
    }
}
