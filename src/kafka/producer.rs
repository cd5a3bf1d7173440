//! The idempotent (`acks=all`) producer the ingress hands verified bodies to, and the processor
//! its outbox records.
//!
//! Each request enqueues its record and awaits its own acknowledgement; librdkafka batches the
//! records of all concurrent requests, so many sends are in flight at once. A request is answered
//! 200 only when its own record was acknowledged.
//!
//! Records wait in librdkafka up to `message.timeout.ms` (five minutes unless configured), much
//! longer than a request waits for its ack: a request is answered 504 at the ack timeout, but its
//! record is not given up during a short broker outage. Giving records up would make the
//! idempotent producer bump its epoch, which some Kafka-compatible brokers do not support.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use tokio::time::Instant;

use super::connection::Reach;
use super::{Config, Connection, Error, Topics};
use crate::telemetry::metrics;

/// Room for Kafka headers and framing on top of the largest body.
const RECORD_OVERHEAD_BYTES: usize = 64 * 1024;

/// The largest record the daemon produces, given the largest body it accepts: the producer's
/// `message.max.bytes`, and the `max.message.bytes` of the topics it creates.
pub fn max_message_bytes(max_body_bytes: usize) -> usize {
    (max_body_bytes + RECORD_OVERHEAD_BYTES).max(1_000_000)
}

/// How long a request that finds every broker down waits for one to answer a metadata request.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// librdkafka's own default for `message.timeout.ms`.
const DEFAULT_MESSAGE_TIMEOUT_MS: &str = "300000";

/// The partition of `partitions` the producer writes a record keyed `key` to: librdkafka's
/// default partitioner (`consistent_random`, and `consistent`) takes the CRC-32 of the key.
/// Another `partitioner` set in `kafka.producer` is not followed here: the answer says so.
pub fn partition_of(config: &Config, key: &[u8], partitions: i32) -> Result<i32, String> {
    let partitioner = config.producer.get("partitioner").map(String::as_str);
    match partitioner {
        None | Some("consistent_random" | "consistent") if partitions > 0 && !key.is_empty() => {
            Ok((crc32fast::hash(key) % partitions as u32) as i32)
        }
        None | Some("consistent_random" | "consistent") => {
            Err(format!("no partition for an empty key among {partitions}"))
        }
        Some(other) => Err(format!(
            "kafka.producer.partitioner is {other:?}: the partition of a key is told for librdkafka's default (consistent_random) only"
        )),
    }
}

/// A cheap-to-clone handle on the producer.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer<Connection>,
    /// The same context librdkafka calls back (it holds no other handle on it).
    connection: Connection,
    topics: Arc<Topics>,
}

