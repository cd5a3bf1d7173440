//! Every metric the daemon exports, by name, and the only code that records them.
//!
//! Names follow `cartstream_<subsystem>_<name>_<unit>[_total]`; labels come from fixed small
//! vocabularies (provider slugs, status codes, failure kinds) — never tenant ids or URLs.
//! `docs/metrics.md` lists the same names; a test keeps the two in step.

#![allow(clippy::disallowed_macros)] // the one place metrics are recorded

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const INGRESS_REQUESTS: &str = "cartstream_ingress_requests_total";
pub const INGRESS_REQUEST_DURATION: &str = "cartstream_ingress_request_duration_seconds";
pub const INGRESS_SIGNATURE_FAILURES: &str = "cartstream_ingress_signature_failures_total";
pub const INGRESS_CLUE_MISMATCHES: &str = "cartstream_ingress_clue_mismatches_total";
pub const INGRESS_IN_FLIGHT: &str = "cartstream_ingress_in_flight_requests";
pub const INGRESS_BODY_SIZE: &str = "cartstream_ingress_body_size_bytes";
pub const CONNECTIONS_REFUSED: &str = "cartstream_http_connections_refused_total";
pub const KAFKA_ACK_DURATION: &str = "cartstream_kafka_ack_duration_seconds";
pub const KAFKA_PRODUCE_FAILURES: &str = "cartstream_kafka_produce_failures_total";
pub const KAFKA_PRODUCER_QUEUE: &str = "cartstream_kafka_producer_queue_messages";
pub const PROCESSOR_EVENTS: &str = "cartstream_processor_events_total";
pub const PROCESSOR_DUPLICATES: &str = "cartstream_processor_duplicates_total";
pub const PROCESSOR_INVALID_RECORDS: &str = "cartstream_processor_invalid_records_total";
pub const PROCESSOR_TEST_DELIVERIES: &str = "cartstream_processor_test_deliveries_total";
pub const PROCESSOR_TRANSITIONS: &str = "cartstream_processor_transitions_total";
pub const PROCESSOR_TIMERS_FIRED: &str = "cartstream_processor_timers_fired_total";
pub const PROCESSOR_TIMERS_PENDING: &str = "cartstream_processor_timers_pending";
pub const PROCESSOR_CONSUMER_LAG: &str = "cartstream_processor_consumer_lag_records";
pub const PROCESSOR_OUTBOX: &str = "cartstream_processor_outbox_records";
pub const PROCESSOR_PARTITIONS: &str = "cartstream_processor_assigned_partitions";
pub const PROCESSOR_SETTLED: &str = "cartstream_processor_settled_timestamp_seconds";
pub const DELIVERY_ATTEMPTS: &str = "cartstream_delivery_attempts_total";
pub const DELIVERY_OUTCOMES: &str = "cartstream_delivery_outcomes_total";
pub const DELIVERY_REQUEST_DURATION: &str = "cartstream_delivery_request_duration_seconds";
pub const DELIVERY_PENDING: &str = "cartstream_delivery_pending_retries";
pub const DELIVERY_DEAD_LETTERED: &str = "cartstream_delivery_dead_lettered_total";
pub const DELIVERY_OPEN_CIRCUITS: &str = "cartstream_delivery_open_circuits";
pub const DELIVERY_IN_FLIGHT: &str = "cartstream_delivery_in_flight_requests";
pub const DELIVERY_DISABLED: &str = "cartstream_delivery_disabled_endpoints";
pub const DELIVERY_CONSUMER_LAG: &str = "cartstream_delivery_consumer_lag_records";
pub const DELIVERY_OUTBOX: &str = "cartstream_delivery_outbox_records";
pub const DELIVERY_SETTLED: &str = "cartstream_delivery_settled_timestamp_seconds";
pub const STATE_CARTS: &str = "cartstream_state_carts";
pub const STATE_WRITE_DURATION: &str = "cartstream_state_write_duration_seconds";
pub const STATE_STALLED: &str = "cartstream_state_volume_stalled";
pub const RUNTIME_TASKS: &str = "cartstream_runtime_tasks";
pub const TENANTS_UPDATES: &str = "cartstream_tenants_updates_total";
pub const TENANTS_STALE: &str = "cartstream_tenants_stale";

