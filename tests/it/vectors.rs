//! The platforms' own signature test vectors, through the public verification API.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cartstream::providers::{self, scheme, Keys, Provider, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

fn fixtures(platform: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/providers")
        .join(platform)
}

struct Vector {
    id: String,
    keys: Keys,
    headers: HeaderMap,
    body: Vec<u8>,
    expected_valid: bool,
    /// False for shared-secret tokens, which authenticate the sender but not the body.
    signs_body: bool,
    /// The generic scheme an integration configures (Vendera): it verifies instead of the
    /// provider.
    scheme: Option<Scheme>,
}

fn load(platform: &str, provider: &dyn Provider) -> Vec<Vector> {
    let dir = fixtures(platform);
    let text = std::fs::read_to_string(dir.join("vectors.json")).expect("vectors.json is readable");
    let root: Value = serde_json::from_str(&text).unwrap();
    let mut vectors = Vec::new();
    for (group, list) in [
        ("official", &root["official"]),
        ("derived", &root["derived"]),
    ] {
        for (i, v) in list.as_array().unwrap().iter().enumerate() {
            let id = v["id"]
                .as_str()
                .map_or_else(|| format!("{group}[{i}]"), str::to_string);
            if v["headers"].is_null() {
                // Vectors of another channel than webhooks (ShopiMind's connector API): no
                // request to verify.
                continue;
            }
            let secret = match (&v["secret"], v["public_key_b64"].as_str()) {
                (Value::String(secret), _) => secret.clone(),
                // HTTP Basic credentials (Zid): configured as `username:password`.
                (Value::Object(basic), _) => format!(
                    "{}:{}",
                    basic["username"].as_str().unwrap(),
                    basic["password"].as_str().unwrap()
                ),
                (_, Some(public)) => format!("whpk_{public}"),
                _ => panic!("{id}: no key"),
            };
            let current = provider
                .key(&secret)
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            let previous = v["old_secret"].as_str().map(|s| provider.key(s).unwrap());
            let body = match (v["body"].as_str(), v["body_file"].as_str()) {
                (Some(body), _) => body.as_bytes().to_vec(),
                (None, Some(file)) => {
                    std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{id}: {file}: {e}"))
                }
                // Shared-secret vectors without a body: the secret is all that is checked.
                (None, None) => Vec::new(),
            };
            let mut headers = HeaderMap::new();
            for (name, value) in v["headers"].as_object().unwrap() {
                headers.insert(
                    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
                    HeaderValue::from_str(value.as_str().unwrap()).unwrap(),
                );
            }
            let scheme = match &v["scheme"] {
                Value::Null => None,
                table => {
                    let spec: scheme::Spec = serde_json::from_value(table.clone())
                        .unwrap_or_else(|e| panic!("{id}: scheme: {e}"));
                    Some(
                        Scheme::from_spec(&spec)
                            .unwrap_or_else(|problems| panic!("{id}: scheme: {problems:?}")),
                    )
                }
            };
            vectors.push(Vector {
                id,
                keys: Keys::new(current, previous),
                headers,
                body,
                // Derived vectors are signatures computed with their own secret: valid.
                expected_valid: v["expected_valid"].as_bool().unwrap_or(true),
                signs_body: signs_body(v, &secret),
                scheme,
            });
        }
    }
    vectors
}

/// Whether a vector's header is a signature over the body, rather than the shared secret itself
/// (EasyOrders, FlexyPe, Shopery, Salla's Token strategy; the current or the previous one) or
/// HTTP Basic credentials (Zid).
fn signs_body(v: &Value, secret: &str) -> bool {
    match v["expected_signature"].as_str() {
        None => false,
        Some(expected) => {
            expected != secret
                && v["old_secret"].as_str() != Some(expected)
                && !expected.starts_with("Basic ")
        }
    }
}

/// The moment a vector was signed (Standard Webhooks and ShopiMind vectors are years old: verify
/// them with the clock set to their own timestamp).
fn signed_at(vector: &Vector) -> SystemTime {
    vector
        .headers
        .get("webhook-timestamp")
        .or_else(|| vector.headers.get("x-shopimind-timestamp"))
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .map_or_else(SystemTime::now, |s: u64| {
            UNIX_EPOCH + Duration::from_secs(s)
        })
}

/// The verdict on `vector`'s headers with `body`: its scheme's, if it has one, else the
/// provider's.
fn verify(provider: &dyn Provider, vector: &Vector, body: &[u8]) -> Result<(), providers::Error> {
    let request = providers::Request::new(&vector.headers, body);
    match &vector.scheme {
        Some(scheme) => scheme.verify(&request, &vector.keys),
        None => provider.verify(&request, &vector.keys, signed_at(vector)),
    }
}

