//! A crash between a redrive's scheduling and the saving of its position (docs/ARCHITECTURE.md,
//! "Operator actions": "a crash in between redrives those dead letters again, never loses
//! them"; docs/operations.md: "a pod remembers every dead letter it redrove"). The test build
//! dies at that point when `CARTSTREAM_FAULT_REDRIVE_CRASH=1` (see `delivery::redrive`).

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;

use cartstream::clock::Clock;
use serde_json::{json, Value};

use crate::delivery::tenants;
use crate::documented::{transition, Receiver, Reply, Setup, WAIT};
use crate::support::{
    brokers, process_settled, read_json, read_json_eventually, Http, RoleProcess,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_redrive_position_is_saved_loses_nothing_and_sends_nothing_twice() {
    let receiver = Receiver::start(Clock::System).await;
    receiver.by_default(Reply::Status(500));
    let setup = Setup::write(
        "documented-redrive-crash",
        &brokers(),
        &tenants(&[("crm", &receiver.url(), "  retry_schedule = [\"0s\"]")]),
        |_| {},
    );
    setup.create_topics().await;
    let topics = setup.config.kafka.topics();
    let brokers = setup.config.kafka.brokers.clone();
    let http = Http::http1();
    let log = setup.dir.path().join("delivery.log");
    let crash = [("CARTSTREAM_FAULT_REDRIVE_CRASH", "1")];
    let mut first = RoleProcess::start_logging("delivery", &setup.file, &crash, &log);
    setup.ready(&http).await;

    // Three deliveries whose one attempt fails: three dead letters.
    let now = Clock::System.now_millis();
    let sent: Vec<Value> = (0..3)
        .map(|i| transition(&format!("cart-{i}"), "abandoned_candidate", now))
        .collect();
    setup.send(&sent).await;
    let dead = read_json_eventually(&brokers, &topics.dead_letters, 3, WAIT).await;
    assert!(dead.iter().all(|d| d["reason"] == "exhausted"), "{dead:?}");

    // Attempts started before the crash never get an answer.
    receiver.by_default(Reply::Held);
    let answer = setup.act(&http, "dead-letters/redrive", json!({})).await;
    assert!(answer.is_err(), "the redrive answered: {answer:?}");
    let status = first.exited(WAIT).await;
    assert_eq!(
        status.signal(),
        Some(6),
        "died at the fault point: {status:?}"
    );

    // Restarted: the scheduled dead letters go out; a redrive reads them again (the position
    // was not saved) and knows it scheduled them already.
    receiver.by_default(Reply::Status(200));
    let _second = RoleProcess::start_logging("delivery", &setup.file, &[], &log);
    setup.ready(&http).await;
    let delivered = |outcomes: &[Value]| {
        let mut by_transition = BTreeMap::new();
        for outcome in outcomes.iter().filter(|o| o["outcome"] == "delivered") {
            *by_transition
                .entry(outcome["transition_id"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        by_transition
    };
    crate::support::eventually("every redriven delivery delivered", WAIT, || {
        let outcomes = read_json(&brokers, &topics.deliveries);
        (delivered(&outcomes).len() == sent.len()).then_some(())
    })
    .await;
    let report = setup
        .act(&http, "dead-letters/redrive", json!({}))
        .await
        .expect("the redrive answers");
    assert_eq!(report.status, 200, "{report:?}");
    let report = report.json();
    assert_eq!(report["read"], 3, "{report}");
    assert_eq!(report["redriven"], 0, "{report}");
    assert_eq!(report["already_redriven"], 3, "{report}");
    assert_eq!(report["position_saved"], true, "{report}");
    let again = setup
        .act(&http, "dead-letters/redrive", json!({}))
        .await
        .expect("the redrive answers")
        .json();
    assert_eq!(
        (again["read"].clone(), again["redriven"].clone()),
        (json!(0), json!(0))
    );
    process_settled(
        setup.admin,
        cartstream::telemetry::metrics::DELIVERY_SETTLED,
    )
    .await;

    let outcomes = read_json(&brokers, &topics.deliveries);
    let expected: BTreeMap<String, i32> = sent
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_string(), 1))
        .collect();
    assert_eq!(
        delivered(&outcomes),
        expected,
        "each delivered once: {outcomes:?}"
    );
    let dead = read_json(&brokers, &topics.dead_letters);
    assert_eq!(dead.len(), 3, "no dead letter after the redrive: {dead:?}");
}