/// Every name above with its kind, for documentation and the naming test.
pub const ALL: &[(&str, Kind)] = &[
    (INGRESS_REQUESTS, Kind::Counter),
    (INGRESS_REQUEST_DURATION, Kind::Histogram),
    (INGRESS_SIGNATURE_FAILURES, Kind::Counter),
    (INGRESS_CLUE_MISMATCHES, Kind::Counter),
    (INGRESS_IN_FLIGHT, Kind::Gauge),
    (INGRESS_BODY_SIZE, Kind::Histogram),
    (CONNECTIONS_REFUSED, Kind::Counter),
    (KAFKA_ACK_DURATION, Kind::Histogram),
    (KAFKA_PRODUCE_FAILURES, Kind::Counter),
    (KAFKA_PRODUCER_QUEUE, Kind::Gauge),
    (PROCESSOR_EVENTS, Kind::Counter),
    (PROCESSOR_DUPLICATES, Kind::Counter),
    (PROCESSOR_INVALID_RECORDS, Kind::Counter),
    (PROCESSOR_TEST_DELIVERIES, Kind::Counter),
    (PROCESSOR_TRANSITIONS, Kind::Counter),
    (PROCESSOR_TIMERS_FIRED, Kind::Counter),
    (PROCESSOR_TIMERS_PENDING, Kind::Gauge),
    (PROCESSOR_CONSUMER_LAG, Kind::Gauge),
    (PROCESSOR_OUTBOX, Kind::Gauge),
    (PROCESSOR_PARTITIONS, Kind::Gauge),
    (PROCESSOR_SETTLED, Kind::Gauge),
    (DELIVERY_ATTEMPTS, Kind::Counter),
    (DELIVERY_OUTCOMES, Kind::Counter),
    (DELIVERY_REQUEST_DURATION, Kind::Histogram),
    (DELIVERY_PENDING, Kind::Gauge),
    (DELIVERY_DEAD_LETTERED, Kind::Counter),
    (DELIVERY_OPEN_CIRCUITS, Kind::Gauge),
    (DELIVERY_IN_FLIGHT, Kind::Gauge),
    (DELIVERY_DISABLED, Kind::Gauge),
    (DELIVERY_CONSUMER_LAG, Kind::Gauge),
    (DELIVERY_OUTBOX, Kind::Gauge),
    (DELIVERY_SETTLED, Kind::Gauge),
    (STATE_CARTS, Kind::Gauge),
    (STATE_WRITE_DURATION, Kind::Histogram),
    (STATE_STALLED, Kind::Gauge),
    (RUNTIME_TASKS, Kind::Gauge),
    (TENANTS_UPDATES, Kind::Counter),
    (TENANTS_STALE, Kind::Gauge),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const SIZE_BUCKETS: &[f64] = &[
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
];

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), SIZE_BUCKETS)
                })
                .expect("bucket lists are non-empty")
                .install_recorder()
                .expect("the metrics recorder is installed only here, once");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        INGRESS_REQUESTS,
        "Inbound webhook requests by provider and HTTP status."
    );
    describe_histogram!(
        INGRESS_REQUEST_DURATION,
        Unit::Seconds,
        "Time from request head to response, by provider."
    );
    describe_counter!(
        INGRESS_SIGNATURE_FAILURES,
        "Deliveries refused because their signature, secret or timestamp did not verify, by provider."
    );
    describe_counter!(
        INGRESS_CLUE_MISMATCHES,
        "Platform test deliveries accepted behind an integration key although their store names no integration, by provider."
    );
    describe_gauge!(INGRESS_IN_FLIGHT, "Webhook requests being processed now.");
    describe_histogram!(
        INGRESS_BODY_SIZE,
        Unit::Bytes,
        "Size of accepted request bodies, by provider."
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections answered 503 and closed because the listener held its maximum, by listener."
    );
    describe_histogram!(
        KAFKA_ACK_DURATION,
        Unit::Seconds,
        "Time from handing a record to the producer to the broker's acknowledgement."
    );
    describe_counter!(
        KAFKA_PRODUCE_FAILURES,
        "Records the broker did not acknowledge, by reason (queue_full, timeout, broker)."
    );
    describe_gauge!(
        KAFKA_PRODUCER_QUEUE,
        "Records handed to the producer and not yet acknowledged or failed."
    );
    describe_counter!(
        PROCESSOR_EVENTS,
        "Distinct inbound deliveries normalized, by bucket."
    );
    describe_counter!(
        PROCESSOR_DUPLICATES,
        "Inbound deliveries dropped as duplicates of one seen within the window."
    );
    describe_counter!(
        PROCESSOR_INVALID_RECORDS,
        "Inbound records skipped because their metadata could not be read, by reason."
    );
    describe_counter!(
        PROCESSOR_TEST_DELIVERIES,
        "Platform test deliveries (marked cartstream-test) skipped without tracking a cart, by provider."
    );
    describe_counter!(
        PROCESSOR_TRANSITIONS,
        "Cart transitions emitted, by the phase entered (abandoned, completed, recovered)."
    );
    describe_counter!(
        PROCESSOR_TIMERS_FIRED,
        "Inactivity timers that fired and abandoned a cart."
    );
    describe_gauge!(
        PROCESSOR_TIMERS_PENDING,
        "Inactivity timers armed (one per active cart) on this processor's partitions."
    );
    describe_gauge!(
        PROCESSOR_CONSUMER_LAG,
        "Inbound records not yet applied, summed over this processor's partitions."
    );
    describe_gauge!(
        PROCESSOR_OUTBOX,
        "Output records written to state and not yet acknowledged by Kafka."
    );
    describe_gauge!(
        PROCESSOR_PARTITIONS,
        "Inbound partitions assigned to this processor."
    );
    describe_gauge!(
        PROCESSOR_SETTLED,
        Unit::Seconds,
        "The clock time up to which every due timer has fired and been published, on partitions consumed to their end."
    );
    describe_counter!(
        DELIVERY_ATTEMPTS,
        "Outbound HTTP attempts, by result (delivered, failed, dead_lettered) and status class."
    );
    describe_counter!(
        DELIVERY_OUTCOMES,
        "Recorded delivery outcomes, by outcome (attempt results and superseded, expired, skipped_disabled)."
    );
    describe_histogram!(
        DELIVERY_REQUEST_DURATION,
        Unit::Seconds,
        "Time from sending an outbound request to its answer (or failure)."
    );
    describe_gauge!(
        DELIVERY_PENDING,
        "Deliveries stored and waiting for an attempt (first or retry)."
    );
    describe_counter!(
        DELIVERY_DEAD_LETTERED,
        "Deliveries sent to the dead-letter topic (retries exhausted, expired, or 410 Gone)."
    );
    describe_gauge!(
        DELIVERY_OPEN_CIRCUITS,
        "Endpoints whose circuit is open (or half-open) after consecutive failures."
    );
    describe_gauge!(DELIVERY_IN_FLIGHT, "Outbound requests being made now.");
    describe_gauge!(
        DELIVERY_DISABLED,
        "Endpoints disabled because they answered 410 Gone."
    );
    describe_gauge!(
        DELIVERY_CONSUMER_LAG,
        "Transition records not yet read by this delivery worker."
    );
    describe_gauge!(
        DELIVERY_OUTBOX,
        "Outcome and dead-letter records stored and not yet acknowledged by Kafka."
    );
    describe_gauge!(
        DELIVERY_SETTLED,
        Unit::Seconds,
        "The clock time up to which every due delivery has been attempted (or ended) and its outcome published."
    );
    describe_gauge!(
        STATE_CARTS,
        "Carts tracked on this processor's partitions, by state."
    );
    describe_histogram!(
        STATE_WRITE_DURATION,
        Unit::Seconds,
        "Time to apply one polled batch of inbound records to a partition's state store: their state steps and the one atomic write batch that holds their effects and offset."
    );
    describe_gauge!(
        RUNTIME_TASKS,
        "Tasks alive on the async runtime (connections, requests, attempts, background work)."
    );
    describe_gauge!(
        STATE_STALLED,
        "1 while the role's state volume cannot be written and it has stopped consuming."
    );
    describe_counter!(
        TENANTS_UPDATES,
        "Changes read from the tenants topic, by whether the registry they leave was put in force (applied) or refused."
    );
    describe_gauge!(
        TENANTS_STALE,
        "1 while the tenants topic's latest changes are not in force: a record is unreadable or the registry they leave is invalid."
    );
}

