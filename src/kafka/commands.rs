//! The delivery workers' commands topic, `<prefix>.delivery-commands.v1`
//! ([`crate::topics::command`]): created with one partition and kept an hour, read from the end
//! it has when a reader starts. What the records say is the business of
//! `crate::delivery::remote`; this module moves their bytes.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::Config;

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings the topic is created with, besides its one partition: a command is answered
/// within a minute, so an hour keeps every one that may still matter and a record of the rest.
pub const TOPIC_SETTINGS: &[(&str, &str)] =
    &[("cleanup.policy", "delete"), ("retention.ms", "3600000")];

/// Creates the topic unless it exists: one partition, the configured replication factor, and
/// [`TOPIC_SETTINGS`]. An existing topic is left as it is.
pub async fn ensure_topic(config: &Config) -> Result<(), super::Error> {
    let topic = config.topics().commands;
    super::admin::ensure_single_partition(config, &topic, TOPIC_SETTINGS).await
}

/// A reader of the topic from the end it had when the reader began: every record written
/// after that, in order (blocking: run it off the runtime).
pub struct Tail {
    consumer: BaseConsumer,
}

impl Tail {
    /// Starts reading after the last record the topic holds now.
    pub fn from_end(config: &Config) -> Result<Tail, KafkaError> {
        let topic = config.topics().commands;
        let consumer: BaseConsumer = super::consumer_config(
            config,
            &[("client.id", "cartstream-commands")],
            &Default::default(),
            &[
                ("group.id", "cartstream-commands"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
            ],
        )
        .create()?;
        let (_, end) = consumer.fetch_watermarks(&topic, 0, KAFKA_TIMEOUT)?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Offset(end))?;
        consumer.assign(&assignment)?;
        Ok(Tail { consumer })
    }

    /// The next record's value, if one comes within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Result<Vec<u8>, KafkaError>> {
        let message = self.consumer.poll(timeout)?;
        Some(message.map(|m| m.payload().unwrap_or_default().to_vec()))
    }
}

/// How many members the consumer group `group` has now: the delivery workers running.
pub fn members(config: &Config, group: &str) -> Result<usize, KafkaError> {
    let consumer: BaseConsumer = config.client_config().create()?;
    let groups = consumer.fetch_group_list(Some(group), KAFKA_TIMEOUT)?;
    Ok(groups
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .map(|g| g.members().len())
        .sum())
}
