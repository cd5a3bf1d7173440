//! `processor.max_timers_per_second` (config/default.toml: "Timers fired per second at most by
//! the wall clock, e.g. the backlog that came due while the processor was down").
//!
//! The processor's budget is a rate over real time: credit accrues at the limit, up to one
//! second's worth, and each timer fired spends one (`src/processor/budget.rs`). Whatever the
//! machine's speed, the abandonments published `e` seconds after the backlog came due are
//! therefore at most `limit × (e + 1)` — the bound checked here while the backlog drains. A slow
//! machine publishes fewer, never more, so the check cannot fail for slowness; a processor that
//! ignores the limit publishes the whole backlog in its first round, and one that rounds each
//! round's share up (with a limit of 10 and rounds of 500 ms: 12 a second) crosses the bound
//! within seconds.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cartstream::app::Roles;
use cartstream::clock::Clock;
use serde_json::json;

use crate::documented::{rfc3339, topic_len, until, T0, WAIT};
use crate::support::{read_json, read_json_eventually, shopify_headers, Http, TestDaemon};

/// Carts whose timers come due at once.
const CARTS: usize = 100;
const LIMIT: u32 = 10;
/// The processor's round when idle (it waits this long for records): two rounds a second.
const TICK: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_due_timers_drains_at_max_timers_per_second_not_at_once() {
    let clock = Clock::manual(T0);
    let daemon = TestDaemon::builder("documented-timer-rate")
        .roles(Roles {
            ingress: true,
            processor: true,
            delivery: false,
        })
        .clock(clock.clone())
        .config(|config| {
            config.processor.max_timers_per_second = LIMIT;
            config.processor.tick = TICK;
            config.ingress.ack_timeout = Duration::from_secs(20);
        })
        .start()
        .await;
    let http = Http::http1();
    for i in 0..CARTS {
        let body = serde_json::to_vec(&json!({
            "id": i,
            "token": format!("checkout-{i}"),
            "cart_token": format!("cart-{i}"),
            "email": format!("c{i}@example.com"),
            "total_price": "10.00",
            "currency": "USD",
            "updated_at": rfc3339(clock.now_millis()),
        }))
        .unwrap();
        let id = format!("w-{i}");
        let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, &id);
        let answer = http
            .post(&daemon.url("/api/webhooks/shopify"), &headers, body)
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let (brokers, topic) = (&daemon.brokers, &daemon.topics.transitions);
    read_json_eventually(brokers, &daemon.topics.events, CARTS, WAIT).await;
    daemon.settle().await;
    assert_eq!(topic_len(brokers, topic), 0, "nothing due yet");

    // Every cart's inactivity window (15 min) runs out at once.
    let due = Instant::now();
    clock.advance(Duration::from_secs(16 * 60));
    let mut samples = Vec::new();
    until("every abandonment", Duration::from_secs(120), || {
        let published = topic_len(brokers, topic);
        let elapsed = due.elapsed().as_secs_f64();
        let bound = f64::from(LIMIT) * (elapsed + 1.0);
        samples.push((elapsed, published));
        assert!(
            published as f64 <= bound,
            "{published} abandonments {elapsed:.2} s after they came due; at most {bound:.0} \
             at {LIMIT} per second (samples: {samples:?})"
        );
        std::future::ready((published >= CARTS).then_some(()))
    })
    .await;

    daemon.settle().await;
    let transitions = read_json(brokers, topic);
    let carts: BTreeSet<&str> = transitions
        .iter()
        .map(|t| t["cart"].as_str().unwrap())
        .collect();
    assert_eq!(transitions.len(), CARTS, "each cart once");
    assert_eq!(carts.len(), CARTS);
    assert!(transitions
        .iter()
        .all(|t| t["bucket"] == "abandoned_candidate"));
    daemon.stop().await;
}