impl Producer {
    /// Builds the producer; `max_body_bytes` sizes the largest record librdkafka accepts.
    pub fn from_config(config: &Config, max_body_bytes: usize) -> Result<Self, Error> {
        let mut client = config.client_config();
        client.set("message.timeout.ms", DEFAULT_MESSAGE_TIMEOUT_MS);
        client.set("client.id", "cartstream");
        for (key, value) in &config.producer {
            client.set(key, value);
        }
        let max_message = max_message_bytes(max_body_bytes);
        client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.max.bytes", max_message.to_string());
        let connection = Connection::default();
        let inner: FutureProducer<Connection> = client
            .create_with_context(connection.clone())
            .map_err(Error::Client)?;
        Ok(Producer {
            inner,
            connection,
            topics: Arc::new(config.topics()),
        })
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Produces one inbound record and waits up to `ack_timeout` for the broker's
    /// acknowledgement.
    pub async fn send_inbound(
        &self,
        key: &str,
        body: &[u8],
        headers: OwnedHeaders,
        timestamp_ms: i64,
        ack_timeout: Duration,
    ) -> Result<(), Error> {
        let record = FutureRecord::to(&self.topics.inbound)
            .key(key)
            .payload(body)
            .headers(headers)
            .timestamp(timestamp_ms);
        self.send_acknowledged(record, ack_timeout).await
    }

    /// Produces one sealed credential record (`crate::credentials`) and waits up to
    /// `ack_timeout` for its acknowledgement.
    pub async fn send_credential(
        &self,
        key: &str,
        value: &[u8],
        timestamp_ms: i64,
        ack_timeout: Duration,
    ) -> Result<(), Error> {
        let headers = OwnedHeaders::new().insert(Header {
            key: super::inbound::HEADER_SCHEMA,
            value: Some(crate::topics::credentials::SCHEMA),
        });
        let record = FutureRecord::to(&self.topics.credentials)
            .key(key)
            .payload(value)
            .headers(headers)
            .timestamp(timestamp_ms);
        self.send_acknowledged(record, ack_timeout).await
    }

    /// Produces one instance's view of one integration ([`crate::topics::status`]) and waits up
    /// to `ack_timeout` for its acknowledgement.
    pub async fn send_status(
        &self,
        key: &str,
        value: &[u8],
        ack_timeout: Duration,
    ) -> Result<(), Error> {
        let headers = OwnedHeaders::new().insert(Header {
            key: super::inbound::HEADER_SCHEMA,
            value: Some(crate::topics::status::SCHEMA),
        });
        let record = FutureRecord::to(&self.topics.status)
            .key(key)
            .payload(value)
            .headers(headers);
        self.send_acknowledged(record, ack_timeout).await
    }

    /// Produces one record of the delivery workers' commands topic
    /// ([`crate::topics::command`]) and waits up to `ack_timeout` for its acknowledgement.
    pub async fn send_command(&self, value: &[u8], ack_timeout: Duration) -> Result<(), Error> {
        let headers = OwnedHeaders::new().insert(Header {
            key: super::inbound::HEADER_SCHEMA,
            value: Some(crate::topics::command::SCHEMA),
        });
        let record = FutureRecord::to(&self.topics.commands)
            .payload(value)
            .headers(headers);
        self.send_acknowledged(record, ack_timeout).await
    }

    /// Produces the tombstone of the credential `key`: compaction then forgets its value.
    pub async fn send_credential_tombstone(
        &self,
        key: &str,
        timestamp_ms: i64,
        ack_timeout: Duration,
    ) -> Result<(), Error> {
        let record = FutureRecord::to(&self.topics.credentials)
            .key(key)
            .timestamp(timestamp_ms);
        self.send_acknowledged(record, ack_timeout).await
    }

    /// Sends `record` and waits for the broker's acknowledgement, at most `ack_timeout`;
    /// counted either way.
    async fn send_acknowledged(
        &self,
        record: FutureRecord<'_, str, [u8]>,
        ack_timeout: Duration,
    ) -> Result<(), Error> {
        let (bytes, topic) = (record.payload.map_or(0, <[u8]>::len), record.topic);
        let started = Instant::now();
        if !self.reachable(started).await {
            metrics::kafka_produce_failure("unreachable");
            return Err(Error::Unreachable);
        }
        let delivery = self.queue(record)?;
        let result = self.acknowledgement(delivery, ack_timeout).await;
        match &result {
            Ok(()) => metrics::kafka_ack(started.elapsed()),
            Err(Error::AckTimeout) => metrics::kafka_produce_failure("timeout"),
            Err(Error::TooLarge) => {
                tracing::warn!(
                    bytes,
                    topic,
                    "a webhook body is larger than the topic accepts: raise its max.message.bytes to at least ingress.max_body_bytes + 64 KiB, or lower ingress.max_body_bytes"
                );
                metrics::kafka_produce_failure("too_large")
            }
            Err(_) => metrics::kafka_produce_failure("broker"),
        }
        result
    }

    /// Whether a broker is worth sending to: not while every connection is down, but once a
    /// second a metadata request probes (its answer clears the state; librdkafka reconnects
    /// by itself).
    async fn reachable(&self, now: Instant) -> bool {
        match self.connection.reach(now) {
            Reach::Up => true,
            Reach::Down => false,
            Reach::Probe => self.check(PROBE_TIMEOUT).await.is_ok(),
        }
    }

    /// Hands `record` to librdkafka; a refusal is counted.
    fn queue(&self, record: FutureRecord<'_, str, [u8]>) -> Result<DeliveryFuture, Error> {
        match self.inner.send_result(record) {
            Ok(delivery) => Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                metrics::kafka_produce_failure("queue_full");
                Err(Error::QueueFull)
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                metrics::kafka_produce_failure("too_large");
                Err(Error::TooLarge)
            }
            Err((e, _)) => {
                metrics::kafka_produce_failure("broker");
                Err(Error::Delivery(e))
            }
        }
    }

