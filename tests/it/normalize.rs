//! Normalization, table-driven: every case under `tests/fixtures/normalize/<provider>/` names
//! the request (headers and body) and the exact normalized event it must produce, and every
//! produced event must validate against `schemas/event.v1.json`.
//!
//! `CARTSTREAM_BLESS=1` rewrites the `expected` members from the current output (review the
//! diff before committing it).

use std::path::{Path, PathBuf};

use cartstream::providers::{self, Request};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn schema() -> jsonschema::Validator {
    crate::support::schemas().0
}

struct Case {
    path: PathBuf,
    provider: String,
    headers: HeaderMap,
    body: Vec<u8>,
    document: Value,
}

fn cases() -> Vec<Case> {
    let root = fixtures().join("normalize");
    let mut cases = Vec::new();
    for provider_dir in std::fs::read_dir(&root).unwrap() {
        let provider_dir = provider_dir.unwrap().path();
        let provider = provider_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for file in std::fs::read_dir(&provider_dir).unwrap() {
            let path = file.unwrap().path();
            let document: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let body = match (&document["body"], &document["body_file"]) {
                (Value::String(body), _) => body.as_bytes().to_vec(),
                (_, Value::String(file)) => std::fs::read(fixtures().join(file)).unwrap(),
                _ => panic!("{}: no body", path.display()),
            };
            let mut headers = HeaderMap::new();
            for (name, value) in document["headers"].as_object().unwrap() {
                headers.insert(
                    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
                    HeaderValue::from_str(value.as_str().unwrap()).unwrap(),
                );
            }
            cases.push(Case {
                path,
                provider: provider.clone(),
                headers,
                body,
                document,
            });
        }
    }
    cases.sort_by(|a, b| a.path.cmp(&b.path));
    cases
}

#[test]
fn every_fixture_normalizes_to_its_expected_event_and_validates() {
    let bless = std::env::var_os("CARTSTREAM_BLESS").is_some();
    let validator = schema();
    let cases = cases();
    assert!(
        cases.len() >= 10,
        "only {} normalization fixtures",
        cases.len()
    );
    for mut case in cases {
        let name = case.path.display().to_string();
        let provider = providers::find(&case.provider)
            .unwrap_or_else(|| panic!("{name}: no provider {}", case.provider));
        let request = Request::new(&case.headers, &case.body);
        let seen = provider
            .inspect(&request)
            .unwrap_or_else(|e| panic!("{name}: inspect: {e}"));
        let actual = serde_json::to_value(provider.normalize(&case.body, &seen)).unwrap();

        let errors: Vec<String> = validator
            .iter_errors(&actual)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{name}: the event does not match schemas/event.v1.json: {errors:#?}"
        );

        if bless {
            case.document["expected"] = actual;
            std::fs::write(
                &case.path,
                serde_json::to_string_pretty(&case.document).unwrap() + "\n",
            )
            .unwrap();
        } else {
            assert_eq!(
                actual, case.document["expected"],
                "{name}: normalized event differs"
            );
        }
    }
    assert!(
        !bless,
        "fixtures rewritten; review the diff and run again without CARTSTREAM_BLESS"
    );
}

#[test]
fn the_schema_refuses_what_the_contract_forbids() {
    let validator = schema();
    let valid = serde_json::json!({
        "schema": "cartstream.event.v1", "provider": "shopify", "provider_event": null,
        "event_bucket": "other", "resource_type": null, "resource_id": null, "cart_token": null,
        "checkout_token": null, "order_id": null,
        "customer": {"name": null, "email": null, "phone": null},
        "cart_value": null, "currency": null, "item_count": null, "recovery_url": null, "occurred_at": null
    });
    assert!(validator.is_valid(&valid));
    for (field, bad) in [
        ("cart_value", serde_json::json!(12.5)),
        ("cart_value", serde_json::json!("12,50")),
        ("event_bucket", serde_json::json!("abandoned")),
        (
            "occurred_at",
            serde_json::json!("2024-01-01T00:00:00+02:00"),
        ),
        ("currency", serde_json::json!("usd")),
    ] {
        let mut event = valid.clone();
        event[field] = bad.clone();
        assert!(!validator.is_valid(&event), "{field} = {bad} was accepted");
    }
}
