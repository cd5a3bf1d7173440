//! Everything that talks to Kafka: the topic names of the public contract (SPEC §5), the
//! idempotent producer the ingress hands raw bodies to, and topic creation at start-up.

pub mod admin;
pub mod commands;
mod connection;
pub mod credentials;
pub mod fencing;
pub mod group;
pub mod history;
pub mod inbound;
pub mod outbox;
mod producer;
pub mod registry;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::error::KafkaError;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use connection::{Connection, Refusal};
pub use producer::{max_message_bytes, partition_of, Producer};

use crate::problems::Problems;

/// Header of processor output records: the record's deterministic id (an event's
/// `tenant/provider/delivery id`, [`crate::topics::event::Record::id`]; a transition's id), so
/// consumers can de-duplicate without parsing.
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
    /// librdkafka properties for every client the daemon makes — the producer, the consumers,
    /// topic creation: the connection's security (TLS, SASL). Secrets may come from the
    /// environment or a file; [`Config::resolve_client`] reads them at load.
    pub client: BTreeMap<String, Property>,
    /// librdkafka producer properties passed through unchanged.
    pub producer: BTreeMap<String, String>,
}

/// A `[kafka.client]` value: the text itself, or where to read it — `{ env = "VARIABLE" }`, or
/// `{ file = "path" }` relative to the configuration file's folder (a trailing newline is
/// dropped).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Property {
    Text(String),
    Env { env: String },
    File { file: PathBuf },
}

impl Property {
    /// Reads a value kept in the environment or in a file (relative to `base`) and keeps its
    /// text in place; says why it cannot.
    pub fn resolve(&mut self, env: &HashMap<String, String>, base: &Path) -> Result<(), String> {
        let text = match self {
            Property::Text(_) => return Ok(()),
            Property::Env { env: name } => env
                .get(name.as_str())
                .cloned()
                .ok_or_else(|| format!("environment variable {name} is not set"))?,
            Property::File { file } => {
                let path = base.join(&*file);
                std::fs::read_to_string(&path)
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            }
        };
        *self = Property::Text(text);
        Ok(())
    }

    /// The text, once [`Property::resolve`]d.
    pub fn text(&self) -> Option<&str> {
        match self {
            Property::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// Masked: a client property may be a password.
impl std::fmt::Debug for Property {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Property::Text(_) => f.write_str("\"…\""),
            Property::Env { env } => write!(f, "{{ env = {env:?} }}"),
            Property::File { file } => write!(f, "{{ file = {file:?} }}"),
        }
    }
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
            client: BTreeMap::new(),
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

/// Client properties that belong to one role or one client, not to the connection.
const FORCED_CLIENT_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.idempotence",
    "acks",
    "transactional.id",
];

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
        for key in self.client.keys() {
            if FORCED_CLIENT_PROPERTIES.contains(&key.as_str()) {
                problems.push(format!(
                    "kafka.client.\"{key}\": not a connection property; set by the daemon per client"
                ));
            }
        }
    }

    /// Reads the `[kafka.client]` values kept in the environment or in files, in place, so
    /// that every client gets the same text; reports what cannot be read.
    pub fn resolve_client(
        &mut self,
        env: &HashMap<String, String>,
        base: &Path,
        problems: &mut Problems,
    ) {
        for (key, value) in &mut self.client {
            if let Err(why) = value.resolve(env, base) {
                problems.push(format!("kafka.client.\"{key}\": {why}"));
            }
        }
    }

    /// A client configuration with the brokers and the `[kafka.client]` properties: the
    /// start of every client the daemon makes.
    pub fn client_config(&self) -> rdkafka::config::ClientConfig {
        let mut client = rdkafka::config::ClientConfig::new();
        for (key, value) in &self.client {
            if let Property::Text(text) = value {
                client.set(key, text);
            }
        }
        client.set("bootstrap.servers", &self.brokers);
        client
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
            credentials: name("credentials"),
            tenants: name("tenants"),
            commands: name("delivery-commands"),
            status: name("integration-status"),
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
    /// Secrets carried in payloads, sealed; compacted, key (tenant, provider, installation,
    /// field) (`schemas/credentials.v1.json`).
    pub credentials: String,
    /// The tenant registry, sealed; compacted, one partition, key the record's kind and ids
    /// (`schemas/tenants.v1.json`). Not among [`Topics::all`]: `cartstream tenants apply`
    /// creates and writes it ([`registry`]); a daemon reading its tenants from it creates it
    /// too.
    pub tenants: String,
    /// Operator actions on the delivery workers, their claims and answers; one partition, kept
    /// an hour (`schemas/delivery_command.v1.json`). Not among [`Topics::all`]: created by
    /// [`commands::ensure_topic`].
    pub commands: String,
    /// What each instance's ingress saw of each integration; compacted, one partition
    /// (`schemas/integration_status.v1.json`). Not among [`Topics::all`]: created by
    /// [`status::ensure_topic`] with the tenants topic.
    pub status: String,
}

impl Topics {
    pub fn all(&self) -> Vec<&str> {
        vec![
            self.inbound.as_str(),
            self.events.as_str(),
            self.transitions.as_str(),
            self.deliveries.as_str(),
            self.dead_letters.as_str(),
            self.credentials.as_str(),
        ]
    }