/// The fixed vocabulary of HTTP statuses the ingress answers with.
pub fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        202 => "202",
        204 => "204",
        302 => "302",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        409 => "409",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}

pub fn ingress_request(provider: &'static str, status: u16, took: Duration) {
    counter!(INGRESS_REQUESTS, "provider" => provider, "status" => status_label(status))
        .increment(1);
    histogram!(INGRESS_REQUEST_DURATION, "provider" => provider).record(took.as_secs_f64());
}

pub fn ingress_signature_failure(provider: &'static str) {
    counter!(INGRESS_SIGNATURE_FAILURES, "provider" => provider).increment(1);
}

pub fn ingress_clue_mismatch(provider: &'static str) {
    counter!(INGRESS_CLUE_MISMATCHES, "provider" => provider).increment(1);
}

pub fn ingress_in_flight(delta: f64) {
    gauge!(INGRESS_IN_FLIGHT).increment(delta);
}

pub fn connection_refused(listener: &'static str) {
    counter!(CONNECTIONS_REFUSED, "listener" => listener).increment(1);
}

pub fn ingress_body_size(provider: &'static str, bytes: usize) {
    histogram!(INGRESS_BODY_SIZE, "provider" => provider).record(bytes as f64);
}

pub fn kafka_ack(took: Duration) {
    histogram!(KAFKA_ACK_DURATION, "topic" => "inbound").record(took.as_secs_f64());
}

