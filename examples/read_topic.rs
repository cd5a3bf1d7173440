//! Prints every record of a topic as it is now: partition, offset, key, headers and value.
//!
//! ```text
//! cargo run --example read_topic -- cartstream.inbound.v1            # brokers 127.0.0.1:9092
//! cargo run --example read_topic -- cartstream.inbound.v1 host:9092
//! ```

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let topic = args
        .next()
        .unwrap_or_else(|| "cartstream.inbound.v1".to_string());
    let brokers = args.next().unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "cartstream-read-topic")
        .set("enable.auto.commit", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer.fetch_watermarks(&topic, partition.id(), timeout)?;
        remaining += high - low;
        assignment.add_partition_offset(&topic, partition.id(), Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    println!("{topic}: {remaining} records");
    while remaining > 0 {
        let Some(message) = consumer.poll(timeout) else {
            anyhow::bail!("no record arrived within {timeout:?}");
        };
        let message = message?;
        remaining -= 1;
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
    Ok(())
}
