//! Measures the delivery role.
//!
//! `throughput` (needs a broker): runs the delivery role in this process against a fast local
//! receiver (hyper, answers 200 at once), produces N transitions for one tenant with one
//! endpoint — as fast as it can, or `--rate` per second — and reports deliveries per second
//! (first produce to last request received) and the latency from a transition's produce to its
//! first attempt arriving at the receiver (p50, p99, max). Unpaced, that latency is mostly the
//! backlog's queueing; paced below the worker's rate, it is the pipeline's own. Also the process's
//! CPU per delivery over the same span — an upper bound on the delivery role's, since the
//! receiver and the producer of the transitions run in this process too. Every transition must
//! arrive (the tool exits non-zero otherwise).
//!
//! `pending` (no broker): writes N jobs, all due in the future, to a fresh `delivery::store`,
//! closes and reopens it (the restart cost: the store counts its pending jobs on open), and
//! reports bytes on disk and resident memory per million pending retries.
//!
//! ```text
//! cargo run --release --example delivery_bench -- throughput --brokers 127.0.0.1:9092 --transitions 20000
//! cargo run --release --example delivery_bench -- throughput --transitions 10000 --rate 500
//! cargo run --release --example delivery_bench -- pending --jobs 1000000
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use cartstream::app::{self, Roles};
use cartstream::clock::Clock;
use cartstream::config::Config;
use cartstream::delivery::store::{Change, Job, Store};
use cartstream::tenants::Registry;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio::net::TcpListener;
use tokio::time::Instant;

const USAGE: &str = "usage: delivery_bench throughput [--brokers HOST:PORT] [--transitions N] [--rate PER_SECOND]\n       delivery_bench pending [--jobs N]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let number = |name: &str, default: usize| -> anyhow::Result<usize> {
        match flag(name) {
            Some(text) => text.replace('_', "").parse().context(USAGE),
            None => Ok(default),
        }
    };
    match args.first().map(String::as_str) {
        Some("throughput") => {
            let brokers = flag("--brokers").unwrap_or_else(|| "127.0.0.1:9092".to_string());
            let rate = number("--rate", 0)?;
            throughput(&brokers, number("--transitions", 20_000)?, rate).await
        }
        Some("pending") => pending(number("--jobs", 1_000_000)?),
        _ => bail!(USAGE),
    }
}

/// `VmRSS` of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn pending(jobs: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let before = rss();
    let started = Instant::now();
    {
        let mut store = Store::open(dir.path())?;
        let body = r#"{"event":"abandoned_candidate","id":"00000000000000000000000000000000","occurred_at":"2026-11-24T00:00:00.000Z","tenant_id":"tenant-00","data":{"cart":"cart-0000000","from":"active","to":"abandoned","recovered":false,"customer":{"name":"Bob Example","email":"bob@example.com","phone":"+15024592181"},"cart_value":"379.69","currency":"USD","item_count":3,"recovery_url":"https://shop.example/recover/cart-0000000","provider":"shopify","cart_token":"cart-0000000","checkout_token":"checkout-0000000","order_id":null}}"#;
        let mut batch = Vec::with_capacity(1_000);
        let mut seen = Vec::with_capacity(1_000);
        for i in 0..jobs {
            let job = Job {
                transition_id: format!("{:032x}", i as u128 * 2_654_435_761),
                tenant: format!("tenant-{:02}", i % 100),
                endpoint: "crm".to_string(),
                event: "abandoned_candidate".to_string(),
                cart: format!("cart-{i:07}"),
                body: body.to_string(),
                occurred_ms: 1_790_000_000_000,
                created_ms: 1_790_000_000_000,
                attempts: 1,
                // Spread over the next hour.
                next_ms: 1_790_000_060_000 + (i as i64 * 7_919) % 3_600_000,
                last_status: Some(503),
                last_error: None,
                superseded: false,
            };
            seen.push(job.key());
            batch.push(Change::Schedule(job));
            if batch.len() == 1_000 {
                store.write(std::mem::take(&mut batch), &seen, Vec::new(), 0)?;
                seen.clear();
            }
        }
        store.write(batch, &seen, Vec::new(), 0)?;
        ensure!(
            store.pending() == jobs as u64,
            "pending {}",
            store.pending()
        );
    }
    let load = started.elapsed();
    let loaded_rss = rss();
    let reopened = Instant::now();
    let mut store = Store::open(dir.path())?;
    let reopen = reopened.elapsed();
    ensure!(
        store.pending() == jobs as u64,
        "pending after reopen {}",
        store.pending()
    );
    let first = store.due(1_790_000_060_000 + 3_600_000, 10, 100, |_| false)?;
    ensure!(first.len() == 10);
    let disk = dir_bytes(dir.path());
    let per_million = |bytes: u64| bytes as f64 * 1e6 / jobs as f64;
    println!("pending retries: {jobs}");
    println!(
        "write: {:.1} s ({:.0} jobs/s, batches of 1,000)",
        load.as_secs_f64(),
        jobs as f64 / load.as_secs_f64()
    );
    println!(
        "disk after reopen: {:.0} bytes/job, {:.2} GB per million",
        disk as f64 / jobs as f64,
        per_million(disk) / 1e9
    );
    println!(
        "RSS: {:.0} MiB before, {:.0} MiB after writing ({:.0} MiB per million)",
        before as f64 / 1048576.0,
        loaded_rss as f64 / 1048576.0,
        per_million(loaded_rss.saturating_sub(before)) / 1048576.0
    );
    println!(
        "reopen (restart, counting pending jobs): {:.2} s",
        reopen.as_secs_f64()
    );
    Ok(())
}