pub fn kafka_produce_failure(reason: &'static str) {
    counter!(KAFKA_PRODUCE_FAILURES, "reason" => reason).increment(1);
}

pub fn kafka_producer_queue(messages: i32) {
    gauge!(KAFKA_PRODUCER_QUEUE).set(messages as f64);
}

pub fn processor_event(bucket: &'static str) {
    counter!(PROCESSOR_EVENTS, "bucket" => bucket).increment(1);
}

pub fn processor_duplicate() {
    counter!(PROCESSOR_DUPLICATES).increment(1);
}

pub fn processor_test_delivery(provider: &'static str) {
    counter!(PROCESSOR_TEST_DELIVERIES, "provider" => provider).increment(1);
}

pub fn processor_invalid_record(reason: &'static str) {
    counter!(PROCESSOR_INVALID_RECORDS, "reason" => reason).increment(1);
}

/// One transition into `to` (`abandoned`, `completed`, `recovered`).
pub fn processor_transition(to: &'static str) {
    counter!(PROCESSOR_TRANSITIONS, "to" => to).increment(1);
    if to == "abandoned" {
        counter!(PROCESSOR_TIMERS_FIRED).increment(1);
    }
}

pub fn processor_timers_pending(timers: u64) {
    gauge!(PROCESSOR_TIMERS_PENDING).set(timers as f64);
}

pub fn processor_lag(records: i64) {
    gauge!(PROCESSOR_CONSUMER_LAG).set(records as f64);
}

pub fn processor_outbox(records: u64) {
    gauge!(PROCESSOR_OUTBOX).set(records as f64);
}

pub fn processor_partitions(partitions: usize) {
    gauge!(PROCESSOR_PARTITIONS).set(partitions as f64);
}

/// The processor settled up to `now_ms` (see [`super::Settled`]).
pub fn processor_settled(now_ms: i64) {
    gauge!(PROCESSOR_SETTLED).set(now_ms as f64 / 1000.0);
}

