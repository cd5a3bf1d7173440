//! The completeness check: reads what the daemon wrote to Kafka and compares it with what the
//! ingress acknowledged.
//!
//! - `<prefix>.inbound.v1`: one record per acknowledged attempt (an intentional re-send gets its
//!   own record), none for a forged one; an attempt whose outcome is unknown may add one.
//! - `<prefix>.events.v1` (when the processor runs): exactly one event per distinct acknowledged
//!   delivery id, none for a forged one.
//! - `<prefix>.transitions.v1` (likewise): exactly one `order_completed` transition for the cart
//!   of each acknowledged checkout-then-order journey, and no cart with two transitions of the
//!   same bucket.
//!
//! - `<prefix>.deliveries.v1` (when every tenant subscribes the run's receiver): each transition
//!   ends exactly once, `delivered` (or `superseded` by its cart's order), never dead-lettered,
//!   expired or skipped; and the receiver got each delivered one with a valid signature.
//!
//! Every inbound record and event must belong to a request of the run (use a fresh prefix).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::drive::{Expected, Outcome};
use crate::receiver::{self, Received};
use crate::tenants::ENDPOINT_ID;

#[derive(Debug, Clone, Serialize)]
pub struct TopicCheck {
    pub topic: String,
    pub records: u64,
    /// Delivery ids (or journeys) the check expected to find.
    pub expected: u64,
    pub missing: u64,
    pub duplicated: u64,
    /// Records of forged requests, or of delivery ids the run never sent.
    pub unexpected: u64,
    /// A few offending delivery ids, for the report.
    pub examples: Vec<String>,
}

impl TopicCheck {
    pub fn passed(&self) -> bool {
        self.missing == 0 && self.duplicated == 0 && self.unexpected == 0
    }
}

/// Counts per delivery id in one topic. For the inbound topic the id is the
/// `cartstream-delivery-id` header; for JSON topics `pick` extracts it from the value.
fn count_topic(
    brokers: &str,
    topic: &str,
    pick: fn(&[u8], Option<&str>) -> Option<String>,
    done: &dyn Fn(&HashMap<String, u64>) -> bool,
    patience: Duration,
) -> anyhow::Result<(u64, HashMap<String, u64>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "cartstream-load-check")
        .set("enable.auto.commit", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    // A busy broker may take a while to answer; give it a few chances.
    let mut attempt = 0;
    let metadata = loop {
        attempt += 1;
        match consumer.fetch_metadata(Some(topic), timeout) {
            Ok(metadata) => break metadata,
            Err(error) if attempt < 6 => {
                eprintln!("reading the metadata of {topic}: {error}; again")
            }
            Err(error) => {
                return Err(error).with_context(|| format!("reading the metadata of {topic}"))
            }
        }
    };
    let mut assignment = TopicPartitionList::new();
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| p.id())
        .collect();
    anyhow::ensure!(!partitions.is_empty(), "{topic} has no partitions");
    for &p in &partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut records = 0u64;
    let mut positions: HashMap<i32, i64> = HashMap::new();
    let mut last_progress = Instant::now();
    let mut satisfied_at: Option<Instant> = None;
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(message) => {
                let message = message?;
                records += 1;
                last_progress = Instant::now();
                positions.insert(message.partition(), message.offset() + 1);
                let header = message.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == cartstream::kafka::inbound::HEADER_DELIVERY_ID)
                        .and_then(|h| h.value)
                        .map(String::from_utf8_lossy)
                        .map(|s| s.into_owned())
                });
                let id = pick(message.payload().unwrap_or_default(), header.as_deref())
                    .unwrap_or_else(|| NO_ID.to_string());
                *counts.entry(id).or_default() += 1;
            }
            None => {
                // Caught up with every partition's current end?
                // A broker too busy to answer counts as not caught up yet.
                let mut caught_up = true;
                for &p in &partitions {
                    match consumer.fetch_watermarks(topic, p, timeout) {
                        Ok((_, high)) if positions.get(&p).copied().unwrap_or(0) >= high => {}
                        Ok(_) => caught_up = false,
                        Err(error) => {
                            eprintln!("reading the end of {topic} [{p}]: {error}; again");
                            caught_up = false;
                        }
                    }
                }
                if !caught_up && last_progress.elapsed() >= patience + GIVE_UP {
                    anyhow::bail!(
                        "{topic}: no record and no answer about its end for {:?}",
                        patience + GIVE_UP
                    );
                }
                if caught_up && done(&counts) {
                    // Linger a little so that a late duplicate is still seen.
                    let at = *satisfied_at.get_or_insert_with(Instant::now);
                    if at.elapsed() >= Duration::from_secs(2) {
                        break;
                    }
                } else if caught_up && last_progress.elapsed() >= patience {
                    break;
                }
            }
        }
    }
    Ok((records, counts))
}

