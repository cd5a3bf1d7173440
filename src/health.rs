//! What `/healthz` and `/readyz` answer, on the ingress and the admin port alike.
//!
//! Alive means the process serves HTTP. Ready means it is not draining and Kafka answers. The
//! Kafka verdict is reused for a second: probes — on the public port too, where anyone may send
//! them — cost at most one broker round trip per second, however many arrive.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::kafka;

const KAFKA_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a Kafka verdict is reused.
const VERDICT_TTL: Duration = Duration::from_secs(1);

/// Readiness inputs, cheap to clone.
#[derive(Clone)]
pub struct Health {
    draining: CancellationToken,
    producer: kafka::Producer,
    last: Arc<Mutex<Option<Verdict>>>,
}

/// When Kafka was last asked, and what it said.
#[derive(Clone, Copy)]
struct Verdict {
    at: Instant,
    result: Result<(), &'static str>,
}

impl Health {
    pub fn new(draining: CancellationToken, producer: kafka::Producer) -> Self {
        Health {
            draining,
            producer,
            last: Arc::default(),
        }
    }

    /// `Ok` when the process should receive traffic, else the reason it should not.
    pub async fn ready(&self) -> Result<(), &'static str> {
        if self.draining.is_cancelled() {
            return Err("draining");
        }
        // One check at a time; those who waited for it take its verdict.
        let mut last = self.last.lock().await;
        if let Some(verdict) = *last {
            if verdict.at.elapsed() < VERDICT_TTL {
                return verdict.result;
            }
        }
        let result = self
            .producer
            .check(KAFKA_CHECK_TIMEOUT)
            .await
            .map_err(|e| match e {
                kafka::Error::Refused(refusal) => refusal.reason,
                _ => "kafka unreachable",
            });
        *last = Some(Verdict {
            at: Instant::now(),
            result,
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_probes_asks_kafka_once() {
        // Nothing listens there: each check waits out its 2 s timeout.
        let config = kafka::Config {
            brokers: "127.0.0.1:1".to_string(),
            ..kafka::Config::default()
        };
        let producer = kafka::Producer::from_config(&config, 1 << 20).unwrap();
        let health = Health::new(CancellationToken::new(), producer);
        let started = Instant::now();
        let probes: Vec<_> = (0..50)
            .map(|_| {
                let health = health.clone();
                tokio::spawn(async move { health.ready().await })
            })
            .collect();
        for probe in probes {
            assert_eq!(probe.await.unwrap(), Err("kafka unreachable"));
        }
        // Fifty checks one after another would take 100 s; one took 2 s.
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "{took:?}");
        let draining = CancellationToken::new();
        draining.cancel();
        let health = Health { draining, ..health };
        assert_eq!(health.ready().await, Err("draining"));
    }
}