async fn throughput(brokers: &str, transitions: usize, rate: usize) -> anyhow::Result<()> {
    // A receiver that answers 200 at once and notes when each transition arrived.
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    let seen = arrived.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let id = request
                            .headers()
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let _ = request.into_body().collect().await;
                        seen.lock().unwrap().entry(id).or_insert_with(Instant::now);
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let state = tempfile::tempdir()?;
    let mut config = Config::default();
    let nanos = Clock::System.now_millis();
    config.kafka.brokers = brokers.to_string();
    config.kafka.topic_prefix = format!("bench-delivery-{nanos}");
    config.kafka.partitions = 3;
    config.admin.listen = "127.0.0.1:0".parse()?;
    config.delivery.state_dir = state.path().to_path_buf();
    config.delivery.group_id = format!("bench-delivery-{nanos}");
    config.delivery.allow_private_networks = vec!["127.0.0.0/8".to_string()];
    config.delivery.allow_plain_http = true;
    config.delivery.tick = Duration::from_millis(50);
    let tenants = format!(
        "[[tenant]]\nid = \"acme\"\n  [[tenant.endpoint]]\n  id = \"crm\"\n  url = \"{url}\"\n  secret = \"whsec_YWNtZS1jcm0tZGV2LXNpZ25pbmcta2V5LTAwMDAx\"\n"
    );
    let registry = Registry::from_toml(&tenants, Path::new("."), &HashMap::new())
        .map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let topic = config.kafka.topics().transitions;
    let running = app::start(config, registry, Clock::System, Roles::DELIVERY).await?;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()?;
    let mut produced: HashMap<String, Instant> = HashMap::with_capacity(transitions);
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(transitions);
    for i in 0..transitions {
        let id = format!("{:032x}", i as u128 * 2_654_435_761 + 1);
        let value = serde_json::json!({
            "schema": "cartstream.transition.v1", "id": id, "tenant_id": "acme",
            "cart": format!("cart-{i}"), "from": "active", "to": "abandoned",
            "bucket": "abandoned_candidate", "recovered": false,
            "at": humantime::format_rfc3339_millis(Clock::System.now()).to_string(),
            "event": {"provider": "shopify", "customer": {"email": "bob@example.com"},
                      "cart_value": "379.69", "currency": "USD",
                      "recovery_url": format!("https://shop.example/recover/cart-{i}")}
        })
        .to_string();
        let key = format!("tenant-{}", i % 16);
        produced.insert(id, Instant::now());
        if rate > 0 {
            // Paced: transition i leaves at i / rate seconds.
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
        let record = FutureRecord::to(&topic).key(&key).payload(&value);
        match producer.send_result(record) {
            Ok(delivery) => pending.push(delivery),
            Err((e, _)) => bail!("producing: {e}"),
        }
        if pending.len() >= 1_000 || (rate > 0 && pending.len() >= 10) {
            for delivery in pending.drain(..) {
                let _ = delivery.await?;
            }
        }
    }
    for delivery in pending.drain(..) {
        let _ = delivery.await?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let count = arrived.lock().unwrap().len();
        eprintln!("received {count}/{transitions}");
        if count >= transitions {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "only {count} of {transitions} arrived"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu = cpu_seconds()? - cpu_before;
    let arrivals = arrived.lock().unwrap().clone();
    let last = arrivals.values().max().copied().context("no arrivals")?;
    let mut latencies: Vec<f64> = produced
        .iter()
        .filter_map(|(id, at)| Some((*arrivals.get(id)? - *at).as_secs_f64() * 1000.0))
        .collect();
    ensure!(
        latencies.len() == transitions,
        "some transitions never arrived"
    );
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let seconds = (last - started).as_secs_f64();
    println!("transitions: {transitions}, one endpoint on 127.0.0.1 answering 200");
    println!(
        "deliveries/s: {:.0} ({seconds:.1} s from the first produce to the last arrival)",
        transitions as f64 / seconds
    );
    println!(
        "produce → first attempt received: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        quantile(0.5),
        quantile(0.99),
        quantile(1.0)
    );
    println!(
        "process CPU per delivery: {:.1} µs (the delivery role, the receiver and the transitions' producer together)",
        cpu * 1e6 / transitions as f64
    );
    running.shutdown();
    running.wait().await?;
    Ok(())
}

/// CPU seconds (user and system) this process has used so far, from `/proc/self/stat`.
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("/proc/self/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("/proc/self/stat")?.parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15 of the whole line, 11 and 12 after the name.
    Ok((ticks(11)? + ticks(12)?) / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}
