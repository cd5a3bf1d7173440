//! Rebalancing. librdkafka calls back on the consumer's own thread, between two polls — so the
//! batch in flight is always finished when a callback runs.
//!
//! The group assigns cooperatively (incremental): a callback names only the partitions that move,
//! and the others are consumed on without a pause.
//!
//! - **Assign**: open each partition's store and start consuming at the offset it holds (the
//!   beginning of the partition when there is no local state, which then is rebuilt).
//! - **Revoke**: publish the partition's outbox, commit its offset for progress, close its store.

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
}

impl Context {
    pub fn new(partitions: Partitions) -> Self {
        Context { partitions }
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
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let topic = self.partitions.topic().to_string();
                for (partition, offset) in self.partitions.assign(&self.owned_ids(list)) {
                    if let Err(e) = list.set_partition_offset(&topic, partition, offset) {
                        tracing::error!(partition, error = %e, "cannot set the start offset");
                    }
                }
                let assigned = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_assign(list),
                    _ => consumer.assign(list),
                };
                if let Err(e) = assigned {
                    tracing::error!(error = %e, "assigning partitions failed");
                }
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
                let unassigned = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_unassign(list),
                    _ => consumer.unassign(),
                };
                if let Err(e) = unassigned {
                    tracing::error!(error = %e, "unassigning partitions failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed; giving up the assignment");
                self.partitions.revoke(&self.owned_ids(list));
                let _ = consumer.unassign();
            }
        }
    }
}