fn check(platform: &str, provider: &dyn Provider) -> (usize, usize) {
    let vectors = load(platform, provider);
    let (mut accepted, mut rejected) = (0, 0);
    for vector in &vectors {
        let verdict = verify(provider, vector, &vector.body);
        assert_eq!(
            verdict.is_ok(),
            vector.expected_valid,
            "{platform} vector {}: {verdict:?}",
            vector.id
        );
        if vector.expected_valid {
            accepted += 1;
            if !vector.signs_body {
                continue;
            }
            // The same vector with one body byte changed must fail.
            let mut tampered = vector.body.clone();
            tampered[0] ^= 1;
            assert!(
                verify(provider, vector, &tampered).is_err(),
                "{platform} vector {} verifies a tampered body",
                vector.id
            );
        } else {
            rejected += 1;
        }
    }
    (accepted, rejected)
}

#[test]
fn shopify_vectors_verify() {
    let (accepted, rejected) = check("shopify", &providers::shopify::Shopify);
    assert!(
        accepted >= 3 && rejected >= 2,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn standard_webhooks_vectors_verify() {
    let (accepted, rejected) = check("standard-webhooks", &providers::standard::Standard);
    assert!(
        accepted >= 4 && rejected >= 2,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn salla_derived_vectors_verify() {
    let (accepted, _) = check("salla", &providers::salla::Salla);
    assert!(accepted >= 5, "{accepted} accepted");
}

#[test]
fn zid_derived_vectors_verify() {
    let (accepted, _) = check("zid", &providers::zid::Zid);
    assert!(accepted >= 3, "{accepted} accepted");
}

#[test]
fn easyorders_vectors_verify() {
    let (accepted, _) = check("easyorders", &providers::easyorders::EasyOrders);
    assert!(accepted >= 3, "{accepted} accepted");
}

#[test]
fn flexype_derived_vectors_verify() {
    let (accepted, _) = check("flexype", &providers::flexype::Flexype);
    assert!(accepted >= 1, "{accepted} accepted");
}

#[test]
fn sprusify_derived_vectors_verify() {
    let (accepted, rejected) = check("sprusify", &providers::sprusify::Sprusify);
    assert!(
        accepted >= 5 && rejected >= 1,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn shopery_derived_vectors_verify() {
    let (accepted, rejected) = check("shopery", &providers::shopery::Shopery);
    assert!(
        accepted >= 3 && rejected >= 2,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn vendera_derived_vectors_verify_under_their_schemes() {
    let (accepted, rejected) = check("vendera", &providers::vendera::Vendera);
    assert!(
        accepted >= 6 && rejected >= 3,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn vendera_vectors_fail_without_a_scheme() {
    let vectors = load("vendera", &providers::vendera::Vendera);
    assert!(!vectors.is_empty());
    for vector in vectors {
        let request = providers::Request::new(&vector.headers, &vector.body);
        assert!(
            providers::vendera::Vendera
                .verify(&request, &vector.keys, signed_at(&vector))
                .is_err(),
            "{}",
            vector.id
        );
    }
}

#[test]
fn shopimind_derived_vectors_verify() {
    let (accepted, rejected) = check("shopimind", &providers::shopimind::Shopimind);
    assert!(
        accepted >= 3 && rejected >= 1,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn shopimind_vectors_fail_outside_the_time_window() {
    for vector in load("shopimind", &providers::shopimind::Shopimind) {
        let request = providers::Request::new(&vector.headers, &vector.body);
        for late in [
            signed_at(&vector) + Duration::from_secs(301),
            signed_at(&vector) - Duration::from_secs(301),
        ] {
            assert!(
                providers::shopimind::Shopimind
                    .verify(&request, &vector.keys, late)
                    .is_err(),
                "{}",
                vector.id
            );
        }
    }
}

#[test]
fn shared_secret_vectors_fail_with_another_secret() {
    let cases: [(&str, &dyn Provider); 4] = [
        ("easyorders", &providers::easyorders::EasyOrders),
        ("flexype", &providers::flexype::Flexype),
        ("zid", &providers::zid::Zid),
        ("shopery", &providers::shopery::Shopery),
    ];
    for (platform, provider) in cases {
        for vector in load(platform, provider) {
            let request = providers::Request::new(&vector.headers, &vector.body);
            let other = Keys::new(provider.key("not-the-secret").unwrap(), None);
            assert!(
                provider
                    .verify(&request, &other, signed_at(&vector))
                    .is_err(),
                "{platform} vector {} verifies under another secret",
                vector.id
            );
        }
    }
}

#[test]
fn standard_webhooks_vectors_fail_outside_the_time_window() {
    for vector in load("standard-webhooks", &providers::standard::Standard) {
        let request = providers::Request::new(&vector.headers, &vector.body);
        let late = signed_at(&vector) + Duration::from_secs(301);
        assert!(
            providers::standard::Standard
                .verify(&request, &vector.keys, late)
                .is_err(),
            "{}",
            vector.id
        );
    }
}
