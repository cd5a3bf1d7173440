//! Rebalancing. librdkafka calls back on the consumer's own thread, between two polls — so the
//! batch in flight is always finished when a callback runs.
//!
//! The group assigns cooperatively (incremental): a callback names only the partitions that move,
//! and the others are consumed on without a pause.
//!
//! - **Assign**: open each partition's store and start consuming at the offset it holds (the
//!   beginning of the partition when there is no local state, which then is rebuilt).
//! - **Revoke**: publish the partition's outbox, commit its offset for progress, close its store.
//!
//! A consumer being replaced by a new member ([`Context::retire`]) no longer touches the stores:
//! librdkafka still calls it back while it closes, on the closing thread, when the partitions
//! may already be the new member's.

use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;

use super::commit;
use super::partition::Partitions;

pub struct Context {
    partitions: Partitions,
    /// Set once the consumer is being replaced: see [`Context::retire`].
    retired: AtomicBool,
}

impl Context {
    pub fn new(partitions: Partitions) -> Self {
        Context {
            partitions,
            retired: AtomicBool::new(false),
        }
    }

    /// From now on, rebalances only assign and unassign in librdkafka: the stores are closed by
    /// whoever retires the consumer, and are not this consumer's any more. Called on the
    /// consumer's thread before the consumer moves to the thread that closes it.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    fn owned_ids(&self, list: &TopicPartitionList) -> Vec<i32> {
        list.elements_for_topic(self.partitions.topic())
            .iter()
            .map(|element| element.partition())
            .collect()
    }
}

impl ClientContext for Context {
    /// Reaching the end of a partition is how the processor learns it is caught up, not an
    /// error; everything else is logged.
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF) => {
                tracing::trace!(reason, "end of partition")
            }
            error => tracing::warn!(error = %error, reason, "Kafka client error"),
        }
    }

    /// librdkafka's statistics (every `statistics.interval.ms`) carry each partition's high
    /// watermark, from which the processor reports its lag without asking the broker.
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(self.partitions.topic()) {
            let high = topic
                .partitions
                .values()
                .filter(|p| p.partition >= 0 && p.hi_offset >= 0)
                .map(|p| (p.partition, p.hi_offset));
            self.partitions.set_high_watermarks(high);
        }
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        if self.retired.load(Ordering::Relaxed) {
            match err {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => assign(consumer, list),
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => unassign(consumer, list),
                _ => {
                    let _ = consumer.unassign();
                }
            }
            return;
        }
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let topic = self.partitions.topic().to_string();
                for (partition, offset) in self.partitions.assign(&self.owned_ids(list)) {
                    if let Err(e) = list.set_partition_offset(&topic, partition, offset) {
                        tracing::error!(partition, error = %e, "cannot set the start offset");
                    }
                }
                assign(consumer, list);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let offsets = self.partitions.revoke(&self.owned_ids(list));
                // Progress only (the store holds the offsets that count), so the callback does
                // not wait for the broker's answer.
                commit(
                    consumer,
                    self.partitions.topic(),
                    &offsets,
                    CommitMode::Async,
                );
                unassign(consumer, list);
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed; giving up the assignment");
                self.partitions.revoke(&self.owned_ids(list));
                let _ = consumer.unassign();
            }
        }
    }
}

/// Hands librdkafka the partitions a rebalance assigned (only those, when it assigns
/// incrementally).
fn assign(consumer: &BaseConsumer<Context>, list: &TopicPartitionList) {
    let assigned = match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_assign(list),
        _ => consumer.assign(list),
    };
    if let Err(e) = assigned {
        tracing::error!(error = %e, "assigning partitions failed");
    }
}

/// Takes back from librdkafka the partitions a rebalance revoked.
fn unassign(consumer: &BaseConsumer<Context>, list: &TopicPartitionList) {
    let unassigned = match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_unassign(list),
        _ => consumer.unassign(),
    };
    if let Err(e) = unassigned {
        tracing::error!(error = %e, "unassigning partitions failed");
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::config::ClientConfig;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::kafka;

    /// A processor that waits out a full volume, or is fenced, closes its consumer on a thread of
    /// its own while a new consumer joins and opens the stores again; librdkafka calls the old
    /// one back while it closes, however late that is.
    #[test]
    fn a_retired_consumer_leaves_the_partitions_to_the_new_member() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let kafka = kafka::Config::default();
        let config = super::super::Config {
            state_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let partitions = Partitions::new(
            config,
            kafka.topics(),
            kafka::Producer::from_config(&kafka, 1 << 20).unwrap(),
            runtime.handle().clone(),
            CancellationToken::new(),
        );
        // No broker: the consumer is only called back, by hand.
        let old: BaseConsumer<Context> = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "cartstream-processor")
            .create_with_context(Context::new(partitions.clone()))
            .unwrap();
        partitions.assign(&[0]);

        // What the processor does when it replaces the consumer; the new member gets partition 0
        // back.
        old.context().retire();
        partitions.close_all();
        partitions.assign(&[0]);

        let mut list = TopicPartitionList::new();
        list.add_partition(partitions.topic(), 0);
        list.add_partition(partitions.topic(), 1);
        let owned = |partitions: &Partitions| -> Vec<i32> {
            partitions.states().iter().map(|s| s.partition).collect()
        };
        old.context().rebalance(
            &old,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS,
            &mut list,
        );
        assert_eq!(owned(&partitions), [0], "the new member's store stays open");
        old.context().rebalance(
            &old,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS,
            &mut list,
        );
        assert_eq!(
            owned(&partitions),
            [0],
            "no store is opened for the old member"
        );
    }
}
