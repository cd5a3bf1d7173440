//! Redrive (SPEC §6): dead letters read back from `<prefix>.deliveries.dlq.v1` and put on the
//! worker's schedule again, with a fresh attempt budget.
//!
//! Which dead letters: by default those no redrive has read yet. That position is kept as the
//! committed offsets of the consumer group `<delivery.group_id>.redrive`, which every worker
//! shares, so asking a second worker does not send a dead letter twice, and a worker whose
//! volume was lost can still redrive what it dead-lettered. `"from": "beginning"` reads the
//! whole retained topic, and filters narrow by tenant, endpoint, reason and time; such a
//! redrive leaves the shared position where it is. Each worker also marks what it redrove (the
//! store's `redriven` family), so the same worker never schedules one dead letter twice.
//!
//! A redrive reads up to the end of the topic as it was when it began, at most `limit` dead
//! letters and [`READ_TIME`]; the report says whether it got to the end.
//!
//! What it schedules is signed with the endpoint's secret and sent, so it schedules only dead
//! letters a delivery worker of this deployment wrote: those whose tag one of the endpoint's
//! secrets verifies ([`dead_letter::Record::verify`]). The others — written by whoever else can
//! write to the topic, altered since, written before tags, or of an endpoint no longer
//! configured — are counted (`unverified`) and logged, never sent.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;

use tokio::time::Instant;

use super::store::{Adopted, DeadLetter, Job};
use crate::clock::parse_rfc3339;
use crate::kafka;
use crate::tenants::{Live, Registry};
use crate::topics::dead_letter::{self, Reason};

/// The longest a redrive reads the topic before it answers with what it has.
pub const READ_TIME: Duration = Duration::from_secs(20);
/// Dead letters one redrive schedules unless the request says otherwise.
pub const DEFAULT_LIMIT: usize = 10_000;
/// The most one redrive may schedule.
pub const MAX_LIMIT: usize = 100_000;
/// How long a metadata, watermark, offset or commit request may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// What to redrive: the body of `POST /admin/dead-letters/redrive`, and of a redrive asked
/// through the commands topic; every field is optional.
pub use crate::topics::command::{Redrive as Request, Start};

/// A [`Request`] checked: times parsed, the limit settled.
struct Selection {
    request: Request,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    limit: usize,
}

/// Checks `request` (its times, their order, its reason, its limit) before it is asked of a
/// worker.
pub fn check(request: &Request) -> Result<(), String> {
    request.clone().select().map(|_| ())
}

impl Request {
    fn select(self) -> Result<Selection, String> {
        let time = |field: &str, value: &Option<String>| -> Result<Option<i64>, String> {
            value
                .as_deref()
                .map(|text| {
                    parse_rfc3339(text)
                        .map_err(|e| format!("{field} {text:?} is not an RFC 3339 time: {e}"))
                })
                .transpose()
        };
        let since_ms = time("since", &self.since)?;
        let until_ms = time("until", &self.until)?;
        if let Some(reason) = &self.reason {
            if Reason::from_wire(reason).is_none() {
                let words = Reason::ALL.map(Reason::as_str);
                return Err(format!("reason {reason:?} is not one of {words:?}"));
            }
        }
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(format!("limit must be between 1 and {MAX_LIMIT}"));
        }
        Ok(Selection {
            request: self,
            since_ms,
            until_ms,
            limit,
        })
    }
}

impl Selection {
    /// Whether this redrive takes every unredriven dead letter, so it may move the shared
    /// position past what it read.
    fn saves_position(&self) -> bool {
        let r = &self.request;
        r.from == Start::Unredriven
            && r.tenant_id.is_none()
            && r.endpoint_id.is_none()
            && r.reason.is_none()
            && self.since_ms.is_none()
            && self.until_ms.is_none()
    }

    /// Whether the dead letter `letter`, given up for `reason`, is one the request selects.
    fn admits(&self, letter: &DeadLetter, reason: &Reason) -> bool {
        let (r, job, dead_ms) = (&self.request, &letter.job, letter.dead_ms);
        r.tenant_id.as_ref().is_none_or(|t| *t == job.tenant)
            && r.endpoint_id.as_ref().is_none_or(|e| *e == job.endpoint)
            && r.reason.as_deref().is_none_or(|r| *reason == r)
            && self.since_ms.is_none_or(|since| dead_ms >= since)
            && self.until_ms.is_none_or(|until| dead_ms < until)
    }
}

