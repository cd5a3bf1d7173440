//! Prints every committed record of a topic as it is now: partition, offset, key, headers and
//! value; then how many.
//!
//! ```text
//! cargo run --example read_topic -- cartstream.inbound.v1            # brokers 127.0.0.1:9092
//! cargo run --example read_topic -- cartstream.inbound.v1 host:9092
//! ```

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let topic = args
        .next()
        .unwrap_or_else(|| "cartstream.inbound.v1".to_string());
    let brokers = args.next().unwrap_or_else(|| "127.0.0.1:9092".to_string());
    // As a data team's reader should: committed records only, up to each partition's last
    // stable offset, which the consumer reports reaching (the markers transactions leave take
    // offsets no reader is given, so counting offsets to the high watermark would not end).
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "cartstream-read-topic")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut reading = std::collections::BTreeSet::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        reading.insert(partition.id());
        assignment.add_partition_offset(&topic, partition.id(), Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut read = 0;
    while !reading.is_empty() {
        let Some(message) = consumer.poll(timeout) else {
            anyhow::bail!(
                "partitions {reading:?} of {topic} did not reach their end within {timeout:?}"
            );
        };
        let message = match message {
            Err(KafkaError::PartitionEOF(partition)) => {
                reading.remove(&partition);
                continue;
            }
            other => other?,
        };
        read += 1;
        println!(
            "\npartition {} offset {} key {:?}",
            message.partition(),
            message.offset(),
            message.key().map(String::from_utf8_lossy)
        );
        for header in message.headers().iter().flat_map(|h| h.iter()) {
            println!(
                "  {}: {}",
                header.key,
                String::from_utf8_lossy(header.value.unwrap_or_default())
            );
        }
        let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
        let shown: String = value.chars().take(200).collect();
        println!(
            "  value ({} bytes): {shown}{}",
            value.len(),
            if value.len() > shown.len() { "…" } else { "" }
        );
    }
    println!("\n{topic}: committed records read: {read}");
    Ok(())
}
