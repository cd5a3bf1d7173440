//! The ingress hot path per provider, without sockets or Kafka: route the path, read the tenant
//! clue, resolve the integration, verify the signature, and build the record's Kafka headers.
//! Bodies are the real vendor payloads from `tests/fixtures/providers/`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "support/ingress.rs"]
mod ingress;

use ingress::{cases, hot_path, registry};

fn bench(c: &mut Criterion) {
    let registry = registry();
    let mut group = c.benchmark_group("ingress_hot_path");
    for case in cases() {
        group.throughput(Throughput::Bytes(case.body.len() as u64));
        group.bench_function(format!("{} ({} bytes)", case.name, case.body.len()), |b| {
            b.iter(|| hot_path(&registry, std::hint::black_box(&case)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