/// What a redrive did: the answer to the operator.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// Dead letters scheduled again, due now.
    pub redriven: usize,
    /// Dead letters whose delivery is pending already.
    pub already_pending: usize,
    /// Dead letters this worker redrove before.
    pub already_redriven: usize,
    /// Records read from the topic.
    pub read: usize,
    /// Records the filters left out.
    pub filtered_out: usize,
    /// Records that are not dead letters this version can read (logged).
    pub unreadable: usize,
    /// Dead letters whose tag does not show that a worker of this deployment wrote them as
    /// they are (logged, never sent).
    pub unverified: usize,
    /// Whether the redrive read to the end of the topic (as it was when it began); when
    /// false, the limit or the time ran out: ask again for the rest.
    pub complete: bool,
    /// Whether the shared position moved past what was read.
    pub position_saved: bool,
}

/// Why a redrive did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Request(String),
    #[error("reading the dead-letter topic {topic} failed")]
    Kafka {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("the dead-letter topic {0} does not exist")]
    NoTopic(String),
}

/// Where dead letters are read from.
#[derive(Debug, Clone)]
pub(super) struct Source {
    /// The brokers and the connection's settings.
    pub kafka: kafka::Config,
    pub topic: String,
    /// The consumer group whose committed offsets are the shared position.
    pub group: String,
    /// librdkafka consumer properties passed through (`delivery.consumer`).
    pub consumer: BTreeMap<String, String>,
    /// The endpoints, whose secrets verify the dead letters' tags.
    pub registry: Live,
}

/// What was read, and where to move the shared position once it is scheduled.
pub(super) struct Reading {
    consumer: BaseConsumer,
    letters: Vec<DeadLetter>,
    positions: BTreeMap<i32, i64>,
    saves_position: bool,
    report: Report,
}

impl Source {
    /// Reads the dead letters `request` selects (blocking: run it off the runtime).
    pub fn read(&self, request: Request) -> Result<Reading, Error> {
        let selection = request.select().map_err(Error::Request)?;
        let consumer = self.consumer()?;
        let partitions = self.partitions(&consumer)?;
        let ends = self.assign(&consumer, &partitions, selection.request.from)?;
        let (letters, positions, report) = self.collect(&consumer, ends, &selection);
        Ok(Reading {
            consumer,
            letters,
            positions,
            saves_position: selection.saves_position(),
            report,
        })
    }

    fn kafka_error(&self, source: KafkaError) -> Error {
        Error::Kafka {
            topic: self.topic.clone(),
            source,
        }
    }

