//! The processor's state step on a real RocksDB: a normalized event in; its de-duplication
//! marker, cart, timer, aliases, outbox records and offset out, in one atomic write batch — one
//! per event (`checkout activity`), or one per polled batch of 1,000 events as the processor
//! writes them (`checkout activity, batches of 1000`). Events/s on one core.

use std::time::Duration;

use cartstream::state::{Input, Store, Windows};
use cartstream::topics::event::{Bucket, Event};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn checkout(cart: u64) -> Event {
    let mut event = Event::new(
        "shopify",
        Some("checkouts/update"),
        Bucket::AbandonedCandidate,
    );
    event.cart_token = Some(format!("cart-{cart:012}"));
    event.checkout_token = Some(format!("checkout-{cart:012}"));
    event.customer.email = Some(format!("customer{cart}@example.com"));
    event.cart_value = Some("379.69".into());
    event.currency = Some("USD".into());
    event
}

/// The delivery at `offset`: a new delivery id, on one of the carts of `events` in turn.
fn input<'a>(offset: i64, events: &'a [Event], delivery_id: &'a str) -> Input<'a> {
    Input {
        offset,
        tenant: "acme",
        delivery_id,
        event: &events[(offset % events.len() as i64) as usize],
        at_ms: 1_700_000_000_000 + offset,
        received_ms: 1_700_000_000_000 + offset,
        window_ms: 15 * 60 * 1000,
    }
}

fn bench(c: &mut Criterion) {
    let windows = Windows {
        dedup: Duration::from_secs(24 * 3600),
        contact_lookback: Duration::from_secs(7 * 24 * 3600),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), windows).unwrap();
    let events: Vec<Event> = (0..10_000).map(checkout).collect();
    let mut offset = 0i64;

    let mut group = c.benchmark_group("state_step");
    group.throughput(Throughput::Elements(1));
    // Each iteration is a new delivery on one of 10,000 carts: creates, then updates, them.
    group.bench_function("checkout activity", |b| {
        b.iter_batched(
            || {
                offset += 1;
                offset
            },
            |offset| {
                let delivery_id = format!("delivery-{offset}");
                store.apply(input(offset, &events, &delivery_id)).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    // The same events, staged and committed 1,000 at a time.
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("checkout activity, batches of 1000", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                offset += 1;
                let delivery_id = format!("delivery-{offset}");
                store.stage(input(offset, &events, &delivery_id)).unwrap();
            }
            store.commit().unwrap()
        })
    });
    group.finish();
}

/// Events the processor stages before one commit (`processor.max_batch_records`' default).
const BATCH: usize = 1_000;

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