/// How long past `patience` a silent broker is waited for before the check gives up.
const GIVE_UP: Duration = Duration::from_secs(60);

const NO_ID: &str = "(no delivery id)";

fn inbound_id(_: &[u8], header: Option<&str>) -> Option<String> {
    header.map(str::to_string)
}

fn event_id(value: &[u8], _: Option<&str>) -> Option<String> {
    #[derive(Deserialize)]
    struct Event {
        delivery_id: Option<String>,
    }
    serde_json::from_slice::<Event>(value).ok()?.delivery_id
}

/// A transition's own id (`webhook-id` of its deliveries).
fn transition_record_id(value: &[u8], _: Option<&str>) -> Option<String> {
    #[derive(Deserialize)]
    struct Transition {
        id: String,
    }
    Some(serde_json::from_slice::<Transition>(value).ok()?.id)
}

/// `<outcome>:<transition id>` of an outcome record of the run's endpoint.
fn outcome_id(value: &[u8], _: Option<&str>) -> Option<String> {
    #[derive(Deserialize)]
    struct Outcome {
        transition_id: String,
        endpoint_id: String,
        outcome: String,
    }
    let o = serde_json::from_slice::<Outcome>(value).ok()?;
    (o.endpoint_id == ENDPOINT_ID).then(|| format!("{}:{}", o.outcome, o.transition_id))
}

/// The outcomes that end a delivery as it should end.
const ENDINGS: [&str; 2] = ["delivered", "superseded"];

/// Deliveries: every transition ends once, as [`ENDINGS`] allow; a delivered one reached the
/// receiver with a valid signature; nothing else reached it, and no delivery ended badly.
fn compare_deliveries(
    topic: &str,
    records: u64,
    transitions: &HashMap<String, u64>,
    outcomes: &HashMap<String, u64>,
    received: &HashMap<String, Received>,
) -> TopicCheck {
    let mut check = TopicCheck {
        topic: topic.to_string(),
        records,
        expected: transitions.len() as u64,
        missing: 0,
        duplicated: 0,
        unexpected: 0,
        examples: Vec::new(),
    };
    let count = |outcome: &str, id: &str| {
        outcomes
            .get(&format!("{outcome}:{id}"))
            .copied()
            .unwrap_or(0)
    };
    for id in transitions.keys() {
        let ended: u64 = ENDINGS.iter().map(|outcome| count(outcome, id)).sum();
        if ended == 0 {
            check.missing += 1;
            note(&mut check.examples, format!("never delivered {id}"));
        } else if ended > 1 {
            check.duplicated += ended - 1;
            note(&mut check.examples, format!("ended {ended} times {id}"));
        }
        if count("delivered", id) > 0 && received.get(id).map_or(0, |r| r.valid) == 0 {
            check.missing += 1;
            note(&mut check.examples, format!("delivered, not received {id}"));
        }
    }
    for (key, &seen) in outcomes {
        let (outcome, id) = key.split_once(':').unwrap_or((key.as_str(), ""));
        if !transitions.contains_key(id) {
            check.unexpected += seen;
            note(
                &mut check.examples,
                format!("{outcome} for an unknown transition {id}"),
            );
        } else if !ENDINGS.contains(&outcome) && outcome != "failed" {
            check.unexpected += seen;
            note(&mut check.examples, format!("{outcome} {id}"));
        }
    }
    for (id, r) in received {
        if r.invalid > 0 {
            check.unexpected += u64::from(r.invalid);
            note(&mut check.examples, format!("bad signature or tenant {id}"));
        }
        if !transitions.contains_key(id) {
            check.unexpected += u64::from(r.valid);
            note(
                &mut check.examples,
                format!("received an unknown transition {id}"),
            );
        }
    }
    check
}

fn transition_id(value: &[u8], _: Option<&str>) -> Option<String> {
    #[derive(Deserialize)]
    struct Transition {
        bucket: String,
        cart: String,
    }
    let t = serde_json::from_slice::<Transition>(value).ok()?;
    Some(format!("{}:{}", t.bucket, t.cart))
}

