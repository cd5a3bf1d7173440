//! The completeness check: reads what the daemon wrote to Kafka and compares it with what the
//! ingress acknowledged (which answers the ingress owed is `floor`'s part).
//!
//! - `<prefix>.inbound.v1`: one record per acknowledged attempt (an intentional re-send gets its
//!   own record), none for a forged one; an attempt whose outcome is unknown may add one.
//! - `<prefix>.events.v1` (when the processor runs): exactly one event per distinct acknowledged
//!   delivery id, none for a forged one.
//! - `<prefix>.transitions.v1` (likewise): exactly the transitions the run made due, once each —
//!   `order_completed` for the cart of each acknowledged checkout-then-order journey,
//!   `abandoned_candidate` for the cart of each acknowledged abandonment — and no other.
//! - `<prefix>.deliveries.v1` (when every tenant subscribes the run's receiver): each transition
//!   ends exactly once, `delivered`, never dead-lettered, expired, skipped or superseded; and the
//!   receiver got each one with a valid signature, at most `max_receipts` times (once, unless
//!   the run allows more), and nothing else.
//!
//! Once everything expected has arrived, the check watches the topics and the receiver for a
//! quiet period more and compares what it holds then: a late duplicate fails like a missing
//! record. Every inbound record and event must belong to a request of the run (use a fresh
//! prefix).

use std::collections::{BTreeMap, HashMap};
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

/// Extracts the id a record is counted under: from its value, or from its
/// `cartstream-delivery-id` header (given as the second argument).
type Pick = fn(&[u8], Option<&str>) -> Option<String>;

/// One topic, read from its beginning and kept open, so that the quiet period can go on
/// reading where the wait for the expected records stopped.
struct Reader {
    consumer: BaseConsumer,
    topic: String,
    partitions: Vec<i32>,
    pick: Pick,
    /// Records by id.
    counts: HashMap<String, u64>,
    records: u64,
    /// The next offset of each partition.
    positions: HashMap<i32, i64>,
}

