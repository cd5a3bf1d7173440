//! The broker's own ceiling for the ingress's job: a plain idempotent `acks=all` producer that
//! keeps IN_FLIGHT records outstanding (as that many concurrent webhook requests would), each one
//! the record the ingress would produce for the load run's request — same key, same body, same
//! metadata headers — for SECONDS. No HTTP, no verification. Prints records/s.
//!
//! ```text
//! cargo run --release --example plain_producer -- BROKERS TOPIC BODY_FILE [IN_FLIGHT] [SECONDS]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cartstream::kafka::inbound;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, body_file, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: plain_producer BROKERS TOPIC BODY_FILE [IN_FLIGHT] [SECONDS]");
    };
    let in_flight: usize = rest.first().map_or(Ok(64), |s| s.parse())?;
    let seconds: u64 = rest.get(1).map_or(Ok(10), |s| s.parse())?;
    let body = Arc::new(std::fs::read(body_file)?);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "5000")
        .create()?;
    let acknowledged = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let clock = cartstream::clock::Clock::System;
    let mut workers = Vec::new();
    for worker in 0..in_flight {
        let (producer, topic, body) = (producer.clone(), topic.clone(), body.clone());
        let (acknowledged, failed) = (acknowledged.clone(), failed.clone());
        let clock = clock.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let delivery_id = format!("plain-{worker}-{n}");
                let headers = inbound::Metadata {
                    provider: "shopify",
                    tenant: "acme",
                    event_type: Some("checkouts/create"),
                    delivery_id: &delivery_id,
                    received_at: clock.now(),
                    content_type: Some("application/json"),
                }
                .headers();
                let record = FutureRecord::to(&topic)
                    .key("acme")
                    .payload(body.as_slice())
                    .headers(headers)
                    .timestamp(clock.now_millis());
                match producer.send(record, Duration::from_secs(5)).await {
                    Ok(_) => acknowledged.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for task in workers {
        task.await?;
    }
    let took = started.elapsed().as_secs_f64();
    let acknowledged = acknowledged.load(Ordering::Relaxed);
    println!(
        "plain producer: {acknowledged} records acknowledged, {} failed, in {took:.1} s: {:.0} records/s",
        failed.load(Ordering::Relaxed),
        acknowledged as f64 / took
    );
    Ok(())
}
