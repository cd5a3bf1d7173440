//! Publishing an outbox: records wait in a store until Kafka acknowledges them, so an outage
//! of Kafka's never loses one. The processor's outbox (events and transitions) and the
//! delivery worker's (outcomes and dead letters) are published by the one loop here; each
//! says how its records reach the producer and how long it may still wait.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::DeliveryFuture;

/// Records handed to librdkafka and not acknowledged yet, by sequence, in order.
pub type InFlight = Vec<(u64, DeliveryFuture)>;

/// A store's outbox: records by sequence, dropped once Kafka acknowledged them.
pub trait Outbox {
    type Record;
    type Error;
    /// Up to `limit` records not yet acknowledged, oldest first, with their sequence.
    fn unpublished(&mut self, limit: usize) -> Result<Vec<(u64, Self::Record)>, Self::Error>;
    /// Drops the records Kafka acknowledged.
    fn acknowledge(&mut self, sequences: &[u64]) -> Result<(), Self::Error>;
}

/// Why an outbox was not (fully) published; what is left stays in it.
#[derive(Debug)]
pub enum Error<E> {
    /// Kafka refused a record, gave one up, or did not answer in time.
    Kafka(super::Error),
    /// The outbox could not be read.
    Read(E),
    /// The acknowledged records could not be dropped.
    Acknowledge(E),
    /// No time is left to wait for Kafka.
    Stopping,
}

/// Publishes the outbox in order, `batch` records at a time, until it is empty: hands each
/// batch to the producer with `enqueue` (until one is refused), waits for Kafka's answers in
/// order, at most what `time_left` allows (`None`: no more time), and drops what Kafka
/// acknowledged.
///
/// Records that did not get an answer in time stay in `in_flight`: librdkafka keeps retrying
/// them (up to `message.timeout.ms`), so the next publication waits for them instead of
/// producing them a second time. Records Kafka gave up on are produced again from the outbox.
pub async fn publish<O: Outbox>(
    outbox: &mut O,
    in_flight: &mut InFlight,
    batch: usize,
    mut enqueue: impl FnMut(&O::Record) -> Result<DeliveryFuture, super::Error>,
    mut time_left: impl FnMut() -> Option<Duration>,
) -> Result<(), Error<O::Error>> {
    loop {
        let mut refused = None;
        if in_flight.is_empty() {
            let records = outbox.unpublished(batch).map_err(Error::Read)?;
            if records.is_empty() {
                return Ok(());
            }
            if time_left().is_none() {
                return Err(Error::Stopping);
            }
            refused = hand_over(records, &mut enqueue, in_flight).err();
        }
        let timeout = time_left().ok_or(Error::Stopping)?;
        let (answered, outcome) = answers_in_order(in_flight, timeout).await;
        let acknowledged: Vec<u64> = in_flight
            .drain(..answered)
            .map(|(sequence, _)| sequence)
            .collect();
        outbox
            .acknowledge(&acknowledged)
            .map_err(Error::Acknowledge)?;
        match outcome {
            Ok(()) => {}
            // Still in librdkafka's hands: wait for them next time.
            Err(e @ super::Error::Timeout(_)) => return Err(Error::Kafka(e)),
            // Given up on: produce them again from the outbox.
            Err(e) => {
                in_flight.clear();
                return Err(Error::Kafka(e));
            }
        }
        if let Some(e) = refused {
            return Err(Error::Kafka(e));
        }
    }
}

/// Hands `records` to the producer in order, adding each to `in_flight`, until one is refused.
pub fn hand_over<R>(
    records: impl IntoIterator<Item = (u64, R)>,
    mut enqueue: impl FnMut(&R) -> Result<DeliveryFuture, super::Error>,
    in_flight: &mut InFlight,
) -> Result<(), super::Error> {
    for (sequence, record) in records {
        in_flight.push((sequence, enqueue(&record)?));
    }
    Ok(())
}

/// Waits for Kafka's answers in order, at most `timeout`: how many were acknowledged before
/// the first that was not, and why that one was not.
async fn answers_in_order(
    in_flight: &mut InFlight,
    timeout: Duration,
) -> (usize, Result<(), super::Error>) {
    let mut answered = 0;
    let waited = tokio::time::timeout(timeout, async {
        for (_, delivery) in in_flight.iter_mut() {
            match delivery.await {
                Ok(Ok(_)) => answered += 1,
                Ok(Err((e, _))) => return Err(super::Error::Delivery(e)),
                Err(_) => return Err(super::Error::Delivery(KafkaError::Canceled)),
            }
        }
        Ok(())
    })
    .await;
    let outcome = match waited {
        Ok(result) => result,
        Err(_) => Err(super::Error::Timeout(timeout)),
    };
    (answered, outcome)
}
