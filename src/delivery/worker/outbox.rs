//! Publishing the outbox: outcome and dead-letter records go to Kafka from RocksDB, and leave
//! it only once Kafka acknowledged them — so an outage of ours never loses a record, nor uses
//! up an endpoint's retries.

use super::{Worker, PUBLISH_BATCH};
use crate::delivery::store::{self, OutboxRecord, Store};
use crate::kafka::{self, outbox};
use crate::topics::{dead_letter, outcome};

impl Worker {
    /// Hands outbox records not yet under way to the producer; a task awaits Kafka's verdicts
    /// and reports them to the loop ([`Worker::acknowledged`]), so attempts go on meanwhile.
    pub(super) fn publish_start(&mut self) {
        let records = match self.store.outbox(PUBLISH_BATCH + self.publishing.len()) {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(error = %e, "reading the outbox failed");
                return;
            }
        };
        let fresh = records
            .into_iter()
            .filter(|(sequence, _)| !self.publishing.contains(sequence))
            .take(PUBLISH_BATCH);
        let mut pending = Vec::new();
        // A refused record waits for the next tick, with those after it.
        let _ = outbox::hand_over(
            fresh,
            |record| enqueue(&self.producer, &self.topics, record),
            &mut pending,
        );
        self.publishing
            .extend(pending.iter().map(|(sequence, _)| *sequence));
        if pending.is_empty() {
            return;
        }
        let (timeout, report) = (self.config.publish_timeout, self.published.clone());
        self.tracker.spawn(async move {
            let mut acknowledged = Vec::with_capacity(pending.len());
            let mut failed = Vec::new();
            let deadline = tokio::time::Instant::now() + timeout;
            let mut warned = false;
            for (sequence, mut delivery) in pending {
                // librdkafka answers every record it took, within `message.timeout.ms`. One
                // not answered in time may still be written (a leader moving, say): it is
                // waited for, not produced a second time. Only a record Kafka gave up on goes
                // out again.
                let answer = match tokio::time::timeout_at(deadline, &mut delivery).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        if !warned {
                            warned = true;
                            tracing::warn!(
                                waited = ?timeout,
                                "Kafka has not acknowledged outcome records yet; waiting for them"
                            );
                        }
                        delivery.await
                    }
                };
                match answer {
                    Ok(Ok(_)) => acknowledged.push(sequence),
                    _ => failed.push(sequence),
                }
            }
            // The receiver is the loop; at shutdown it drains these reports.
            let _ = report.send((acknowledged, failed)).await;
        });
    }

    /// Drops what Kafka acknowledged; what it did not goes out again on the next tick.
    pub(super) fn acknowledged(&mut self, (acknowledged, failed): (Vec<u64>, Vec<u64>)) {
        for sequence in acknowledged.iter().chain(&failed) {
            self.publishing.remove(sequence);
        }
        if !failed.is_empty() {
            tracing::warn!(
                records = failed.len(),
                "Kafka did not acknowledge outcome records; keeping them"
            );
        }
        if let Err(e) = self.store.acknowledge(&acknowledged) {
            tracing::error!(error = %e, "dropping acknowledged outbox records failed");
        }
    }

    /// Hands the whole outbox to Kafka and waits, until `deadline` at most (at shutdown).
    /// Whether it is empty now.
    pub(super) async fn publish(&mut self, deadline: tokio::time::Instant) -> bool {
        let timeout = self.config.publish_timeout;
        let time_left = || match deadline.saturating_duration_since(tokio::time::Instant::now()) {
            left if left.is_zero() => None,
            left => Some(left.min(timeout)),
        };
        let (producer, topics) = (&self.producer, &self.topics);
        // What Kafka has not answered by the deadline is produced again after the restart.
        let mut in_flight = Vec::new();
        let published = outbox::publish(
            &mut self.store,
            &mut in_flight,
            PUBLISH_BATCH,
            |record| enqueue(producer, topics, record),
            time_left,
        )
        .await;
        match published {
            Ok(()) => return true,
            Err(outbox::Error::Stopping) => tracing::warn!(
                waiting = self.store.outbox_len(),
                "no time left to publish outcome records; keeping them"
            ),
            Err(outbox::Error::Read(e)) => {
                tracing::error!(error = %e, "reading the outbox failed")
            }
            Err(outbox::Error::Acknowledge(e)) => {
                tracing::error!(error = %e, "dropping acknowledged outbox records failed")
            }
            Err(outbox::Error::Kafka(_)) => tracing::warn!(
                waiting = self.store.outbox_len(),
                "Kafka did not take every outcome record; keeping them"
            ),
        }
        false
    }
}

/// Hands one outbox record to the producer: an outcome, or a dead letter.
fn enqueue(
    producer: &kafka::Producer,
    topics: &kafka::Topics,
    record: &OutboxRecord,
) -> Result<rdkafka::producer::DeliveryFuture, kafka::Error> {
    let (topic, schema) = match record.dead_letter {
        true => (&topics.dead_letters, dead_letter::SCHEMA),
        false => (&topics.deliveries, outcome::SCHEMA),
    };
    producer.enqueue(
        topic,
        &record.key,
        record.value.as_bytes(),
        schema,
        &record.id,
    )
}

/// The delivery store publishes its outbox through the one outbox loop.
impl outbox::Outbox for Store {
    type Record = OutboxRecord;
    type Error = store::Error;

    fn unpublished(&mut self, limit: usize) -> Result<Vec<(u64, OutboxRecord)>, store::Error> {
        self.outbox(limit)
    }

    fn acknowledge(&mut self, sequences: &[u64]) -> Result<(), store::Error> {
        Store::acknowledge(self, sequences)
    }
}
