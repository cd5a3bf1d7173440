//! The delivery worker while Kafka does not take its records (docs/ARCHITECTURE.md, "Delivery",
//! step 5): "While Kafka is away the outbox grows and attempts go on — our outage does not use
//! up endpoints' retries; above 100,000 waiting records the worker stops reading transitions
//! until Kafka is back."

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use cartstream::clock::Clock;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use serde_json::Value;

use crate::delivery::tenants;
use crate::documented::{topic_len, transition, until, Receiver, Reply, Setup, Worker, T0, WAIT};
use crate::support::{
    brokers, eventually, log_lines, process_settled, read_json, Http, PrivateBroker, RoleProcess,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_kafka_is_away_attempts_go_on_and_their_outcomes_wait_for_it() {
    let mut broker = PrivateBroker::start();
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    // Each cart's first two attempts fail; the third is answered 200.
    receiver.script(&[Reply::Status(500); 6]);
    let worker = Worker::start(
        "documented-kafka-away",
        &tenants(&[("crm", &receiver.url(), "")]),
        clock.clone(),
        |config| {
            config.kafka.brokers = broker.brokers();
            config.delivery.jitter = 0.0;
        },
    )
    .await;
    let carts = ["cart-0", "cart-1", "cart-2"];
    for cart in carts {
        worker.send(cart, "abandoned_candidate").await;
    }
    let failed = worker.outcomes_eventually(3).await;
    assert!(
        failed.iter().all(|o| o["outcome"] == "failed"),
        "{failed:?}"
    );

    broker.kill();
    // The second attempts (1 min on) fail, and their outcomes cannot be published; the third
    // ones (5 min later) go out all the same, and their answers are recorded.
    clock.advance(Duration::from_secs(61));
    receiver.arrived_eventually(6).await;
    until("the second attempts recorded", WAIT, || async {
        let listed = worker.listed("").await;
        let second = listed.len() == 3 && listed.iter().all(|d| d["attempts"] == 2);
        second.then_some(())
    })
    .await;
    clock.advance(Duration::from_secs(5 * 60 + 1));
    let arrived = receiver.arrived_eventually(9).await;
    let third_ms = T0 as i64 * 1000 + 61_000 + 301_000;
    assert!(arrived[6..].iter().all(|a| a.at_ms == third_ms));
    until("the deliveries recorded", WAIT, || async {
        worker.listed("").await.is_empty().then_some(())
    })
    .await;

    broker.restart();
    eventually(
        "the outcomes of the retries",
        Duration::from_secs(60),
        || (worker.outcomes().len() >= 9).then_some(()),
    )
    .await;
    worker.daemon.settle().await;
    let outcomes = worker.outcomes();
    let delivered: Vec<&Value> = outcomes
        .iter()
        .filter(|o| o["outcome"] == "delivered")
        .collect();
    assert_eq!(delivered.len(), carts.len(), "{outcomes:?}");
    assert!(
        delivered.iter().all(|o| o["attempt"] == 3),
        "only the receiver's failures used attempts: {outcomes:?}"
    );
    let distinct: BTreeSet<(String, String)> = outcomes
        .iter()
        .map(|o| (o["transition_id"].to_string(), o["attempt"].to_string()))
        .collect();
    assert_eq!(distinct.len(), 9, "one outcome per attempt: {outcomes:?}");
    assert_eq!(outcomes.len(), 9, "{outcomes:?}");
    worker.daemon.stop().await;
}

/// The value of the metric line `name` (without labels) in a scrape.
fn metric(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Endpoints taking abandonments in the test's tenant.
const FILLERS: usize = 250;
/// Transitions past every deadline: each leaves an outcome and a dead letter per endpoint in
/// the outbox (500), without a request. 201 of them are 100,500 records.
const EXPIRED: usize = 201;
/// The worker's outbox limit.
const MAX_OUTBOX: f64 = 100_000.0;
const KEEPING: &str = "Kafka did not acknowledge outcome records; keeping them";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_outbox_kafka_does_not_take_stops_reading_past_100000_records() {
    let probe = Receiver::start(Clock::System).await;
    let mut endpoints: Vec<(String, String, &str)> = (0..FILLERS)
        .map(|i| {
            let events = "  events = [\"abandoned_candidate\"]";
            (format!("e{i:03}"), probe.url(), events)
        })
        .collect();
    endpoints.push((
        "probe".into(),
        probe.url(),
        "  events = [\"order_completed\"]",
    ));
    let endpoints: Vec<(&str, &str, &str)> = endpoints
        .iter()
        .map(|(id, url, extra)| (id.as_str(), url.as_str(), *extra))
        .collect();
    let setup = Setup::write(
        "documented-outbox-limit",
        &brokers(),
        &tenants(&endpoints),
        |config| {
            let telemetry = config["telemetry"].as_table_mut().unwrap();
            telemetry.insert("log_format".into(), "json".into());
        },
    );
    // The outcome topics take no record (each is larger than 64 bytes) until the end.
    let topics = setup.config.kafka.topics();
    let kafka = &setup.config.kafka;
    let outcome_topics = [topics.deliveries.as_str(), topics.dead_letters.as_str()];
    cartstream::kafka::admin::ensure_topics(kafka, &outcome_topics, &[], 64)
        .await
        .unwrap();
    setup.create_topics().await;
    let day_ago = Clock::System.now_millis() - 25 * 3600 * 1000;
    let expired: Vec<Value> = (0..EXPIRED)
        .map(|i| transition(&format!("cart-{i}"), "abandoned_candidate", day_ago))
        .collect();
    setup.send(&expired).await;

    let log = setup.dir.path().join("delivery.log");
    let _worker = RoleProcess::start_logging("delivery", &setup.file, &[], &log);
    let http = Http::http1();
    setup.ready(&http).await;
    let scrape = || {
        let (http, url) = (http.clone(), setup.admin_url("/metrics"));
        async move {
            let answer = http.try_send("GET", &url, &[], Bytes::new()).await.unwrap();
            String::from_utf8(answer.body.to_vec()).unwrap()
        }
    };
    // The gauge is reported by the same step that closes reading once the outbox is full.
    let full = until("a full outbox", Duration::from_secs(120), || async {
        let waiting = metric(&scrape().await, "cartstream_delivery_outbox_records")?;
        (waiting >= MAX_OUTBOX).then_some(waiting)
    })
    .await;
    assert!(full <= (EXPIRED * FILLERS * 2) as f64, "{full}");

    // A transition for the probe endpoint, which would be attempted the moment it is read.
    setup
        .send(&[transition(
            "probe",
            "order_completed",
            Clock::System.now_millis(),
        )])
        .await;
    // Forty of the worker's ticks later (each fails to publish), it has not been read.
    let ticks = log_lines(&log, KEEPING).len();
    eventually("forty more ticks", Duration::from_secs(60), || {
        (log_lines(&log, KEEPING).len() >= ticks + 40).then_some(())
    })
    .await;
    assert!(
        probe.arrived().is_empty(),
        "read past a full outbox: {:?}",
        probe.arrived()
    );
    let waiting = metric(&scrape().await, "cartstream_delivery_outbox_records").unwrap();
    assert_eq!(waiting, full, "nothing more was read");

    // Kafka takes the records again: the outbox drains and reading resumes.
    let admin: AdminClient<DefaultClientContext> =
        kafka.client_config().create().expect("an admin client");
    let changes: Vec<AlterConfig> = outcome_topics
        .iter()
        .map(|t| AlterConfig::new(ResourceSpecifier::Topic(t)).set("max.message.bytes", "1048576"))
        .collect();
    for result in admin
        .alter_configs(&changes, &AdminOptions::new())
        .await
        .unwrap()
    {
        result.expect("the topic's limit is raised");
    }
    let arrived = probe.arrived_eventually(1).await;
    assert_eq!(arrived[0].json()["event"], "order_completed");
    let records = EXPIRED * FILLERS;
    eventually(
        "every outcome and dead letter",
        Duration::from_secs(180),
        || {
            let outcomes = topic_len(&kafka.brokers, &topics.deliveries);
            let dead = topic_len(&kafka.brokers, &topics.dead_letters);
            (outcomes > records && dead >= records).then_some(())
        },
    )
    .await;
    process_settled(
        setup.admin,
        cartstream::telemetry::metrics::DELIVERY_SETTLED,
    )
    .await;
    let outcomes = read_json(&kafka.brokers, &topics.deliveries);
    let expired_outcomes = outcomes
        .iter()
        .filter(|o| o["outcome"] == "expired")
        .count();
    assert_eq!(expired_outcomes, EXPIRED * FILLERS);
    let probe_outcomes: Vec<&Value> = outcomes
        .iter()
        .filter(|o| o["endpoint_id"] == "probe")
        .collect();
    assert_eq!(probe_outcomes.len(), 1, "{probe_outcomes:?}");
    assert_eq!(probe_outcomes[0]["outcome"], "delivered");
    assert_eq!(outcomes.len(), EXPIRED * FILLERS + 1, "nothing twice");
    let dead = topic_len(&kafka.brokers, &topics.dead_letters);
    assert_eq!(dead, records, "nothing twice");
}
