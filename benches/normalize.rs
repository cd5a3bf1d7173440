//! Normalization per provider on the real vendor payloads: events/s and bytes/s of the whole
//! mapping, and the JSON parse on its own with serde_json and with simd-json (both building the
//! same `serde_json::Value` the mappings read), to decide which parser normalization uses.

use std::path::Path;

use cartstream::providers::{self, Request};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue};

struct Case {
    name: &'static str,
    provider: &'static str,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn case(
    name: &'static str,
    provider: &'static str,
    file: &str,
    headers: &[(&'static str, &str)],
) -> Case {
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/providers")
            .join(file),
    )
    .unwrap();
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect();
    Case {
        name,
        provider,
        headers,
        body,
    }
}

fn cases() -> Vec<Case> {
    vec![
        case(
            "shopify checkout",
            "shopify",
            "shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json",
            &[("x-shopify-topic", "checkouts/create")],
        ),
        case(
            "shopify order",
            "shopify",
            "shopify/derived_orders_create_body_from_sdkjs_2024-04.json",
            &[("x-shopify-topic", "orders/create")],
        ),
        case(
            "salla abandoned cart",
            "salla",
            "salla/docs_abandoned_cart.json",
            &[],
        ),
        case("salla order", "salla", "salla/docs_order_created.json", &[]),
    ]
}

fn bench(c: &mut Criterion) {
    let cases = cases();
    let normalize = |case: &Case| {
        let provider = providers::find(case.provider).unwrap();
        let request = Request::new(&case.headers, &case.body);
        let seen = provider.inspect(&request).unwrap();
        provider.normalize(&request, &seen)
    };

    let mut events = c.benchmark_group("normalize_events");
    for case in &cases {
        events.throughput(Throughput::Elements(1));
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
    for case in &cases {
        parse.throughput(Throughput::Bytes(case.body.len() as u64));
        parse.bench_function(format!("serde_json/{}", case.name), |b| {
            b.iter(|| {
                serde_json::from_slice::<serde_json::Value>(std::hint::black_box(&case.body))
                    .unwrap()
            })
        });
        parse.bench_function(format!("simd_json/{}", case.name), |b| {
            b.iter(|| {
                // simd-json parses in place: the copy is part of its cost here.
                let mut copy = std::hint::black_box(&case.body).clone();
                simd_json::serde::from_slice::<serde_json::Value>(&mut copy).unwrap()
            })
        });
    }
    parse.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
