//! The transitions consumer: a member of the delivery group, its lag, and the offsets it may
//! commit — only those whose jobs are synced to disk.

use std::collections::BTreeMap;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use super::{Config, Error, Store};
use crate::kafka;
use crate::telemetry::metrics;

/// The offsets of transitions whose jobs are written to the store but not yet synced to disk.
/// They are handed to the consumer for its next commit only after the store's log is synced, so
/// that a commit never covers jobs a power cut could still take away (a process crash cannot:
/// RocksDB's log is written before each write returns). The log is synced every tick, so a power
/// cut also takes back at most a tick's outcomes (whose deliveries are then attempted again).
#[derive(Default)]
pub(super) struct Unsynced(BTreeMap<i32, i64>);

impl Unsynced {
    pub(super) fn taken(&mut self, partition: i32, offset: i64) {
        self.0.insert(partition, offset);
    }

    /// Syncs the store, then stores the offsets for the consumer's next commit.
    pub(super) fn release<C: Consumer<Lag>>(
        &mut self,
        store: &Store,
        consumer: &C,
        topic: &str,
    ) -> Result<(), Error> {
        store.sync()?;
        for (partition, offset) in std::mem::take(&mut self.0) {
            // A partition revoked meanwhile refuses it: its new owner reads the record again
            // (at least once, as after any move of a partition).
            if let Err(e) = consumer.store_offset(topic, partition, offset) {
                tracing::debug!(error = %e, partition, "storing the offset failed");
            }
        }
        Ok(())
    }
}

/// A consumer of `topic` in the delivery group.
pub(super) fn join(
    config: &Config,
    kafka_config: &kafka::Config,
    topic: &str,
) -> Result<StreamConsumer<Lag>, Error> {
    let consumer = consumer(config, kafka_config, topic)?;
    consumer.subscribe(&[topic]).map_err(Error::Consumer)?;
    Ok(consumer)
}

fn consumer(
    config: &Config,
    kafka_config: &kafka::Config,
    topic: &str,
) -> Result<StreamConsumer<Lag>, Error> {
    let member = kafka::group::Member {
        role: "delivery",
        group_id: &config.group_id,
        state_dir: &config.state_dir,
        topic,
        properties: &config.consumer,
        // Offsets are stored only after the transition's jobs are in RocksDB, and committed
        // from there in the background.
        auto_commit: true,
    };
    let client = member.client_config(
        kafka_config,
        &[("partition.assignment.strategy", "cooperative-sticky")],
        &[],
    );
    client
        .create_with_context(Lag {
            topic: topic.to_string(),
        })
        .map_err(Error::Consumer)
}

/// Reports the consumer's lag from librdkafka's statistics.
pub(super) struct Lag {
    topic: String,
}

impl ClientContext for Lag {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            let lag: i64 = topic
                .partitions
                .values()
                .filter(|p| p.partition >= 0)
                .map(|p| p.consumer_lag.max(0))
                .sum();
            metrics::delivery_lag(lag);
        }
    }
}

impl ConsumerContext for Lag {}
