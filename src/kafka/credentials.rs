//! Reading `<prefix>.credentials.v1` back (`cartstream credentials`): every partition from its
//! start to the end it had when the read began, the latest record per key.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{Config, Error};
use crate::topics::credentials::Credential;

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// The latest credential of every key, by key; records that do not parse are counted in the
/// second value.
pub fn read_latest(
    config: &Config,
    read_for: Duration,
) -> Result<(BTreeMap<String, Credential>, usize), Error> {
    let topic = config.topics().credentials;
    let consumer: BaseConsumer = super::consumer_config(
        config,
        &[("client.id", "cartstream-credentials")],
        &BTreeMap::new(),
        &[
            ("group.id", "cartstream-credentials-reader"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
        ],
    )
    .create()
    .map_err(Error::Client)?;
    let mut ends = assign_from_start(&consumer, &topic)?;
    let (mut latest, mut unreadable) = (BTreeMap::new(), 0);
    let deadline = Instant::now() + read_for;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(Error::Timeout(read_for));
        }
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(message) => message.map_err(Error::Client)?,
        };
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        match message.payload() {
            // A tombstone: the key was deleted.
            None => {
                latest.remove(&key);
            }
            Some(value) => match serde_json::from_slice::<Credential>(value) {
                Ok(record) => {
                    latest.insert(key, record);
                }
                Err(_) => unreadable += 1,
            },
        }
        if ends
            .get(&message.partition())
            .is_some_and(|&end| message.offset() + 1 >= end)
        {
            ends.remove(&message.partition());
        }
    }
    Ok((latest, unreadable))
}

/// Assigns `consumer` every partition of `topic` that holds records, from its first one;
/// returns where each ends now (its high watermark), which the read goes up to.
fn assign_from_start(consumer: &BaseConsumer, topic: &str) -> Result<BTreeMap<i32, i64>, Error> {
    let partitions =
        super::topic_partitions(consumer, topic, KAFKA_TIMEOUT).map_err(Error::Client)?;
    let mut ends = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, KAFKA_TIMEOUT)
            .map_err(Error::Client)?;
        if low < high {
            ends.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(Error::Client)?;
        }
    }
    consumer.assign(&assignment).map_err(Error::Client)?;
    Ok(ends)
}
