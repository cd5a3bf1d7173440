//! Everything that talks to Kafka: the topic names of the public contract (SPEC §5), the
//! idempotent producer the ingress hands raw bodies to, and topic creation at start-up.

pub mod admin;
pub mod inbound;
mod producer;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::error::KafkaError;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use producer::Producer;

use crate::config::Problems;

/// Header of processor output records: the record's deterministic id (the delivery id of an
/// event, the transition id of a transition), so consumers can de-duplicate without parsing.
pub const HEADER_ID: &str = "cartstream-id";

/// The `[kafka]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub brokers: String,
    pub topic_prefix: String,
    pub create_topics: bool,
    pub partitions: i32,
    pub replication_factor: i32,
    /// At shutdown, how long the processor and the delivery worker may wait for Kafka (their
    /// last outbox records, progress commits, leaving their groups), and then the producer for
    /// what is still queued once the ingress has drained.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// librdkafka producer properties passed through unchanged.
    pub producer: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            brokers: "127.0.0.1:9092".to_string(),
            topic_prefix: "cartstream".to_string(),
            create_topics: true,
            partitions: 6,
            replication_factor: 1,
            shutdown_timeout: Duration::from_secs(10),
            producer: BTreeMap::from([
                ("linger.ms".to_string(), "5".to_string()),
                ("compression.type".to_string(), "none".to_string()),
            ]),
        }
    }
}

/// Producer properties the daemon sets itself; the pass-through table cannot change them.
pub const FORCED_PRODUCER_PROPERTIES: &[&str] =
    &["bootstrap.servers", "enable.idempotence", "acks"];

impl Config {
    pub fn validate(&self, problems: &mut Problems) {
        if self.brokers.trim().is_empty() {
            problems.push("kafka.brokers: must name at least one broker");
        }
        let prefix_ok = !self.topic_prefix.is_empty()
            && self
                .topic_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !prefix_ok {
            problems.push("kafka.topic_prefix: must be letters, digits, '.', '_' or '-'");
        }
        if self.partitions < 1 {
            problems.push("kafka.partitions: must be at least 1");
        }
        if self.replication_factor < 1 {
            problems.push("kafka.replication_factor: must be at least 1");
        }
        if self.shutdown_timeout.is_zero() {
            problems.push("kafka.shutdown_timeout: must be longer than 0s");
        }
        refuse_forced(
            "kafka.producer",
            &self.producer,
            FORCED_PRODUCER_PROPERTIES,
            "the daemon",
            problems,
        );
    }

    /// The names of the topics this version reads or writes.
    pub fn topics(&self) -> Topics {
        let name = |topic: &str| format!("{}.{topic}.v1", self.topic_prefix);
        Topics {
            inbound: name("inbound"),
            events: name("events"),
            transitions: name("transitions"),
            deliveries: name("deliveries"),
            dead_letters: name("deliveries.dlq"),
        }
    }
}

/// Topic names, with the configured prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Raw verified deliveries: key tenant id, value the body byte for byte.
    pub inbound: String,
    /// Normalized events, one per distinct delivery (`schemas/event.v1.json`).
    pub events: String,
    /// Cart transitions (`schemas/transition.v1.json`).
    pub transitions: String,
    /// One record per delivery attempt or outcome (`schemas/delivery.v1.json`).
    pub deliveries: String,
    /// Deliveries that exhausted their retries, expired or met a 410
    /// (`schemas/delivery_dlq.v1.json`).
    pub dead_letters: String,
}

impl Topics {
    pub fn all(&self) -> Vec<&str> {
        vec![
            self.inbound.as_str(),
            self.events.as_str(),
            self.transitions.as_str(),
            self.deliveries.as_str(),
            self.dead_letters.as_str(),
        ]
    }
}

/// A consumer's client configuration: `defaults` first, then the operator's pass-through
/// `properties`, then `forced` — the settings a role relies on, which the pass-through cannot
/// change (its validation refuses them too).
pub fn consumer_config(
    defaults: &[(&str, &str)],
    properties: &BTreeMap<String, String>,
    forced: &[(&str, &str)],
) -> rdkafka::config::ClientConfig {
    let mut client = rdkafka::config::ClientConfig::new();
    for (key, value) in defaults {
        client.set(*key, *value);
    }
    for (key, value) in properties {
        client.set(key, value);
    }
    for (key, value) in forced {
        client.set(*key, *value);
    }
    client
}

/// Closes a group consumer by dropping it — its revocation callback, its last commits, leaving
/// the group — on a thread of its own, and waits for that until `deadline` at most. Whether it
/// closed in time.
///
/// Closing waits for the broker however long that takes; when it hangs, the thread is left to
/// finish on its own (it does not keep the process alive) and the caller goes on stopping. The
/// consumers' progress that counts is in their own stores, not in the group.
pub async fn close_consumer<T: Send + 'static>(consumer: T, deadline: Instant) -> bool {
    let (closed, done) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-close".to_string())
        .spawn(move || {
            drop(consumer);
            let _ = closed.send(());
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to close the consumer");
        return false;
    }
    let in_time = tokio::time::timeout_at(deadline, done).await.is_ok();
    if !in_time {
        tracing::warn!("the consumer did not close in time; leaving it");
    }
    in_time
}

/// Reports every librdkafka property in the pass-through table `section` that `setter` sets
/// itself (`forced`), and so cannot be overridden there.
pub fn refuse_forced(
    section: &str,
    properties: &BTreeMap<String, String>,
    forced: &[&str],
    setter: &str,
    problems: &mut Problems,
) {
    for key in properties.keys() {
        if forced.contains(&key.as_str()) {
            problems.push(format!(
                "{section}.\"{key}\": set by {setter} and cannot be overridden"
            ));
        }
    }
}

/// Why a record was not acknowledged, or a Kafka operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The producer's local queue is full: the broker is slower than the inflow.
    #[error("the producer queue is full")]
    QueueFull,
    /// The acknowledgement did not arrive within the ack timeout.
    #[error("no acknowledgement from Kafka within the ack timeout")]
    AckTimeout,
    /// The broker refused the record or could not be reached.
    #[error("Kafka did not accept the record")]
    Delivery(#[source] KafkaError),
    /// A client could not be created or an admin operation failed.
    #[error("Kafka client error")]
    Client(#[source] KafkaError),
    /// An admin operation failed for one topic.
    #[error("cannot create topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// An operation did not finish in time.
    #[error("Kafka did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

impl Error {
    /// Whether trying again later may succeed (the broker was slow or away), as opposed to a
    /// configuration problem.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Error::Client(_) | Error::CreateTopic { .. })
    }
}
