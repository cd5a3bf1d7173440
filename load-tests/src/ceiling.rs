//! The broker's own ceiling for the ingress's job: a plain idempotent `acks=all` producer keeping
//! `in_flight` records outstanding, as that many concurrent webhook requests would, each the
//! record the ingress would produce — same key, a webhook body, the same metadata headers. No
//! HTTP, no verification, and the daemon's default producer properties (`kafka.producer`).
//! `load-tests/run.sh` and `scripts/load.sh` both measure with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cartstream::kafka::inbound;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::Serialize;
use tokio::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub topic: String,
    pub in_flight: usize,
    pub seconds: f64,
    pub acknowledged: u64,
    pub failed: u64,
    pub records_per_second: f64,
}

pub async fn run(
    brokers: &str,
    topic: &str,
    tenant: &str,
    body: Bytes,
    in_flight: usize,
    seconds: u64,
) -> anyhow::Result<Ceiling> {
    let mut config = ClientConfig::new();
    for (key, value) in cartstream::kafka::Config::default().producer {
        config.set(key, value);
    }
    let producer: FutureProducer = config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "5000")
        .create()?;
    let acknowledged = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let clock = cartstream::clock::Clock::System;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..in_flight {
        let (producer, topic, tenant, body) = (
            producer.clone(),
            topic.to_string(),
            tenant.to_string(),
            body.clone(),
        );
        let (acknowledged, failed) = (acknowledged.clone(), failed.clone());
        let clock = clock.clone();
        workers.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let delivery_id = format!("ceiling-{worker}-{n}");
                let headers = inbound::Metadata {
                    provider: "shopify",
                    tenant: &tenant,
                    event_type: Some("checkouts/create"),
                    delivery_id: &delivery_id,
                    received_at: clock.now(),
                    content_type: Some("application/json"),
                    payload_version: None,
                    test: false,
                }
                .headers();
                let record = FutureRecord::to(&topic)
                    .key(tenant.as_str())
                    .payload(body.as_ref())
                    .headers(headers)
                    .timestamp(clock.now_millis());
                match producer.send(record, Duration::from_secs(5)).await {
                    Ok(_) => acknowledged.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result?;
    }
    let took = started.elapsed().as_secs_f64();
    let acknowledged = acknowledged.load(Ordering::Relaxed);
    Ok(Ceiling {
        topic: topic.to_string(),
        in_flight,
        seconds: took,
        acknowledged,
        failed: failed.load(Ordering::Relaxed),
        records_per_second: acknowledged as f64 / took,
    })
}
