//! The tenant registry's topic, `<prefix>.tenants.v1` ([`crate::topics::registry`]): created
//! compacted with one partition, read from its start to the end it has when the read begins
//! (`cartstream tenants apply`, and a daemon at start) and followed after that (a daemon while it
//! runs), and written in order with every record acknowledged. What
//! the records say is the business of [`crate::tenants`]; this module moves their bytes.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::time::Instant;

use super::Config;
use crate::topics::registry::SCHEMA;

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a record may wait for its acknowledgement before the write counts as failed: a
/// command should say the cluster is away within a minute, not librdkafka's five.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The settings the topic is created with, besides its one partition: a registry is small, and
/// its records are read in the order they were written (a tenant before what it owns), which
/// Kafka keeps within a partition only.
pub const TOPIC_SETTINGS: &[(&str, &str)] = &[
    // The latest record of each key is kept, whatever its age; a tombstone removes a key.
    ("cleanup.policy", "compact"),
    // A record stays whole for an hour before a later one of its key may replace it: the
    // changes of the last hour can be read back one by one.
    ("min.compaction.lag.ms", "3600000"),
    // A tombstone stays a week once compaction reaches it: a reader that resumes from its
    // position within a week still sees every deletion (Kafka's default is a day).
    ("delete.retention.ms", "604800000"),
];

/// Why the topic could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] super::Error),
    /// Records of one key may sit in two partitions, and the order between partitions is lost.
    #[error("{topic} has {partitions} partitions: a registry is kept in one, to be read in order")]
    Partitions { topic: String, partitions: usize },
    /// Some records were written and others not: the topic says part of what was asked.
    #[error("{acknowledged} of {total} records were acknowledged")]
    Unacknowledged {
        acknowledged: usize,
        total: usize,
        #[source]
        first: super::Error,
    },
}

/// Creates the topic unless it exists: one partition, the configured replication factor, and
/// [`TOPIC_SETTINGS`]. An existing topic is left as it is.
pub async fn ensure_topic(config: &Config) -> Result<(), Error> {
    let topic = config.topics().tenants;
    super::admin::ensure_single_partition(config, &topic, TOPIC_SETTINGS).await?;
    Ok(())
}

/// Hands every message of the topic, in order, to `each` — its key, and its value or `None`
/// for a tombstone — from the first the topic holds to the last it held when the read began.
/// A topic that does not exist holds none. Fails when it has more than one partition, or when
/// the read takes longer than `read_for`. The number of messages read.
pub fn read(
    config: &Config,
    read_for: Duration,
    each: impl FnMut(&[u8], Option<&[u8]>),
) -> Result<usize, Error> {
    Reader::open(config)?.catch_up(read_for, each)
}

/// A reader of the topic that first catches up with it, then follows what is written after.
pub struct Reader {
    consumer: BaseConsumer,
    topic: String,
}

impl Reader {
    /// A reader with no position yet (`read_committed`, no consumer group offsets).
    pub fn open(config: &Config) -> Result<Reader, Error> {
        let consumer: BaseConsumer = super::consumer_config(
            config,
            &[("client.id", "cartstream-tenants")],
            &Default::default(),
            &[
                ("group.id", "cartstream-tenants-reader"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
            ],
        )
        .create()
        .map_err(super::Error::Client)?;
        Ok(Reader {
            consumer,
            topic: config.topics().tenants,
        })
    }

    /// Reads the topic from its first message to the last it holds now, as [`read`] does, and
    /// stays positioned after it for [`Reader::follow`].
    pub fn catch_up(
        &self,
        read_for: Duration,
        mut each: impl FnMut(&[u8], Option<&[u8]>),
    ) -> Result<usize, Error> {
        let (consumer, topic) = (&self.consumer, &self.topic);
        let deadline = Instant::now() + read_for;
        let Some(end) = assign_from_start(consumer, topic, deadline)? else {
            return Ok(0);
        };
        let mut read = 0;
        loop {
            if read_to(consumer, topic, end) {
                return Ok(read);
            }
            if Instant::now() > deadline {
                return Err(super::Error::Timeout(read_for).into());
            }
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.map_err(super::Error::Client)?;
                each(message.key().unwrap_or_default(), message.payload());
                read += 1;
                if message.offset() + 1 >= end {
                    return Ok(read);
                }
            }
        }
    }

    /// Hands `each` what has been written since the last read, waiting up to `wait` for the
    /// first message and not at all for the others; the number read. A reader of a topic that
    /// did not exist when it caught up reads it from its beginning once it exists.
    pub fn follow(
        &self,
        wait: Duration,
        mut each: impl FnMut(&[u8], Option<&[u8]>),
    ) -> Result<usize, Error> {
        let mut read = 0;
        let mut timeout = wait;
        while let Some(message) = self.consumer.poll(timeout) {
            let message = message.map_err(super::Error::Client)?;
            each(message.key().unwrap_or_default(), message.payload());
            read += 1;
            timeout = Duration::ZERO;
        }
        Ok(read)
    }
}

impl Reader {
    /// The offset of the next message this reader will read, once it knows it.
    pub fn position(&self) -> Option<i64> {
        position(&self.consumer, &self.topic)
    }
}

/// Whether `consumer` has read the topic's partition up to `end` (the last offsets may hold no
/// message for this reader: a transaction's marker).
fn read_to(consumer: &BaseConsumer, topic: &str, end: i64) -> bool {
    position(consumer, topic).is_some_and(|at| at >= end)
}

