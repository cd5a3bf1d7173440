//! Reading back what a topic holds from a moment on, across all its partitions: the admin API's
//! delivery search reads `<prefix>.deliveries.v1` this way, so that it shows every delivery
//! worker's outcomes, not one pod's disk. Blocking: run it off the runtime.

use std::time::Duration;

use tokio::time::Instant;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::Config;

/// What a read went through.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// Records handed over.
    pub records: usize,
    /// Whether every partition was read to the end it had when the read began (else the time
    /// ran out first).
    pub complete: bool,
}

/// Hands `each` the value of every record of `topic` written at or after `since_ms` (Unix
/// milliseconds, by the records' timestamps), partition by partition in offset order, up to the
/// end each partition has when the read begins (the last stable offset: `read_committed`). Stops
/// after `budget`. A topic that does not exist holds nothing.
pub fn read_since(
    config: &Config,
    topic: &str,
    since_ms: i64,
    budget: Duration,
    mut each: impl FnMut(&[u8]),
) -> Result<Read, KafkaError> {
    let deadline = Instant::now() + budget;
    let timeout = budget.min(Duration::from_secs(10));
    let consumer: BaseConsumer = super::consumer_config(
        config,
        &[("client.id", "cartstream-history")],
        &Default::default(),
        &[
            ("group.id", "cartstream-history"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
        ],
    )
    .create()?;
    let partitions = super::topic_partitions(&consumer, topic, timeout)?;
    if partitions.is_empty() {
        return Ok(Read {
            records: 0,
            complete: true,
        });
    }
    let mut times = TopicPartitionList::new();
    // Before 1970 is from the first record: Kafka reads a negative time as a special offset.
    for &partition in &partitions {
        times.add_partition_offset(topic, partition, Offset::Offset(since_ms.max(0)))?;
    }
    let starts = consumer.offsets_for_times(times, timeout)?;
    let mut ends = std::collections::BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        // No record at or after the moment: nothing to read there.
        let Some(Offset::Offset(start)) =
            starts.find_partition(topic, partition).map(|p| p.offset())
        else {
            continue;
        };
        if start < high {
            ends.insert(partition, high);
            assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
        }
    }
    consumer.assign(&assignment)?;
    let mut records = 0;
    while !ends.is_empty() && Instant::now() < deadline {
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => {
                // Past the last stable offset there is nothing more for this reader: a
                // partition whose position reached its end is done.
                let positions = consumer.position()?;
                ends.retain(|&partition, end| {
                    !matches!(
                        positions.find_partition(topic, partition).map(|p| p.offset()),
                        Some(Offset::Offset(at)) if at >= *end
                    )
                });
                continue;
            }
            Some(message) => message?,
        };
        let (partition, offset) = (message.partition(), message.offset());
        let Some(&end) = ends.get(&partition) else {
            continue;
        };
        if offset + 1 >= end {
            ends.remove(&partition);
        }
        if offset < end {
            each(message.payload().unwrap_or_default());
            records += 1;
        }
    }
    Ok(Read {
        records,
        complete: ends.is_empty(),
    })
}
