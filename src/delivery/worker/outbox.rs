//! Publishing the outbox: outcome and dead-letter records go to Kafka from RocksDB, and leave
//! it only once Kafka acknowledged them — so an outage of ours never loses a record, nor uses
//! up an endpoint's retries.

use super::{Worker, PUBLISH_BATCH};
use crate::delivery::store::OutboxRecord;
use crate::kafka;
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
        let mut pending = Vec::new();
        for (sequence, record) in records {
            if self.publishing.contains(&sequence) || pending.len() >= PUBLISH_BATCH {
                continue;
            }
            match self.enqueue(&record) {
                Ok(delivery) => {
                    self.publishing.insert(sequence);
                    pending.push((sequence, delivery));
                }
                Err(_) => break,
            }
        }
        if pending.is_empty() {
            return;
        }
        let (timeout, report) = (self.config.publish_timeout, self.published.clone());
        self.tracker.spawn(async move {
            let mut acknowledged = Vec::with_capacity(pending.len());
            let mut failed = Vec::new();
            let deadline = tokio::time::Instant::now() + timeout;
            for (sequence, delivery) in pending {
                match tokio::time::timeout_at(deadline, delivery).await {
                    Ok(Ok(Ok(_))) => acknowledged.push(sequence),
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

    fn enqueue(
        &self,
        record: &OutboxRecord,
    ) -> Result<rdkafka::producer::DeliveryFuture, kafka::Error> {
        let (topic, schema) = match record.dead_letter {
            true => (&self.topics.dead_letters, dead_letter::SCHEMA),
            false => (&self.topics.deliveries, outcome::SCHEMA),
        };
        self.producer.enqueue(
            topic,
            &record.key,
            record.value.as_bytes(),
            schema,
            &record.id,
        )
    }

    /// Hands the whole outbox to Kafka and waits, until `deadline` at most (at shutdown).
    /// Whether it is empty now.
    pub(super) async fn publish(&mut self, deadline: tokio::time::Instant) -> bool {
        loop {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    waiting = self.store.outbox_len(),
                    "no time left to publish outcome records; keeping them"
                );
                return false;
            }
            let records = match self.store.outbox(PUBLISH_BATCH) {
                Ok(records) => records,
                Err(e) => {
                    tracing::error!(error = %e, "reading the outbox failed");
                    return false;
                }
            };
            if records.is_empty() {
                return true;
            }
            let mut pending = Vec::with_capacity(records.len());
            for (sequence, record) in &records {
                match self.enqueue(record) {
                    Ok(delivery) => pending.push((*sequence, delivery)),
                    Err(_) => break,
                }
            }
            let complete = pending.len() == records.len();
            let mut acknowledged = Vec::with_capacity(pending.len());
            let wait = deadline.min(tokio::time::Instant::now() + self.config.publish_timeout);
            let _ = tokio::time::timeout_at(wait, async {
                for (sequence, delivery) in pending {
                    match delivery.await {
                        Ok(Ok(_)) => acknowledged.push(sequence),
                        _ => return,
                    }
                }
            })
            .await;
            let all = complete && acknowledged.len() == records.len();
            if let Err(e) = self.store.acknowledge(&acknowledged) {
                tracing::error!(error = %e, "dropping acknowledged outbox records failed");
                return false;
            }
            if !all {
                tracing::warn!(
                    waiting = self.store.outbox_len(),
                    "Kafka did not take every outcome record; keeping them"
                );
                return false;
            }
        }
    }
}