/// One HTTP attempt: `result` is `delivered`, `failed` or `dead_lettered`; `class` is `2xx`…
/// `5xx`, `timeout`, `connection` or `refused`.
pub fn delivery_attempt(result: &'static str, class: &'static str, took: Duration) {
    counter!(DELIVERY_ATTEMPTS, "outcome" => result, "status_class" => class).increment(1);
    histogram!(DELIVERY_REQUEST_DURATION).record(took.as_secs_f64());
}

/// One recorded outcome record; `dead_lettered` when the delivery went to the dead-letter topic
/// with it.
pub fn delivery_outcome(outcome: &'static str, dead_lettered: bool) {
    counter!(DELIVERY_OUTCOMES, "outcome" => outcome).increment(1);
    if dead_lettered {
        counter!(DELIVERY_DEAD_LETTERED).increment(1);
    }
}

/// The worker's gauges, sampled once per tick.
pub fn delivery_gauges(pending: u64, open_circuits: usize, disabled: usize, outbox: u64) {
    gauge!(DELIVERY_PENDING).set(pending as f64);
    gauge!(DELIVERY_OPEN_CIRCUITS).set(open_circuits as f64);
    gauge!(DELIVERY_DISABLED).set(disabled as f64);
    gauge!(DELIVERY_OUTBOX).set(outbox as f64);
}

pub fn delivery_in_flight(requests: usize) {
    gauge!(DELIVERY_IN_FLIGHT).set(requests as f64);
}

/// The delivery worker settled up to `now_ms` (see [`super::Settled`]).
pub fn delivery_settled(now_ms: i64) {
    gauge!(DELIVERY_SETTLED).set(now_ms as f64 / 1000.0);
}

pub fn delivery_lag(records: i64) {
    gauge!(DELIVERY_CONSUMER_LAG).set(records as f64);
}

/// The status class label of an HTTP status.
pub fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

pub fn state_carts(state: &'static str, carts: u64) {
    gauge!(STATE_CARTS, "state" => state).set(carts as f64);
}

/// Tasks alive on the async runtime, sampled at scrape time: a leak shows as a rising line.
pub fn runtime_tasks(tasks: usize) {
    gauge!(RUNTIME_TASKS).set(tasks as f64);
}

/// Whether `role` (`processor`, `delivery`) is stalled on its state volume.
pub fn state_stalled(role: &'static str, stalled: bool) {
    gauge!(STATE_STALLED, "role" => role).set(if stalled { 1.0 } else { 0.0 });
}

pub fn state_write(took: Duration) {
    histogram!(STATE_WRITE_DURATION).record(took.as_secs_f64());
}

/// Changes read from the tenants topic were put in force (`applied`) or refused; while
/// refused, the registry in force is stale.
pub fn tenants_update(applied: bool) {
    let result = if applied { "applied" } else { "refused" };
    counter!(TENANTS_UPDATES, "result" => result).increment(1);
    gauge!(TENANTS_STALE).set(if applied { 0.0 } else { 1.0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_follows_the_pattern() {
        for (name, kind) in ALL {
            let rest = name.strip_prefix("cartstream_").expect(name);
            let (subsystem, _) = rest.split_once('_').expect(name);
            assert!(
                [
                    "ingress",
                    "http",
                    "kafka",
                    "processor",
                    "delivery",
                    "state",
                    "runtime",
                    "tenants"
                ]
                .contains(&subsystem),
                "{name}"
            );
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            match kind {
                Kind::Counter => assert!(name.ends_with("_total"), "{name}"),
                Kind::Gauge => assert!(!name.ends_with("_total"), "{name}"),
                Kind::Histogram => assert!(
                    name.ends_with("_seconds") || name.ends_with("_bytes"),
                    "{name}"
                ),
            }
        }
    }

    #[test]
    fn docs_list_every_metric() {
        let docs = include_str!("../../docs/metrics.md");
        for (name, _) in ALL {
            assert!(
                docs.contains(name),
                "docs/metrics.md does not mention {name}"
            );
        }
    }
}