/// Assigns `consumer` the topic's partition from its first record; where it ends now (its
/// high watermark), or `None` when there is nothing to read yet. A topic created moments ago may
/// not have a leader yet: asked again until `deadline`. A topic this client does not see yet
/// (absent, or created by another client moments ago) is assigned all the same, from its
/// beginning, so that a follower reads it once it appears.
fn assign_from_start(
    consumer: &BaseConsumer,
    topic: &str,
    deadline: Instant,
) -> Result<Option<i64>, Error> {
    let settle = deadline.min(Instant::now() + KAFKA_TIMEOUT);
    let (low, high) = loop {
        match watermarks(consumer, topic) {
            Ok(Some(watermarks)) => break watermarks,
            Ok(None) => {
                let mut assignment = TopicPartitionList::new();
                assignment
                    .add_partition_offset(topic, 0, Offset::Beginning)
                    .map_err(super::Error::Client)?;
                consumer.assign(&assignment).map_err(super::Error::Client)?;
                return Ok(None);
            }
            Err(Error::Kafka(_)) if Instant::now() < settle => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    };
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(low))
        .map_err(super::Error::Client)?;
    consumer.assign(&assignment).map_err(super::Error::Client)?;
    Ok((low < high).then_some(high))
}

/// The low and high watermarks of the topic's one partition; `None` when the topic does not
/// exist. Any other error of its metadata is an error, not an empty registry: a plan made from
/// a registry read as empty would delete nothing.
fn watermarks(consumer: &BaseConsumer, topic: &str) -> Result<Option<(i64, i64)>, Error> {
    let metadata = consumer
        .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
        .map_err(super::Error::Client)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match found.error().map(RDKafkaErrorCode::from) {
        None => {}
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => return Ok(None),
        Some(code) => return Err(super::Error::Client(KafkaError::MetadataFetch(code)).into()),
    }
    match found.partitions().len() {
        1 => {}
        partitions => {
            return Err(Error::Partitions {
                topic: topic.to_string(),
                partitions,
            })
        }
    }
    let watermarks = consumer
        .fetch_watermarks(topic, 0, KAFKA_TIMEOUT)
        .map_err(super::Error::Client)?;
    Ok(Some(watermarks))
}

/// The offset `consumer` reads next in the topic's partition, once it knows it.
fn position(consumer: &BaseConsumer, topic: &str) -> Option<i64> {
    let positions = consumer.position().ok()?;
    match positions.find_partition(topic, 0)?.offset() {
        Offset::Offset(at) => Some(at),
        _ => None,
    }
}

/// Writes `messages` — a key, and a value or `None` for a tombstone — to the topic's partition
/// in their order, with the idempotent producer (`acks=all`), and waits for the verdict on
/// each. The number written; when any is not acknowledged, how many were.
pub async fn write(
    config: &Config,
    messages: impl IntoIterator<Item = (String, Option<Vec<u8>>)>,
) -> Result<usize, Error> {
    let messages: Vec<_> = messages.into_iter().collect();
    let total = messages.len();
    Writer::new(config, COMMAND_TIMEOUT)?
        .write(messages)
        .await
        .map(|_| total)
}

/// A producer of the topic's records, kept for many writes.
pub struct Writer {
    producer: FutureProducer,
    topic: String,
}

impl Writer {
    /// A producer whose records count as failed when not acknowledged within `timeout`.
    pub fn new(config: &Config, timeout: Duration) -> Result<Writer, Error> {
        let mut client = config.client_config();
        client.set("client.id", "cartstream-tenants");
        client.set("message.timeout.ms", timeout.as_millis().to_string());
        for (key, value) in &config.producer {
            client.set(key, value);
        }
        client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all");
        Ok(Writer {
            producer: client.create().map_err(super::Error::Client)?,
            topic: config.topics().tenants,
        })
    }

    /// Writes `messages` in order as [`write`] does; the offset of the last one written
    /// (`None` when there were none).
    pub async fn write(
        &self,
        messages: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<Option<i64>, Error> {
        let total = messages.len();
        let mut failures = Vec::new();
        let mut deliveries = Vec::with_capacity(total);
        for (key, value) in &messages {
            let headers = OwnedHeaders::new().insert(Header {
                key: super::inbound::HEADER_SCHEMA,
                value: Some(SCHEMA),
            });
            let mut record = FutureRecord::<str, [u8]>::to(&self.topic)
                .partition(0)
                .key(key)
                .headers(headers);
            if let Some(value) = value {
                record = record.payload(value);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                // What follows would be written out of order: nothing more is sent.
                Err((e, _)) => {
                    failures.push(super::Error::Delivery(e));
                    break;
                }
            }
        }
        let (mut acknowledged, mut last) = (0, None);
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(delivered)) => {
                    acknowledged += 1;
                    last = last.max(Some(delivered.offset));
                }
                Ok(Err((e, _))) => failures.push(super::Error::Delivery(e)),
                Err(_canceled) => failures.push(super::Error::Delivery(KafkaError::Canceled)),
            }
        }
        match failures.into_iter().next() {
            None => Ok(last),
            Some(first) => Err(Error::Unacknowledged {
                acknowledged,
                total,
                first,
            }),
        }
    }
}
