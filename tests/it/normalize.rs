//! Normalization, table-driven: every case under `tests/fixtures/normalize/<provider>/` names
//! the request (headers and body) and the exact normalized event it must produce, and every
//! produced event must validate against `schemas/event.v1.json`.
//!
//! Each provider has at least one case whose `expected` event was written by hand from the
//! vendor's payload, its `by_hand` member saying where each field comes from: a snapshot taken
//! from the code's own output would agree with the code's bugs.
//!
//! `CARTSTREAM_BLESS=1` rewrites the other cases' `expected` members from the current output
//! (review the diff before committing it); it never rewrites a hand-written one.

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

impl Case {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// The event the provider makes of the case's request.
    fn normalized(&self) -> Value {
        let name = self.name();
        let provider = providers::find(&self.provider)
            .unwrap_or_else(|| panic!("{name}: no provider {}", self.provider));
        let request = Request::new(&self.headers, &self.body);
        let seen = provider
            .inspect(&request)
            .unwrap_or_else(|e| panic!("{name}: inspect: {e}"));
        serde_json::to_value(provider.normalize(&self.body, &seen)).unwrap()
    }

    /// Whether `expected` was written by hand (blessing leaves it alone).
    fn by_hand(&self) -> bool {
        !self.document["by_hand"].is_null()
    }
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
        let name = case.name();
        let actual = case.normalized();

        let errors: Vec<String> = validator
            .iter_errors(&actual)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{name}: the event does not match schemas/event.v1.json: {errors:#?}"
        );

        if bless && !case.by_hand() {
            case.document["expected"] = actual;
            std::fs::write(
                &case.path,
                serde_json::to_string_pretty(&case.document).unwrap() + "\n",
            )
            .unwrap();
        } else {
            let written_by_hand = match case.by_hand() {
                true => " (written by hand: never blessed)",
                false => "",
            };
            assert_eq!(
                actual, case.document["expected"],
                "{name}: normalized event differs{written_by_hand}"
            );
        }
    }
    assert!(
        !bless,
        "fixtures rewritten; review the diff and run again without CARTSTREAM_BLESS"
    );
}

/// The fields of a normalized event, `customer.*` by their paths, but the two every event of a
/// provider has alike (`schema`, `provider`).
fn fields(event: &Value) -> Vec<String> {
    let mut fields = Vec::new();
    for (name, value) in event.as_object().unwrap() {
        match value {
            Value::Object(inner) => fields.extend(inner.keys().map(|k| format!("{name}.{k}"))),
            _ if name == "schema" || name == "provider" => {}
            _ => fields.push(name.clone()),
        }
    }
    fields.sort();
    fields
}

#[test]
fn every_provider_has_an_event_written_by_hand_from_its_payload_and_produces_it() {
    let cases = cases();
    for provider in providers::all() {
        let by_hand: Vec<&Case> = cases
            .iter()
            .filter(|case| case.provider == provider.slug() && case.by_hand())
            .collect();
        assert!(
            !by_hand.is_empty(),
            "{}: no fixture's expected event was written by hand",
            provider.slug()
        );
        for case in by_hand {
            let name = case.name();
            let expected = &case.document["expected"];
            // Every field says where its value (or its null) comes from.
            let notes = case.document["by_hand"].as_object().unwrap();
            let mut noted: Vec<String> = notes.keys().cloned().collect();
            noted.sort();
            assert_eq!(noted, fields(expected), "{name}: by_hand notes");
            assert!(
                notes
                    .values()
                    .all(|n| n.as_str().is_some_and(|n| !n.is_empty())),
                "{name}: an empty note"
            );
            assert_eq!(
                case.normalized(),
                *expected,
                "{name}: the event differs from the one written by hand"
            );
        }
    }
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
