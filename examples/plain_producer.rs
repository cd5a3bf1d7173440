//! The broker's own ceiling for the ingress's job: a plain idempotent `acks=all` producer that
//! keeps `--in-flight` records outstanding (as that many concurrent webhook requests would),
//! each one the same body and key the load run sends, for `--seconds`. Prints records/s.
//!
//! ```text
//! cargo run --release --example plain_producer -- BROKERS TOPIC BODY_FILE [IN_FLIGHT] [SECONDS]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    let mut workers = Vec::new();
    for _ in 0..in_flight {
        let (producer, topic, body) = (producer.clone(), topic.clone(), body.clone());
        let (acknowledged, failed) = (acknowledged.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let record = FutureRecord::to(&topic)
                    .key("acme")
                    .payload(body.as_slice());
                match producer.send(record, Duration::from_secs(5)).await {
                    Ok(_) => acknowledged.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for worker in workers {
        worker.await?;
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