/// Compares counts with the allowed range for each expected id. With `open`, ids not in
/// `allowed` may appear once; otherwise they must not appear.
fn compare(
    topic: &str,
    records: u64,
    counts: &HashMap<String, u64>,
    allowed: &HashMap<String, (u64, u64)>,
    open: bool,
) -> TopicCheck {
    let mut check = TopicCheck {
        topic: topic.to_string(),
        records,
        expected: allowed.values().filter(|(low, _)| *low > 0).count() as u64,
        missing: 0,
        duplicated: 0,
        unexpected: 0,
        examples: Vec::new(),
    };
    for (id, &(low, high)) in allowed {
        let seen = counts.get(id).copied().unwrap_or(0);
        if seen < low {
            check.missing += low - seen;
            note(
                &mut check.examples,
                format!("missing {id}: {seen} of {low}"),
            );
        } else if seen > high {
            if high == 0 {
                check.unexpected += seen;
                note(&mut check.examples, format!("unexpected {id}: {seen}"));
            } else {
                check.duplicated += seen - high;
                note(
                    &mut check.examples,
                    format!("duplicated {id}: {seen}, at most {high}"),
                );
            }
        }
    }
    for (id, &seen) in counts {
        if allowed.contains_key(id) {
            continue;
        }
        if open && id != NO_ID {
            if seen > 1 {
                check.duplicated += seen - 1;
                note(&mut check.examples, format!("duplicated {id}: {seen}"));
            }
        } else {
            check.unexpected += seen;
            note(&mut check.examples, format!("never sent {id}: {seen}"));
        }
    }
    check
}

fn note(examples: &mut Vec<String>, example: String) {
    if examples.len() < 10 {
        examples.push(example);
    }
}

/// Inbound: acknowledged ≤ records ≤ acknowledged + uncertain; forged-only ids: none.
fn inbound_allowed(expected: &HashMap<String, Expected>) -> HashMap<String, (u64, u64)> {
    expected
        .iter()
        .map(|(id, e)| {
            let low = u64::from(e.acknowledged);
            (id.clone(), (low, low + u64::from(e.uncertain)))
        })
        .collect()
}

/// Events: exactly one per distinct acknowledged id; at most one where only uncertain.
fn events_allowed(expected: &HashMap<String, Expected>) -> HashMap<String, (u64, u64)> {
    expected
        .iter()
        .map(|(id, e)| {
            let low = u64::from(e.acknowledged > 0);
            let high = u64::from(e.acknowledged > 0 || e.uncertain > 0);
            (id.clone(), (low, high))
        })
        .collect()
}

pub struct Topics {
    pub brokers: String,
    pub prefix: String,
    /// Also check the processor's topics.
    pub processor: bool,
    /// How long to wait for the processor to catch up with no new record arriving.
    pub patience: Duration,
    /// Every tenant subscribes this receiver: check the delivery of every transition.
    pub receiver: Option<receiver::Log>,
}