    /// A consumer in the redrive group that commits only what a redrive adopted.
    fn consumer(&self) -> Result<BaseConsumer, Error> {
        kafka::consumer_config(
            &self.kafka,
            &[("client.id", "cartstream-redrive")],
            &self.consumer,
            &[
                ("group.id", &self.group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
            ],
        )
        .create()
        .map_err(|e| self.kafka_error(e))
    }

    /// The partitions of the dead-letter topic; none is an error.
    fn partitions(&self, consumer: &BaseConsumer) -> Result<Vec<i32>, Error> {
        let partitions = kafka::topic_partitions(consumer, &self.topic, KAFKA_TIMEOUT)
            .map_err(|e| self.kafka_error(e))?;
        if partitions.is_empty() {
            return Err(Error::NoTopic(self.topic.clone()));
        }
        Ok(partitions)
    }

    /// Assigns the consumer every partition with something to read from `from` on; returns
    /// where each of those ends. The end is fixed now, so dead letters written while the
    /// redrive runs wait for the next one.
    fn assign(
        &self,
        consumer: &BaseConsumer,
        partitions: &[i32],
        from: Start,
    ) -> Result<BTreeMap<i32, i64>, Error> {
        let mut listed = TopicPartitionList::new();
        for partition in partitions {
            listed.add_partition(&self.topic, *partition);
        }
        let committed = match from {
            Start::Unredriven => consumer
                .committed_offsets(listed, KAFKA_TIMEOUT)
                .map_err(|e| self.kafka_error(e))?,
            Start::Beginning => listed,
        };
        let mut ends = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&self.topic, *partition, KAFKA_TIMEOUT)
                .map_err(|e| self.kafka_error(e))?;
            let start = match committed
                .find_partition(&self.topic, *partition)
                .map(|p| p.offset())
            {
                Some(Offset::Offset(committed)) => committed.max(low),
                _ => low,
            };
            if start < high {
                ends.insert(*partition, high);
                assignment
                    .add_partition_offset(&self.topic, *partition, Offset::Offset(start))
                    .map_err(|e| self.kafka_error(e))?;
            }
        }
        consumer
            .assign(&assignment)
            .map_err(|e| self.kafka_error(e))?;
        Ok(ends)
    }

    /// Reads up to each partition's end, the selection's limit or [`READ_TIME`]: the letters
    /// the selection admits, the position after the last record read in each partition, and
    /// the report.
    fn collect(
        &self,
        consumer: &BaseConsumer,
        mut ends: BTreeMap<i32, i64>,
        selection: &Selection,
    ) -> (Vec<DeadLetter>, BTreeMap<i32, i64>, Report) {
        let mut report = Report::default();
        let mut letters = Vec::new();
        let mut positions = BTreeMap::new();
        let deadline = Instant::now() + READ_TIME;
        while !ends.is_empty() && letters.len() < selection.limit && Instant::now() < deadline {
            let message = match consumer.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, topic = %self.topic, "reading dead letters");
                    continue;
                }
                Some(Ok(message)) => message,
            };
            let (partition, offset) = (message.partition(), message.offset());
            let Some(&end) = ends.get(&partition) else {
                continue;
            };
            if offset >= end {
                ends.remove(&partition);
                continue;
            }
            positions.insert(partition, offset + 1);
            if offset + 1 >= end {
                ends.remove(&partition);
            }
            report.read += 1;
            match letter(
                message.payload().unwrap_or_default(),
                &self.registry.current(),
            ) {
                Ok((reason, letter)) => {
                    if selection.admits(&letter, &reason) {
                        letters.push(letter);
                    } else {
                        report.filtered_out += 1;
                    }
                }
                Err(LeftOut::Unreadable(e)) => {
                    report.unreadable += 1;
                    tracing::warn!(
                        error = %e, topic = %self.topic, partition, offset,
                        "a dead-letter record cannot be read; left out of the redrive"
                    );
                }
                Err(LeftOut::Unverified(record)) => {
                    report.unverified += 1;
                    tracing::warn!(
                        topic = %self.topic, partition, offset,
                        tenant = %record.tenant_id, endpoint = %record.endpoint_id,
                        transition = %record.transition_id,
                        "a dead letter's tag does not show that this deployment wrote it (written by someone else or altered since, written before tags, or its endpoint's secrets changed); not sent"
                    );
                }
            }
        }
        report.complete = ends.is_empty();
        (letters, positions, report)
    }
}

impl Reading {
    /// The dead letters to schedule, and the rest of the reading to finish with.
    pub fn take_letters(mut self) -> (Vec<DeadLetter>, Self) {
        (std::mem::take(&mut self.letters), self)
    }

    /// Once the letters are scheduled: the report, with the shared position moved past what
    /// was read when the request took every unredriven dead letter (blocking).
    pub fn finish(mut self, adopted: Adopted, topic: &str) -> Result<Report, Error> {
        self.report.redriven = adopted.redriven;
        self.report.already_pending = adopted.already_pending;
        self.report.already_redriven = adopted.already_redriven;
        if self.saves_position && !self.positions.is_empty() {
            // Test builds: with CARTSTREAM_FAULT_REDRIVE_CRASH=1 the process dies here, its
            // letters scheduled and the position not saved, so a test can show that nothing
            // is lost and that the worker does not schedule them twice.
            #[cfg(feature = "fault-injection")]
            if std::env::var_os("CARTSTREAM_FAULT_REDRIVE_CRASH").is_some_and(|v| v == "1") {
                std::process::abort();
            }
            let mut offsets = TopicPartitionList::new();
            for (partition, next) in &self.positions {
                offsets
                    .add_partition_offset(topic, *partition, Offset::Offset(*next))
                    .map_err(|source| Error::Kafka {
                        topic: topic.to_string(),
                        source,
                    })?;
            }
            self.consumer
                .commit(&offsets, CommitMode::Sync)
                .map_err(|source| Error::Kafka {
                    topic: topic.to_string(),
                    source,
                })?;
            self.report.position_saved = true;
        }
        Ok(self.report)
    }
}

/// Why a record read from the dead-letter topic is left out of a redrive.
enum LeftOut {
    /// Not a dead letter this version can read.
    Unreadable(String),
    /// Its tag does not show that a worker of this deployment wrote it as it is.
    Unverified(Box<dead_letter::Record>),
}

