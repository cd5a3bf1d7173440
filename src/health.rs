//! What `/healthz` and `/readyz` answer, on the ingress and the admin port alike.
//!
//! Alive means the process serves HTTP. Ready means it is not draining and Kafka answers.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::kafka;

const KAFKA_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness inputs, cheap to clone.
#[derive(Clone)]
pub struct Health {
    draining: CancellationToken,
    producer: kafka::Producer,
}

impl Health {
    pub fn new(draining: CancellationToken, producer: kafka::Producer) -> Self {
        Health { draining, producer }
    }

    /// `Ok` when the process should receive traffic, else the reason it should not.
    pub async fn ready(&self) -> Result<(), &'static str> {
        if self.draining.is_cancelled() {
            return Err("draining");
        }
        self.producer
            .check(KAFKA_CHECK_TIMEOUT)
            .await
            .map_err(|e| match e {
                kafka::Error::Refused(refusal) => refusal.reason,
                _ => "kafka unreachable",
            })
    }
}
