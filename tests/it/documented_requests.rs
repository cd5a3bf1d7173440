//! One delivery request, as config/default.toml and docs/ARCHITECTURE.md ("Delivery") describe
//! it: no answer within `delivery.timeout` is a failed attempt, retried on the schedule; a
//! response body is read up to `delivery.max_response_body_bytes` and discarded, so a receiver
//! that never stops answering is read no further (beyond what the sockets buffer) and its
//! delivery counted by its status; and a stop lets a request in flight finish and records its
//! outcome (README: "lets outbound requests finish").

use std::time::Duration;

use cartstream::clock::Clock;
use serde_json::json;

use crate::delivery::tenants;
use crate::documented::{fields, Receiver, Reply, Worker, T0, WAIT};
use crate::support::read_json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_within_the_timeout_is_a_failed_attempt_retried_on_the_schedule() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    receiver.script(&[Reply::Held]);
    let worker = Worker::start(
        "documented-timeout",
        &tenants(&[("crm", &receiver.url(), "")]),
        clock.clone(),
        |config| {
            config.delivery.timeout = Duration::from_secs(1);
            config.delivery.jitter = 0.0;
        },
    )
    .await;
    worker.send("cart-1", "abandoned_candidate").await;
    let first = worker.outcomes_eventually(1).await;
    // Recorded while the receiver still holds its answer back.
    assert_eq!(receiver.answered(), 0, "the receiver answered: {first:?}");
    assert_eq!(first[0]["outcome"], "failed", "{first:?}");
    assert_eq!(first[0]["status_class"], "timeout", "{first:?}");
    assert_eq!(first[0]["status_code"], serde_json::Value::Null);
    assert_eq!(
        first[0]["next_attempt_at"],
        crate::documented::rfc3339(T0 as i64 * 1000 + 60_000),
        "the schedule's second step, 1 min"
    );
    receiver.release();

    clock.advance(Duration::from_secs(61));
    receiver.arrived_eventually(2).await;
    let outcomes = worker.outcomes_eventually(2).await;
    assert_eq!(
        fields(&outcomes, "outcome"),
        [json!("failed"), json!("delivered")]
    );
    assert_eq!(outcomes[1]["attempt"], 2);
    worker.daemon.stop().await;
}

/// The most a socket's buffers hold on this machine, sending and receiving
/// (`net.ipv4.tcp_wmem` and `tcp_rmem`, their maxima).
fn socket_buffers() -> u64 {
    ["tcp_wmem", "tcp_rmem"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap();
            text.split_whitespace()
                .last()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_never_ends_is_read_up_to_the_cap_and_counted_by_its_status() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    receiver.script(&[Reply::Endless]);
    let worker = Worker::start(
        "documented-response-cap",
        &tenants(&[("crm", &receiver.url(), "")]),
        clock.clone(),
        |_| {},
    )
    .await;
    let cap = worker.daemon.config.delivery.max_response_body_bytes as u64;
    assert_eq!(cap, 65_536);
    worker.send("cart-1", "abandoned_candidate").await;
    let outcomes = worker.outcomes_eventually(1).await;
    assert_eq!(outcomes[0]["outcome"], "delivered", "{outcomes:?}");
    assert_eq!(outcomes[0]["status_code"], 200, "{outcomes:?}");
    assert_eq!(outcomes[0]["status_class"], "2xx", "{outcomes:?}");
    // What the receiver could write: what the worker read, and what the sockets' buffers
    // took before the worker closed the connection.
    let streamed = receiver.streamed();
    let bound = cap + socket_buffers() + (1 << 20);
    assert!(
        (cap..=bound).contains(&streamed),
        "{streamed} bytes written to the worker, which reads {cap} (at most {bound} with the buffers)"
    );
    worker.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_a_request_in_flight_finish_and_records_its_outcome() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    receiver.script(&[Reply::Held]);
    let worker = Worker::start(
        "documented-stop",
        &tenants(&[("crm", &receiver.url(), "")]),
        clock.clone(),
        |_| {},
    )
    .await;
    worker.send("cart-1", "abandoned_candidate").await;
    receiver.arrived_eventually(1).await;
    assert!(worker.outcomes().is_empty(), "{:?}", worker.outcomes());

    let (brokers, topic) = (
        worker.daemon.brokers.clone(),
        worker.daemon.topics.deliveries.clone(),
    );
    worker.daemon.running.shutdown();
    // The stop is under way (its loop looks every 50 ms); only then does the answer come.
    tokio::time::sleep(Duration::from_secs(1)).await;
    receiver.release();
    let Worker { daemon, .. } = worker;
    tokio::time::timeout(WAIT, daemon.running.wait())
        .await
        .expect("the worker stops")
        .expect("the worker stops cleanly");
    assert_eq!(receiver.answered(), 1);
    let outcomes = read_json(&brokers, &topic);
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0]["outcome"], "delivered", "{outcomes:?}");
    assert_eq!(outcomes[0]["status_code"], 200, "{outcomes:?}");
}