/// A dead-letter record as a job to schedule again, with the reason it was given up — if one of
/// its endpoint's secrets verifies its tag.
fn letter(payload: &[u8], registry: &Registry) -> Result<(Reason, DeadLetter), LeftOut> {
    let record =
        dead_letter::Record::decode(payload).map_err(|e| LeftOut::Unreadable(e.to_string()))?;
    let verified = registry
        .endpoint(&record.tenant_id, &record.endpoint_id)
        .is_some_and(|endpoint| {
            record.verify(
                endpoint
                    .secrets
                    .iter()
                    .map(|s| super::records::tag_key(s.plain())),
            )
        });
    if !verified {
        return Err(LeftOut::Unverified(Box::new(record)));
    }
    let dead_letter::Record {
        transition_id,
        tenant_id,
        endpoint_id,
        event,
        cart,
        reason,
        created_at,
        dead_lettered_at,
        body,
        ..
    } = record;
    let millis = |field: &str, text: &str| {
        parse_rfc3339(text).map_err(|e| LeftOut::Unreadable(format!("{field} {text:?}: {e}")))
    };
    let dead_ms = millis("dead_lettered_at", &dead_lettered_at)?;
    let created_ms = millis("created_at", &created_at)?;
    let job = Job {
        transition_id,
        tenant: tenant_id,
        endpoint: endpoint_id,
        event,
        cart,
        body: body.get().to_string(),
        occurred_ms: dead_ms,
        created_ms,
        attempts: 0,
        next_ms: dead_ms,
        last_status: None,
        last_error: None,
        superseded: false,
    };
    Ok((reason, DeadLetter { job, dead_ms }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINTS: &str = r#"
[[tenant]]
id = "acme"
  [[tenant.endpoint]]
  id = "crm"
  url = "https://hooks.acme.example/cartstream"
  secret = "acme-crm-signing-secret"
  previous_secret = "acme-crm-old-signing-secret"

[[tenant]]
id = "globex"
  [[tenant.endpoint]]
  id = "crm"
  url = "https://hooks.globex.example/cartstream"
  secret = "globex-crm-signing-secret"
"#;

    const PAYLOAD: &str = r#"{"schema":"cartstream.delivery_dlq.v1","transition_id":"ab","tenant_id":"acme",
            "endpoint_id":"crm","event":"abandoned_candidate","cart":"c1","reason":"exhausted",
            "attempts":7,"last_status_code":500,"last_error":null,
            "created_at":"2026-11-01T10:00:00.000Z","dead_lettered_at":"2026-11-02T10:00:00.250Z",
            "body":{"data":{"cart":"c1"},"event":"abandoned_candidate","id":"ab"}}"#;

    fn registry() -> Registry {
        Registry::from_toml(
            ENDPOINTS,
            std::path::Path::new("."),
            &std::collections::HashMap::new(),
        )
        .unwrap()
    }

    /// `payload` as the worker writes it: tagged with `secret`.
    fn tagged(payload: &str, secret: &str) -> Vec<u8> {
        let mut record = dead_letter::Record::decode(payload.as_bytes()).unwrap();
        record.seal(&crate::delivery::records::tag_key(
            &crate::providers::Key::new(secret.as_bytes()),
        ));
        record.encode().into_bytes()
    }

    fn request(json: &str) -> Result<Selection, String> {
        serde_json::from_str::<Request>(json)
            .map_err(|e| e.to_string())?
            .select()
    }

    #[test]
    fn an_empty_request_takes_every_unredriven_dead_letter_and_saves_the_position() {
        let selection = request("{}").unwrap();
        assert_eq!(selection.limit, DEFAULT_LIMIT);
        assert!(selection.saves_position());
    }

    #[test]
    fn filters_and_the_beginning_leave_the_shared_position_alone() {
        for json in [
            r#"{"from": "beginning"}"#,
            r#"{"tenant_id": "acme"}"#,
            r#"{"endpoint_id": "crm"}"#,
            r#"{"reason": "gone"}"#,
            r#"{"since": "2026-11-01T00:00:00Z"}"#,
            r#"{"until": "2026-11-01T00:00:00Z"}"#,
        ] {
            assert!(!request(json).unwrap().saves_position(), "{json}");
        }
        // A limit alone still takes the oldest unredriven ones in order.
        assert!(request(r#"{"limit": 5}"#).unwrap().saves_position());
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let refused = |json: &str| match request(json) {
            Err(reason) => reason,
            Ok(_) => panic!("{json} was accepted"),
        };
        assert!(refused(r#"{"since": "yesterday"}"#).contains("since"));
        assert!(refused(r#"{"reason": "tired"}"#).contains("tired"));
        assert!(refused(r#"{"limit": 0}"#).contains("limit"));
        assert!(refused(r#"{"limit": 100001}"#).contains("limit"));
        assert!(refused(r#"{"from": "end"}"#).contains("unknown variant"));
        assert!(refused(r#"{"tenant": "acme"}"#).contains("unknown field"));
        // A range that ends before it begins selects nothing; it is not an error.
        let empty =
            request(r#"{"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}"#)
                .unwrap();
        let letter = DeadLetter {
            job: crate::delivery::store::Job {
                transition_id: "t".into(),
                tenant: "acme".into(),
                endpoint: "crm".into(),
                event: "abandoned_candidate".into(),
                cart: "c".into(),
                body: "{}".into(),
                occurred_ms: 0,
                created_ms: 0,
                attempts: 1,
                next_ms: 0,
                last_status: None,
                last_error: None,
                superseded: false,
            },
            dead_ms: parse_rfc3339("2026-11-01T12:00:00Z").unwrap(),
        };
        assert!(!empty.admits(&letter, &Reason::Exhausted));
    }

    #[test]
    fn a_dead_letter_becomes_the_same_delivery_with_the_same_body() {
        let payload = tagged(PAYLOAD, "acme-crm-signing-secret");
        let Ok((reason, letter)) = letter(&payload, &registry()) else {
            panic!("a tagged dead letter is read");
        };
        assert_eq!(reason, "exhausted");
        assert_eq!(letter.dead_ms, 1_793_613_600_250);
        assert_eq!(letter.job.created_ms, 1_793_527_200_000);
        assert_eq!(
            letter.job.key(),
            super::super::store::key("acme", "crm", "ab")
        );
        assert_eq!(
            letter.job.body,
            r#"{"data":{"cart":"c1"},"event":"abandoned_candidate","id":"ab"}"#
        );
        let selection = request(
            r#"{"tenant_id": "acme", "since": "2026-11-02T10:00:00.250Z", "reason": "exhausted"}"#,
        )
        .unwrap();
        assert!(selection.admits(&letter, &reason));
        let later = request(r#"{"since": "2026-11-02T10:00:01Z"}"#).unwrap();
        assert!(!later.admits(&letter, &reason));
        let other = request(r#"{"endpoint_id": "erp"}"#).unwrap();
        assert!(!other.admits(&letter, &reason));
    }

    #[test]
    fn only_a_dead_letter_tagged_with_its_endpoints_secret_is_scheduled() {
        let registry = registry();
        let unverified =
            |payload: &[u8]| matches!(letter(payload, &registry), Err(LeftOut::Unverified(_)));
        // Tagged with the endpoint's current or previous secret, as it is: scheduled.
        for secret in ["acme-crm-signing-secret", "acme-crm-old-signing-secret"] {
            assert!(
                letter(&tagged(PAYLOAD, secret), &registry).is_ok(),
                "{secret}"
            );
        }
        // No tag (written by someone else, or before tags), another endpoint's secret, another
        // tenant named, an altered body, an endpoint not configured: never.
        assert!(unverified(PAYLOAD.as_bytes()));
        assert!(unverified(&tagged(PAYLOAD, "globex-crm-signing-secret")));
        let genuine = String::from_utf8(tagged(PAYLOAD, "acme-crm-signing-secret")).unwrap();
        for (from, to) in [
            (r#""tenant_id":"acme""#, r#""tenant_id":"globex""#),
            (r#""cart":"c1"},"#, r#""cart":"c2"},"#),
            (r#""transition_id":"ab""#, r#""transition_id":"cd""#),
        ] {
            assert!(genuine.contains(from), "{genuine}");
            assert!(unverified(genuine.replacen(from, to, 1).as_bytes()), "{to}");
        }
        let elsewhere = PAYLOAD.replace(r#""endpoint_id":"crm""#, r#""endpoint_id":"erp""#);
        assert!(unverified(&tagged(&elsewhere, "acme-crm-signing-secret")));
        // Unreadable stays unreadable.
        assert!(matches!(
            letter(b"{}", &registry),
            Err(LeftOut::Unreadable(_))
        ));
    }
}