    /// The broker's verdict on an enqueued record, or [`Error::AckTimeout`] when none came
    /// within `ack_timeout` (the record stays queued).
    async fn acknowledgement(
        &self,
        delivery: DeliveryFuture,
        ack_timeout: Duration,
    ) -> Result<(), Error> {
        match tokio::time::timeout(ack_timeout, delivery).await {
            Err(_) => Err(Error::AckTimeout),
            // The producer was dropped before the record's fate was known.
            Ok(Err(_canceled)) => Err(Error::Delivery(KafkaError::Canceled)),
            Ok(Ok(Ok(_delivered))) => {
                self.connection.answered();
                Ok(())
            }
            Ok(Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _)))) => {
                Err(Error::AckTimeout)
            }
            Ok(Ok(Err((
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                _,
            )))) => Err(Error::TooLarge),
            Ok(Ok(Err((e, _)))) => Err(Error::Delivery(e)),
        }
    }

    /// Hands one JSON output record to librdkafka, with its `cartstream-schema` and
    /// `cartstream-id` ([`super::HEADER_ID`]) headers; the future resolves with the broker's
    /// verdict. Used by the processor's and the delivery worker's outboxes, which wait on a
    /// whole batch of these at once.
    pub fn enqueue(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        schema: &str,
        id: &str,
    ) -> Result<DeliveryFuture, Error> {
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: super::inbound::HEADER_SCHEMA,
                value: Some(schema),
            })
            .insert(Header {
                key: super::HEADER_ID,
                value: Some(id),
            });
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        match self.inner.send_result(record) {
            Ok(delivery) => Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                metrics::kafka_produce_failure("queue_full");
                Err(Error::QueueFull)
            }
            Err((e, _)) => {
                metrics::kafka_produce_failure("broker");
                Err(Error::Delivery(e))
            }
        }
    }

    /// Records handed to librdkafka and not yet acknowledged or failed.
    pub fn queue_len(&self) -> i32 {
        self.inner.in_flight_count()
    }

    /// Waits until every queued record is acknowledged or failed, at most `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.flush(timeout))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
            .map_err(|e| match e {
                KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut) => Error::Timeout(timeout),
                e => Error::Delivery(e),
            })
    }

    /// Whether a broker answers a metadata request within `timeout` (readiness); when the
    /// cluster refuses this client, that is the error.
    pub async fn check(&self, timeout: Duration) -> Result<(), Error> {
        let inner = self.inner.clone();
        let topic = self.topics.inbound.clone();
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            match inner.client().fetch_metadata(Some(&topic), timeout) {
                Ok(_) => {
                    connection.answered();
                    Ok(())
                }
                Err(e) => Err(connection
                    .refused()
                    .map_or(Error::Client(e), Error::Refused)),
            }
        })
        .await
        .unwrap_or(Err(Error::Timeout(timeout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_goes_to_the_partition_of_its_crc32_as_librdkafka_puts_it() {
        let config = Config::default();
        // CRC-32 (IEEE, as zlib computes it) of "acme" is 0x05c4ba3e = 96_779_838.
        assert_eq!(crc32fast::hash(b"acme"), 0x05c4_ba3e);
        assert_eq!(partition_of(&config, b"acme", 6), Ok(2));
        assert_eq!(partition_of(&config, b"acme", 7), Ok(6));
        assert_eq!(partition_of(&config, b"acme", 1), Ok(0));
        assert!(partition_of(&config, b"", 6).is_err());
        let mut murmur = Config::default();
        murmur
            .producer
            .insert("partitioner".into(), "murmur2_random".into());
        assert!(partition_of(&murmur, b"acme", 6)
            .unwrap_err()
            .contains("murmur2_random"));
    }
}
