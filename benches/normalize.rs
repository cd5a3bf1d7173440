//! Normalization per provider, on the normalization fixtures (real vendor payloads where they
//! exist): events/s and bytes/s of the whole mapping (inspect, then normalize), and, for the
//! payloads over 1 KB, a `serde_json::Value` parse with serde_json and with simd-json — the DOM
//! the mappings read before they read typed payloads, kept for comparison.

use std::path::Path;
use std::time::Duration;

use cartstream::providers::{self, Request};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

/// One representative case per provider and event kind, from `tests/fixtures/normalize/`.
const CASES: &[&str] = &[
    "shopify/checkouts_create",
    "shopify/orders_create",
    "salla/abandoned_cart",
    "salla/order_created",
    "zid/order_detail_without_event",
    "zid/abandoned_cart_created",
    "easyorders/order_created",
    "flexype/acr_checkout",
    "shopimind/integration_installed",
    "sprusify/conversion_created",
    "shopery/order_created",
    "standard/contact_created",
    "vendera/generic_delivery",
];

struct Case {
    name: &'static str,
    provider: &'static dyn providers::Provider,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn load(name: &'static str) -> Case {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text =
        std::fs::read_to_string(fixtures.join("normalize").join(format!("{name}.json"))).unwrap();
    let document: Value = serde_json::from_str(&text).unwrap();
    let body = match (&document["body"], &document["body_file"]) {
        (Value::String(body), _) => body.as_bytes().to_vec(),
        (_, Value::String(file)) => std::fs::read(fixtures.join(file)).unwrap(),
        _ => panic!("{name}: no body"),
    };
    let headers = document["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
                HeaderValue::from_str(v.as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    let provider = providers::find(name.split('/').next().unwrap()).unwrap();
    Case {
        name,
        provider,
        headers,
        body,
    }
}

fn normalize(case: &Case) -> cartstream::topics::event::Event {
    let request = Request::new(&case.headers, &case.body);
    let seen = case.provider.inspect(&request).unwrap();
    case.provider.normalize(&case.body, &seen)
}

fn bench(c: &mut Criterion) {
    let cases: Vec<Case> = CASES.iter().map(|name| load(name)).collect();

    let mut events = c.benchmark_group("normalize_events");
    events.throughput(Throughput::Elements(1));
    for case in &cases {
        events.bench_function(case.name, |b| {
            b.iter(|| normalize(std::hint::black_box(case)))
        });
    }
    events.finish();

    let mut bytes = c.benchmark_group("normalize_bytes");
    for case in &cases {
        bytes.throughput(Throughput::Bytes(case.body.len() as u64));
        bytes.bench_function(format!("{} ({} bytes)", case.name, case.body.len()), |b| {
            b.iter(|| normalize(std::hint::black_box(case)))
        });
    }
    bytes.finish();

    let mut parse = c.benchmark_group("parse");
    for case in cases.iter().filter(|c| c.body.len() > 1000) {
        parse.throughput(Throughput::Bytes(case.body.len() as u64));
        parse.bench_function(format!("serde_json/{}", case.name), |b| {
            b.iter(|| serde_json::from_slice::<Value>(std::hint::black_box(&case.body)).unwrap())
        });
        parse.bench_function(format!("simd_json/{}", case.name), |b| {
            b.iter(|| {
                // simd-json parses in place: the copy is part of its cost here.
                let mut copy = std::hint::black_box(&case.body).clone();
                simd_json::serde::from_slice::<Value>(&mut copy).unwrap()
            })
        });
    }
    parse.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