    /// The topics that keep the latest record per key rather than a time window.
    pub fn compacted(&self) -> Vec<&str> {
        vec![self.credentials.as_str()]
    }
}

/// A consumer's client configuration: the connection's ([`Config::client_config`]), then
/// `defaults`, then the operator's pass-through `properties`, then `forced` — the settings a role
/// relies on, which the pass-through cannot change (its validation refuses them too).
pub fn consumer_config(
    kafka: &Config,
    defaults: &[(&str, &str)],
    properties: &BTreeMap<String, String>,
    forced: &[(&str, &str)],
) -> rdkafka::config::ClientConfig {
    let mut client = kafka.client_config();
    for (key, value) in defaults {
        client.set(*key, *value);
    }
    for (key, value) in properties {
        client.set(key, value);
    }
    for (key, value) in forced {
        client.set(*key, *value);
    }
    client.set("bootstrap.servers", &kafka.brokers);
    client
}

/// The partitions `topic` has, as the cluster's metadata says; none when it does not exist.
pub fn topic_partitions<
    C: rdkafka::consumer::Consumer<X>,
    X: rdkafka::consumer::ConsumerContext,
>(
    consumer: &C,
    topic: &str,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// How long the group waits for a member that stopped heartbeating before it gives that member's
/// partitions to the others: the stall when a machine is lost for good. A member that restarts
/// under its static id (see [`static_instance_id`]) takes its partitions back at once instead.
pub const SESSION_TIMEOUT_MS: &str = "10000";

/// The static group membership id (`group.instance.id`) of a role that keeps state of its own: the
/// host name, the role, and a digest of its state folder and the topic it consumes. The same
/// process restarted on the same host with the same folder — a crash, a redeploy of a StatefulSet
/// pod — rejoins as the same member and gets its partitions back without a rebalance and without
/// waiting for its old session to time out, while two members on one host differ by their
/// folders (RocksDB would not let them share one). A member that comes back consuming another
/// topic (a new `kafka.topic_prefix`) is a new member: the broker hands a returning static member
/// its old assignment, the old topic's partitions.
pub fn static_instance_id(role: &str, state_dir: &Path, topic: &str) -> String {
    use sha2::Digest;
    let folder = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let digest = sha2::Sha256::new()
        .chain_update(folder.as_os_str().as_encoded_bytes())
        .chain_update([0])
        .chain_update(topic.as_bytes())
        .finalize();
    let host = gethostname::gethostname();
    // Group instance ids are at most 249 characters; keep the host name to a readable part.
    let host: String = host.to_string_lossy().chars().take(200).collect();
    format!("{host}-{role}-{}", hex::encode(&digest[..4]))
}

/// This process's name in the records it writes about itself (a delivery worker's claims and
/// answers, an ingress's views of its integrations): the host name and a random part, new at
/// each start, so that two processes on one host differ.
pub fn process_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Closes a group consumer by dropping it — its revocation callback, its last commits, leaving
/// the group — on a thread of its own, and waits for that until `deadline` at most. Whether it
/// closed in time.
///
/// Closing waits for the broker however long that takes; when it hangs, the thread is left to
/// finish on its own (it does not keep the process alive) and the caller goes on stopping. The
/// consumers' progress that counts is in their own stores, not in the group.
///
/// No partition list the consumer returned (its `assignment()`, say) may still be held
/// elsewhere: such a list keeps the consumer's partitions alive, and librdkafka does not finish
/// destroying a consumer while any is, so the close would wait for the holder until the
/// deadline.
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
    /// Every broker connection is down: the record was not handed to the producer.
    #[error("every Kafka broker is unreachable")]
    Unreachable,
    /// The record is larger than the producer or the topic accepts (`message.max.bytes`,
    /// `max.message.bytes`): retrying cannot help.
    #[error("the record is larger than Kafka accepts (the topic's max.message.bytes)")]
    TooLarge,
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
    /// The cluster refuses this client: its credentials or its TLS settings.
    #[error("{0}")]
    Refused(Refusal),
}

impl Error {
    /// Whether trying again later may succeed (the broker was slow or away), as opposed to a
    /// configuration problem.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Error::Client(_) | Error::CreateTopic { .. } | Error::Refused(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::static_instance_id;

    #[test]
    fn a_restart_with_the_same_folder_keeps_its_static_id() {
        let dir = Path::new("/var/lib/cartstream/processor");
        assert_eq!(
            static_instance_id("processor", dir, "cartstream.inbound.v1"),
            static_instance_id("processor", dir, "cartstream.inbound.v1")
        );
    }

    #[test]
    fn two_members_on_one_host_differ_by_folder_and_role() {
        let a = static_instance_id("processor", Path::new("/data/a"), "t");
        let b = static_instance_id("processor", Path::new("/data/b"), "t");
        let c = static_instance_id("delivery", Path::new("/data/a"), "t");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(a.len() <= 249, "{a}");
        assert!(a.contains("-processor-"), "{a}");
    }

    #[test]
    fn a_member_consuming_another_topic_is_another_member() {
        let dir = Path::new("/var/lib/cartstream/processor");
        assert_ne!(
            static_instance_id("processor", dir, "calib.inbound.v1"),
            static_instance_id("processor", dir, "soak.inbound.v1")
        );
    }
}