impl Reader {
    fn open(brokers: &str, topic: &str, pick: Pick) -> anyhow::Result<Reader> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "cartstream-load-check")
            .set("enable.auto.commit", "false")
            .create()?;
        // A busy broker may take a while to answer; give it a few chances.
        let mut attempt = 0;
        let metadata = loop {
            attempt += 1;
            match consumer.fetch_metadata(Some(topic), BROKER_TIMEOUT) {
                Ok(metadata) => break metadata,
                Err(error) if attempt < 6 => {
                    eprintln!("reading the metadata of {topic}: {error}; again")
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("reading the metadata of {topic}"))
                }
            }
        };
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .map(|p| p.id())
            .collect();
        anyhow::ensure!(!partitions.is_empty(), "{topic} has no partitions");
        let mut assignment = TopicPartitionList::new();
        for &p in &partitions {
            assignment.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        Ok(Reader {
            consumer,
            topic: topic.to_string(),
            partitions,
            pick,
            counts: HashMap::new(),
            records: 0,
            positions: HashMap::new(),
        })
    }

    /// Reads until `done` holds with every partition read to its current end, or until the
    /// topic is read to its end and nothing new arrived for `patience`.
    fn wait_for(
        &mut self,
        done: &dyn Fn(&HashMap<String, u64>) -> bool,
        patience: Duration,
    ) -> anyhow::Result<()> {
        let topic = self.topic.clone();
        let mut last_progress = Instant::now();
        loop {
            match self.consumer.poll(Duration::from_millis(200)) {
                // librdkafka reports a broker it cannot reach (one killed by failover.sh, say)
                // and goes on with the others: wait for it as for a slow one.
                Some(Err(error)) => {
                    eprintln!("reading {topic}: {error}; again");
                    if last_progress.elapsed() >= patience + GIVE_UP {
                        return Err(error).with_context(|| {
                            format!("{topic}: nothing but errors for {:?}", patience + GIVE_UP)
                        });
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Some(Ok(message)) => {
                    self.records += 1;
                    last_progress = Instant::now();
                    self.positions
                        .insert(message.partition(), message.offset() + 1);
                    let header = message.headers().and_then(|h| {
                        h.iter()
                            .find(|h| h.key == cartstream::kafka::inbound::HEADER_DELIVERY_ID)
                            .and_then(|h| h.value)
                            .map(String::from_utf8_lossy)
                            .map(|s| s.into_owned())
                    });
                    let id = (self.pick)(message.payload().unwrap_or_default(), header.as_deref())
                        .unwrap_or_else(|| NO_ID.to_string());
                    *self.counts.entry(id).or_default() += 1;
                }
                None => {
                    // Caught up with every partition's current end?
                    // A broker too busy to answer counts as not caught up yet.
                    let mut caught_up = true;
                    for &p in &self.partitions {
                        match self.consumer.fetch_watermarks(&topic, p, BROKER_TIMEOUT) {
                            Ok((_, high))
                                if self.positions.get(&p).copied().unwrap_or(0) >= high => {}
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
                    if caught_up && (done(&self.counts) || last_progress.elapsed() >= patience) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Reads to the topic's current end.
    fn read_to_end(&mut self) -> anyhow::Result<()> {
        self.wait_for(&|_| true, Duration::ZERO)
    }
}

const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The outcome that ends a delivery of the run as it should end. `superseded` is not one: no
/// cart of the run is both abandoned and ordered.
const DELIVERED: &str = "delivered";

/// What the receiver counted, per transition of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Receipts {
    /// The most validly signed requests one transition may bring (1 unless a stated
    /// at-least-once allowance says more).
    pub max_per_transition: u32,
    /// Transitions by how many validly signed requests arrived for them, e.g. `{"1": 557}`.
    pub per_transition: BTreeMap<u32, u64>,
    /// Requests whose signature did not verify, or for a tenant the run does not know.
    pub invalid: u64,
    /// Validly signed requests for transitions not in the transitions topic.
    pub unknown: u64,
    /// `failed` outcomes (attempts retried later).
    pub failed_attempts: u64,
}

/// Deliveries: every transition ends once, `delivered`, never dead-lettered, expired, skipped
/// or superseded; the receiver got each one, validly signed, at least once and at most
/// `max_receipts` times, and nothing else.
fn compare_deliveries(
    topic: &str,
    records: u64,
    transitions: &HashMap<String, u64>,
    outcomes: &HashMap<String, u64>,
    received: &HashMap<String, Received>,
    max_receipts: u32,
) -> (TopicCheck, Receipts) {
    let mut check = TopicCheck {
        topic: topic.to_string(),
        records,
        expected: transitions.len() as u64,
        missing: 0,
        duplicated: 0,
        unexpected: 0,
        examples: Vec::new(),
    };
    let mut receipts = Receipts {
        max_per_transition: max_receipts,
        ..Receipts::default()
    };
    let count = |outcome: &str, id: &str| {
        outcomes
            .get(&format!("{outcome}:{id}"))
            .copied()
            .unwrap_or(0)
    };
    for id in transitions.keys() {
        let delivered = count(DELIVERED, id);
        if delivered == 0 {
            check.missing += 1;
            note(&mut check.examples, format!("never delivered {id}"));
        } else if delivered > 1 {
            check.duplicated += delivered - 1;
            note(
                &mut check.examples,
                format!("delivered {delivered} times {id}"),
            );
        }
        let valid = received.get(id).map_or(0, |r| r.valid);
        *receipts.per_transition.entry(valid).or_default() += 1;
        if delivered > 0 && valid == 0 {
            check.missing += 1;
            note(&mut check.examples, format!("delivered, not received {id}"));
        } else if valid > max_receipts {
            check.duplicated += u64::from(valid - max_receipts);
            note(
                &mut check.examples,
                format!("received {valid} times, at most {max_receipts}: {id}"),
            );
        }
    }
    for (key, &seen) in outcomes {
        let (outcome, id) = key.split_once(':').unwrap_or((key.as_str(), ""));
        if outcome == "failed" {
            receipts.failed_attempts += seen;
        }
        if !transitions.contains_key(id) {
            check.unexpected += seen;
            note(
                &mut check.examples,
                format!("{outcome} for an unknown transition {id}"),
            );
        } else if outcome != DELIVERED && outcome != "failed" {
            check.unexpected += seen;
            note(&mut check.examples, format!("{outcome} {id}"));
        }
    }
    for (id, r) in received {
        if r.invalid > 0 {
            receipts.invalid += u64::from(r.invalid);
            check.unexpected += u64::from(r.invalid);
            note(&mut check.examples, format!("bad signature or tenant {id}"));
        }
        if !transitions.contains_key(id) && r.valid > 0 {
            receipts.unknown += u64::from(r.valid);
            check.unexpected += u64::from(r.valid);
            note(
                &mut check.examples,
                format!("received an unknown transition {id}"),
            );
        }
    }
    (check, receipts)
}

/// `<bucket>:<cart>` of a transition.
fn transition_id(value: &[u8], _: Option<&str>) -> Option<String> {
    #[derive(Deserialize)]
    struct Transition {
        bucket: String,
        cart: String,
    }
    let t = serde_json::from_slice::<Transition>(value).ok()?;
    Some(format!("{}:{}", t.bucket, t.cart))
}

/// Compares counts with the allowed range for each expected id; ids not in `allowed` must not
/// appear.
fn compare(
    topic: &str,
    records: u64,
    counts: &HashMap<String, u64>,
    allowed: &HashMap<String, (u64, u64)>,
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
        if !allowed.contains_key(id) {
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

/// Transitions, by `<bucket>:<cart>`: exactly one `order_completed` per acknowledged journey,
/// exactly one `abandoned_candidate` per acknowledged abandonment, at most one where the
/// request that would cause it has an unknown outcome — and nothing else: every other cart of
/// the run is active within its inactivity window, or was never a cart (an order with no
/// checkout).
fn transitions_allowed(outcome: &Outcome) -> HashMap<String, (u64, u64)> {
    let due = |bucket: &'static str, carts: &[String]| {
        carts
            .iter()
            .map(move |cart| (format!("{bucket}:{cart}"), (1, 1)))
            .collect::<Vec<_>>()
    };
    outcome
        .uncertain_transitions
        .iter()
        .map(|id| (id.clone(), (0, 1)))
        .chain(due("order_completed", &outcome.journeys))
        .chain(due("abandoned_candidate", &outcome.abandonments))
        .collect()
}

pub struct Topics {
    pub brokers: String,
    pub prefix: String,
    /// Also check the processor's topics.
    pub processor: bool,
    /// How long to wait for the processor to catch up with no new record arriving.
    pub patience: Duration,
    /// Once everything expected has arrived, how long to go on watching for more.
    pub quiet: Duration,
    /// Every tenant subscribes this receiver: check the delivery of every transition.
    pub receiver: Option<receiver::Log>,
    /// The most validly signed requests the receiver may get for one transition.
    pub max_receipts: u32,
}

/// What arrived after everything expected had: each must still fit the expectations.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Quiet {
    pub seconds: f64,
    /// Records each topic gained during the quiet period.
    pub late_records: BTreeMap<String, u64>,
    /// Requests the receiver got during the quiet period.
    pub late_receipts: u64,
}

/// Everything the check found.
pub struct Checked {
    pub topics: Vec<TopicCheck>,
    pub receipts: Option<Receipts>,
    pub quiet: Quiet,
}

impl Checked {
    pub fn passed(&self) -> bool {
        self.topics.iter().all(TopicCheck::passed)
    }
}

fn receipts_so_far(log: Option<&receiver::Log>) -> u64 {
    log.map_or(0, |log| {
        receiver::snapshot(log)
            .values()
            .map(|r| u64::from(r.valid) + u64::from(r.invalid))
            .sum()
    })
}

pub async fn run(topics: Topics, outcome: &Outcome) -> anyhow::Result<Checked> {
    let expected = outcome.expected.clone();
    let allowed_transitions = transitions_allowed(outcome);
    tokio::task::spawn_blocking(move || {
        let brokers = topics.brokers.as_str();
        let topic = |name: &str| format!("{}.{name}.v1", topics.prefix);

        // First wait until everything expected has arrived (or `patience` passed without news).
        let mut inbound = Reader::open(brokers, &topic("inbound"), inbound_id)?;
        inbound.read_to_end()?;
        let mut processor = None;
        if topics.processor {
            let mut events = Reader::open(brokers, &topic("events"), event_id)?;
            let allowed = events_allowed(&expected);
            events.wait_for(
                &|counts| required_present(&allowed, counts),
                topics.patience,
            )?;
            let mut transitions = Reader::open(brokers, &topic("transitions"), transition_id)?;
            transitions.wait_for(
                &|counts| required_present(&allowed_transitions, counts),
                topics.patience,
            )?;
            let mut deliveries = None;
            if topics.receiver.is_some() {
                let mut ids = Reader::open(brokers, &topic("transitions"), transition_record_id)?;
                ids.read_to_end()?;
                let mut outcomes = Reader::open(brokers, &topic("deliveries"), outcome_id)?;
                let wanted: Vec<String> = ids
                    .counts
                    .keys()
                    .map(|id| format!("{DELIVERED}:{id}"))
                    .collect();
                outcomes.wait_for(
                    &|counts| wanted.iter().all(|id| counts.contains_key(id)),
                    topics.patience,
                )?;
                deliveries = Some((ids, outcomes));
            }
            processor = Some((events, allowed, transitions, deliveries));
        }

        // Then go on watching for the quiet period: a late duplicate or a stray record fails
        // as surely as a missing one.
        let receipts_before = receipts_so_far(topics.receiver.as_ref());
        let mut readers: Vec<&mut Reader> = vec![&mut inbound];
        if let Some((events, _, transitions, deliveries)) = processor.as_mut() {
            readers.push(events);
            readers.push(transitions);
            if let Some((_, outcomes)) = deliveries.as_mut() {
                readers.push(outcomes);
            }
        }
        let before: Vec<u64> = readers.iter().map(|r| r.records).collect();
        std::thread::sleep(topics.quiet);
        let mut quiet = Quiet {
            seconds: topics.quiet.as_secs_f64(),
            ..Quiet::default()
        };
        for (reader, before) in readers.into_iter().zip(before) {
            reader.read_to_end()?;
            quiet
                .late_records
                .insert(reader.topic.clone(), reader.records - before);
        }
        quiet.late_receipts = receipts_so_far(topics.receiver.as_ref()) - receipts_before;

        let mut checks = vec![compare(
            &inbound.topic,
            inbound.records,
            &inbound.counts,
            &inbound_allowed(&expected),
        )];
        let mut receipts = None;
        if let Some((events, allowed, transitions, deliveries)) = processor.as_mut() {
            checks.push(compare(
                &events.topic,
                events.records,
                &events.counts,
                allowed,
            ));
            checks.push(compare(
                &transitions.topic,
                transitions.records,
                &transitions.counts,
                &allowed_transitions,
            ));
            if let (Some((ids, outcomes)), Some(log)) = (deliveries.as_mut(), &topics.receiver) {
                // Transitions that arrived during the quiet period are delivered too.
                ids.read_to_end()?;
                let (check, counted) = compare_deliveries(
                    &outcomes.topic,
                    outcomes.records,
                    &ids.counts,
                    &outcomes.counts,
                    &receiver::snapshot(log),
                    topics.max_receipts,
                );
                checks.push(check);
                receipts = Some(counted);
            }
        }
        Ok(Checked {
            topics: checks,
            receipts,
            quiet,
        })
    })
    .await?
}

/// Whether every id `allowed` requires has arrived.
fn required_present(allowed: &HashMap<String, (u64, u64)>, counts: &HashMap<String, u64>) -> bool {
    allowed
        .iter()
        .all(|(id, (low, _))| counts.get(id).copied().unwrap_or(0) >= *low)
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
        let check = compare("t", 0, &HashMap::new(), &inbound_allowed(&e));
        assert_eq!(check.missing, 1);
        assert!(!check.passed());
    }

    #[test]
    fn a_resent_delivery_needs_two_inbound_records_but_one_event() {
        let e = HashMap::from([("a".to_string(), expected(2, 0, 0))]);
        let one = HashMap::from([("a".to_string(), 1)]);
        let two = HashMap::from([("a".to_string(), 2)]);
        assert!(!compare("t", 1, &one, &inbound_allowed(&e)).passed());
        assert!(compare("t", 2, &two, &inbound_allowed(&e)).passed());
        assert!(compare("t", 1, &one, &events_allowed(&e)).passed());
        assert_eq!(compare("t", 2, &two, &events_allowed(&e)).duplicated, 1);
    }

    #[test]
    fn a_forged_delivery_in_the_topic_fails() {
        let e = HashMap::from([("f".to_string(), expected(0, 0, 1))]);
        let seen = HashMap::from([("f".to_string(), 1)]);
        assert_eq!(compare("t", 1, &seen, &inbound_allowed(&e)).unexpected, 1);
    }

    #[test]
    fn an_uncertain_attempt_may_or_may_not_be_recorded() {
        let e = HashMap::from([("u".to_string(), expected(0, 1, 0))]);
        let seen = HashMap::from([("u".to_string(), 1)]);
        assert!(compare("t", 0, &HashMap::new(), &inbound_allowed(&e)).passed());
        assert!(compare("t", 1, &seen, &inbound_allowed(&e)).passed());
    }

    fn outcome(journeys: &[&str], abandonments: &[&str], uncertain: &[&str]) -> Outcome {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Outcome {
            expected: HashMap::new(),
            journeys: strings(journeys),
            abandonments: strings(abandonments),
            uncertain_transitions: strings(uncertain),
            tally: Default::default(),
            statuses: Default::default(),
            latency: hdrhistogram::Histogram::new(3).unwrap(),
            phases: Vec::new(),
            timeline: Vec::new(),
        }
    }

    #[test]
    fn every_abandonment_the_run_made_due_is_required() {
        let allowed = transitions_allowed(&outcome(&["j"], &["a1", "a2"], &[]));
        let completions_only = HashMap::from([("order_completed:j".to_string(), 1)]);
        let check = compare("t", 1, &completions_only, &allowed);
        assert_eq!((check.expected, check.missing), (3, 2), "{check:?}");
        let all = HashMap::from([
            ("order_completed:j".to_string(), 1),
            ("abandoned_candidate:a1".to_string(), 1),
            ("abandoned_candidate:a2".to_string(), 1),
        ]);
        assert!(compare("t", 3, &all, &allowed).passed());
    }

    #[test]
    fn a_transition_the_run_did_not_make_due_fails() {
        let allowed = transitions_allowed(&outcome(&["j"], &[], &[]));
        let seen = HashMap::from([
            ("order_completed:j".to_string(), 1),
            ("abandoned_candidate:j".to_string(), 1),
            ("abandoned_candidate:stranger".to_string(), 1),
        ]);
        assert_eq!(compare("t", 3, &seen, &allowed).unexpected, 2);
    }

    #[test]
    fn a_cart_moved_twice_the_same_way_fails() {
        let allowed = transitions_allowed(&outcome(&[], &["a"], &[]));
        let seen = HashMap::from([("abandoned_candidate:a".to_string(), 2)]);
        assert_eq!(compare("t", 2, &seen, &allowed).duplicated, 1);
    }

    #[test]
    fn a_transition_whose_cause_is_uncertain_may_happen_once() {
        let allowed = transitions_allowed(&outcome(&[], &[], &["order_completed:u"]));
        assert!(compare("t", 0, &HashMap::new(), &allowed).passed());
        let once = HashMap::from([("order_completed:u".to_string(), 1)]);
        assert!(compare("t", 1, &once, &allowed).passed());
        let twice = HashMap::from([("order_completed:u".to_string(), 2)]);
        assert_eq!(compare("t", 2, &twice, &allowed).duplicated, 1);
    }

    fn received(valid: u32, invalid: u32) -> Received {
        Received { valid, invalid }
    }

    #[test]
    fn each_transition_is_delivered_once_and_received_once_signed() {
        let transitions = HashMap::from([("t1".to_string(), 1), ("t2".to_string(), 1)]);
        let outcomes = HashMap::from([
            ("failed:t1".to_string(), 1),
            ("delivered:t1".to_string(), 1),
            ("delivered:t2".to_string(), 1),
        ]);
        let once = HashMap::from([
            ("t1".to_string(), received(1, 0)),
            ("t2".to_string(), received(1, 0)),
        ]);
        let (check, receipts) = compare_deliveries("d", 3, &transitions, &outcomes, &once, 1);
        assert!(check.passed(), "{check:?}");
        assert_eq!(receipts.per_transition, BTreeMap::from([(1, 2)]));
        assert_eq!(receipts.failed_attempts, 1);

        let twice = HashMap::from([
            ("delivered:t1".to_string(), 2),
            ("dead_lettered:t2".to_string(), 1),
        ]);
        let (check, _) = compare_deliveries("d", 3, &transitions, &twice, &once, 1);
        assert_eq!(
            (check.duplicated, check.missing, check.unexpected),
            (1, 1, 1)
        );

        let superseded = HashMap::from([
            ("delivered:t1".to_string(), 1),
            ("superseded:t2".to_string(), 1),
        ]);
        let (check, _) = compare_deliveries("d", 2, &transitions, &superseded, &once, 1);
        assert_eq!((check.missing, check.unexpected), (1, 1), "{check:?}");

        let forged = HashMap::from([
            ("t1".to_string(), received(0, 1)),
            ("t2".to_string(), received(1, 0)),
        ]);
        let (check, receipts) = compare_deliveries("d", 2, &transitions, &outcomes, &forged, 1);
        assert_eq!((check.missing, check.unexpected), (1, 1));
        assert_eq!(receipts.invalid, 1);
    }

    #[test]
    fn receipts_past_the_stated_bound_fail() {
        let transitions = HashMap::from([("t1".to_string(), 1)]);
        let outcomes = HashMap::from([("delivered:t1".to_string(), 1)]);
        let twice = HashMap::from([("t1".to_string(), received(2, 0))]);
        let (check, receipts) = compare_deliveries("d", 1, &transitions, &outcomes, &twice, 1);
        assert_eq!(check.duplicated, 1, "{check:?}");
        assert_eq!(receipts.per_transition, BTreeMap::from([(2, 1)]));
        let (check, _) = compare_deliveries("d", 1, &transitions, &outcomes, &twice, 2);
        assert!(check.passed(), "{check:?}");
    }

    #[test]
    fn a_receipt_for_a_transition_not_in_the_topic_fails() {
        let transitions = HashMap::from([("t1".to_string(), 1)]);
        let outcomes = HashMap::from([("delivered:t1".to_string(), 1)]);
        let stray = HashMap::from([
            ("t1".to_string(), received(1, 0)),
            ("t9".to_string(), received(1, 0)),
        ]);
        let (check, receipts) = compare_deliveries("d", 1, &transitions, &outcomes, &stray, 1);
        assert_eq!((check.unexpected, receipts.unknown), (1, 1));
    }

    #[test]
    fn a_record_the_run_never_sent_fails() {
        let seen = HashMap::from([("stranger".to_string(), 1)]);
        assert_eq!(compare("t", 1, &seen, &HashMap::new()).unexpected, 1);
    }
}