pub async fn run(topics: Topics, outcome: &Outcome) -> anyhow::Result<Vec<TopicCheck>> {
    let expected = outcome.expected.clone();
    let journeys = outcome.journeys.clone();
    tokio::task::spawn_blocking(move || {
        let mut checks = Vec::new();
        let topic = format!("{}.inbound.v1", topics.prefix);
        let allowed = inbound_allowed(&expected);
        let (records, counts) = count_topic(
            &topics.brokers,
            &topic,
            inbound_id,
            &|_| true,
            Duration::ZERO,
        )?;
        checks.push(compare(&topic, records, &counts, &allowed, false));
        if !topics.processor {
            return Ok(checks);
        }
        let topic = format!("{}.events.v1", topics.prefix);
        let allowed = events_allowed(&expected);
        let wanted: Vec<&String> = allowed
            .iter()
            .filter(|(_, (low, _))| *low > 0)
            .map(|(id, _)| id)
            .collect();
        let (records, counts) = count_topic(
            &topics.brokers,
            &topic,
            event_id,
            &|counts| wanted.iter().all(|id| counts.contains_key(*id)),
            topics.patience,
        )?;
        checks.push(compare(&topic, records, &counts, &allowed, false));

        // Transitions: each journey's completion, keyed by its cart. Other deliveries of the
        // run may move carts too (the fixtures' event times are in the past, so a cart's
        // inactivity deadline may already have passed); at most once per cart and bucket.
        let topic = format!("{}.transitions.v1", topics.prefix);
        let allowed: HashMap<String, (u64, u64)> = journeys
            .iter()
            .map(|cart| (format!("order_completed:{cart}"), (1, 1)))
            .collect();
        let wanted: Vec<String> = journeys
            .iter()
            .map(|id| format!("order_completed:{id}"))
            .collect();
        let (records, counts) = count_topic(
            &topics.brokers,
            &topic,
            transition_id,
            &|counts| wanted.iter().all(|id| counts.contains_key(id)),
            topics.patience,
        )?;
        checks.push(compare(&topic, records, &counts, &allowed, true));

        let Some(log) = topics.receiver else {
            return Ok(checks);
        };
        let (_, transitions) = count_topic(
            &topics.brokers,
            &topic,
            transition_record_id,
            &|_| true,
            Duration::ZERO,
        )?;
        let ended = |counts: &HashMap<String, u64>| {
            transitions.keys().all(|id| {
                ENDINGS
                    .iter()
                    .any(|outcome| counts.contains_key(&format!("{outcome}:{id}")))
            })
        };
        let topic = format!("{}.deliveries.v1", topics.prefix);
        let (records, outcomes) =
            count_topic(&topics.brokers, &topic, outcome_id, &ended, topics.patience)?;
        let received = receiver::snapshot(&log);
        checks.push(compare_deliveries(
            &topic,
            records,
            &transitions,
            &outcomes,
            &received,
        ));
        Ok(checks)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::Kind;

    fn expected(acknowledged: u32, uncertain: u32, forged: u32) -> Expected {
        Expected {
            acknowledged,
            uncertain,
            forged,
            kind: Some(Kind::Single),
        }
    }

    #[test]
    fn a_missing_acknowledged_delivery_fails() {
        let e = HashMap::from([("a".to_string(), expected(1, 0, 0))]);
        let check = compare("t", 0, &HashMap::new(), &inbound_allowed(&e), false);
        assert_eq!(check.missing, 1);
        assert!(!check.passed());
    }

    #[test]
    fn a_resent_delivery_needs_two_inbound_records_but_one_event() {
        let e = HashMap::from([("a".to_string(), expected(2, 0, 0))]);
        let one = HashMap::from([("a".to_string(), 1)]);
        let two = HashMap::from([("a".to_string(), 2)]);
        assert!(!compare("t", 1, &one, &inbound_allowed(&e), false).passed());
        assert!(compare("t", 2, &two, &inbound_allowed(&e), false).passed());
        assert!(compare("t", 1, &one, &events_allowed(&e), false).passed());
        assert_eq!(
            compare("t", 2, &two, &events_allowed(&e), false).duplicated,
            1
        );
    }

    #[test]
    fn a_forged_delivery_in_the_topic_fails() {
        let e = HashMap::from([("f".to_string(), expected(0, 0, 1))]);
        let seen = HashMap::from([("f".to_string(), 1)]);
        assert_eq!(
            compare("t", 1, &seen, &inbound_allowed(&e), false).unexpected,
            1
        );
    }

    #[test]
    fn an_uncertain_attempt_may_or_may_not_be_recorded() {
        let e = HashMap::from([("u".to_string(), expected(0, 1, 0))]);
        let seen = HashMap::from([("u".to_string(), 1)]);
        assert!(compare("t", 0, &HashMap::new(), &inbound_allowed(&e), false).passed());
        assert!(compare("t", 1, &seen, &inbound_allowed(&e), false).passed());
    }

    #[test]
    fn a_cart_moved_twice_the_same_way_fails_even_when_not_required() {
        let seen = HashMap::from([("order_completed:c".to_string(), 2)]);
        let check = compare("t", 2, &seen, &HashMap::new(), true);
        assert_eq!(check.duplicated, 1);
        let once = HashMap::from([("order_completed:c".to_string(), 1)]);
        assert!(compare("t", 1, &once, &HashMap::new(), true).passed());
    }

    #[test]
    fn each_transition_is_delivered_once_and_received_signed() {
        let transitions = HashMap::from([("t1".to_string(), 1), ("t2".to_string(), 1)]);
        let outcomes = HashMap::from([
            ("failed:t1".to_string(), 1),
            ("delivered:t1".to_string(), 1),
            ("superseded:t2".to_string(), 1),
        ]);
        let received = HashMap::from([(
            "t1".to_string(),
            Received {
                valid: 2,
                invalid: 0,
            },
        )]);
        let check = compare_deliveries("d", 3, &transitions, &outcomes, &received);
        assert!(check.passed(), "{check:?}");

        let twice = HashMap::from([
            ("delivered:t1".to_string(), 2),
            ("dead_lettered:t2".to_string(), 1),
        ]);
        let check = compare_deliveries("d", 3, &transitions, &twice, &received);
        assert_eq!(
            (check.duplicated, check.missing, check.unexpected),
            (1, 1, 1)
        );

        let forged = HashMap::from([(
            "t1".to_string(),
            Received {
                valid: 0,
                invalid: 1,
            },
        )]);
        let check = compare_deliveries("d", 2, &transitions, &outcomes, &forged);
        assert_eq!((check.missing, check.unexpected), (1, 1));
    }

    #[test]
    fn a_record_the_run_never_sent_fails() {
        let seen = HashMap::from([("stranger".to_string(), 1)]);
        assert_eq!(compare("t", 1, &seen, &HashMap::new(), false).unexpected, 1);
    }
}
