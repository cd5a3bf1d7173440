//! The delivery worker's operator actions as docs/operations.md ("Deliveries: operator
//! actions") describes them: `retry` makes a pending delivery due now, or brings a dead-lettered
//! one back with a fresh retry budget whose deadline counts from the retry; an endpoint a 410
//! disabled stays disabled — its deliveries `skipped_disabled`, across a restart — until
//! `enable`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::delivery::tenants;
use crate::documented::{fields, Receiver, Reply, Worker, T0};

/// The body naming one delivery of endpoint `crm`.
fn delivery(transition: &str) -> Value {
    json!({"tenant_id": "acme", "endpoint_id": "crm", "transition_id": transition})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_makes_a_failed_delivery_due_now_instead_of_at_its_next_attempt() {
    let clock = cartstream::clock::Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    receiver.script(&[Reply::Status(500)]);
    let worker = Worker::start(
        "documented-retry-pending",
        &tenants(&[("crm", &receiver.url(), "")]),
        clock.clone(),
        |_| {},
    )
    .await;
    let id = worker.send("cart-1", "abandoned_candidate").await;
    let first = worker.outcomes_eventually(1).await;
    assert_eq!(first[0]["outcome"], "failed", "{first:?}");
    assert!(first[0]["next_attempt_at"].is_string(), "{first:?}");
    let listed = worker.listed("").await;
    assert_eq!(fields(&listed, "transition_id"), [json!(id)], "{listed:?}");
    assert_eq!(listed[0]["attempts"], 1);

    // The clock stays where it is: the next attempt is a minute away, and happens now.
    let answer = worker.act("deliveries/retry", delivery(&id)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json(), json!({"retried": true}));
    let arrived = receiver.arrived_eventually(2).await;
    assert_eq!(
        arrived[1].at_ms,
        T0 as i64 * 1000,
        "sent without the clock moving"
    );
    assert_eq!(arrived[1].body, arrived[0].body, "the same delivery");
    assert_eq!(arrived[1].headers["webhook-id"], id.as_str());
    let outcomes = worker.outcomes_eventually(2).await;
    assert_eq!(outcomes[1]["outcome"], "delivered", "{outcomes:?}");
    assert_eq!(outcomes[1]["attempt"], 2, "{outcomes:?}");

    // Delivered, it is neither pending nor dead: nothing left to retry.
    assert!(worker.listed("").await.is_empty());
    let again = worker.act("deliveries/retry", delivery(&id)).await;
    assert_eq!(again.status, 404, "{again:?}");
    let unknown = worker
        .act(
            "deliveries/retry",
            delivery("0123456789abcdef0123456789abcdef"),
        )
        .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    worker.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_brings_a_dead_letter_back_with_a_fresh_budget_and_deadline() {
    let clock = cartstream::clock::Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    receiver.script(&[Reply::Status(500); 3]);
    let worker = Worker::start(
        "documented-retry-dead",
        &tenants(&[(
            "crm",
            &receiver.url(),
            "  retry_schedule = [\"0s\", \"1m\"]",
        )]),
        clock.clone(),
        |config| config.delivery.jitter = 0.0,
    )
    .await;
    let id = worker.send("cart-1", "abandoned_candidate").await;
    worker.outcomes_eventually(1).await;
    clock.advance(Duration::from_secs(61));
    let outcomes = worker.outcomes_eventually(2).await;
    assert_eq!(
        fields(&outcomes, "outcome"),
        [json!("failed"), json!("dead_lettered")]
    );
    let dead = worker.dead_letters_eventually(1).await;
    assert_eq!(dead[0]["reason"], "exhausted");
    let listed = worker.listed("state=dead").await;
    assert_eq!(fields(&listed, "transition_id"), [json!(id)], "{listed:?}");

    // A day and more after the transition: past its 24 h deadline, had it not been renewed.
    clock.advance(Duration::from_secs(25 * 3600));
    let answer = worker.act("deliveries/retry", delivery(&id)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    receiver.arrived_eventually(3).await;
    let outcomes = worker.outcomes_eventually(3).await;
    // Attempt 1 of a fresh budget of two: failed, with a next attempt, not dead-lettered.
    assert_eq!(outcomes[2]["outcome"], "failed", "{outcomes:?}");
    assert_eq!(outcomes[2]["attempt"], 1, "{outcomes:?}");
    let retry_ms = clock.now_millis();
    assert_eq!(
        outcomes[2]["next_attempt_at"],
        crate::documented::rfc3339(retry_ms + 60_000)
    );
    assert!(worker.listed("state=dead").await.is_empty());
    clock.advance(Duration::from_secs(61));
    let arrived = receiver.arrived_eventually(4).await;
    assert_eq!(arrived[3].body, arrived[0].body, "the same delivery");
    let outcomes = worker.outcomes_eventually(4).await;
    assert_eq!(outcomes[3]["outcome"], "delivered", "{outcomes:?}");
    assert_eq!(outcomes[3]["attempt"], 2, "{outcomes:?}");
    worker.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_gone_stays_disabled_across_a_restart_until_enabled() {
    let clock = cartstream::clock::Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    receiver.script(&[Reply::Status(410)]);
    let worker = Worker::start(
        "documented-enable",
        &tenants(&[("crm", &receiver.url(), "")]),
        clock.clone(),
        |_| {},
    )
    .await;
    let gone = worker.send("cart-1", "abandoned_candidate").await;
    let outcomes = worker.outcomes_eventually(1).await;
    assert_eq!(outcomes[0]["outcome"], "dead_lettered", "{outcomes:?}");
    assert_eq!(outcomes[0]["status_code"], 410);
    let dead = worker.dead_letters_eventually(1).await;
    assert_eq!(dead[0]["reason"], "gone");

    let skipped = |outcomes: &[Value], cart: &str| {
        outcomes
            .iter()
            .any(|o| o["cart"] == cart && o["outcome"] == "skipped_disabled")
    };
    worker.send("cart-2", "abandoned_candidate").await;
    let outcomes = worker.outcomes_eventually(2).await;
    assert!(skipped(&outcomes, "cart-2"), "{outcomes:?}");

    // Disabled is kept with the worker's state.
    let worker = worker.restart().await;
    worker.send("cart-3", "abandoned_candidate").await;
    let outcomes = worker.outcomes_eventually(3).await;
    assert!(skipped(&outcomes, "cart-3"), "{outcomes:?}");
    worker.daemon.settle().await;
    assert_eq!(receiver.arrived().len(), 1, "only the request answered 410");

    let endpoint = json!({"tenant_id": "acme", "endpoint_id": "crm"});
    let enabled = worker.act("endpoints/enable", endpoint.clone()).await;
    assert_eq!(enabled.status, 200, "{enabled:?}");
    assert_eq!(enabled.json(), json!({"was_disabled": true}));
    worker.send("cart-4", "abandoned_candidate").await;
    let arrived = receiver.arrived_eventually(2).await;
    assert_eq!(arrived[1].json()["data"]["cart"], "cart-4");
    // Enabled first, its dead letter can be brought back.
    let retried = worker.act("deliveries/retry", delivery(&gone)).await;
    assert_eq!(retried.status, 200, "{retried:?}");
    let arrived = receiver.arrived_eventually(3).await;
    assert_eq!(arrived[2].json()["data"]["cart"], "cart-1");
    let outcomes = worker.outcomes_eventually(5).await;
    let delivered: Vec<&Value> = outcomes
        .iter()
        .filter(|o| o["outcome"] == "delivered")
        .map(|o| &o["cart"])
        .collect();
    assert_eq!(
        delivered,
        [&json!("cart-4"), &json!("cart-1")],
        "{outcomes:?}"
    );
    let again = worker.act("endpoints/enable", endpoint).await;
    assert_eq!(again.json(), json!({"was_disabled": false}));
    worker.daemon.stop().await;
}
