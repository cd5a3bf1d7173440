//! Hostile input through the running daemon: requests built to cost the daemon CPU, to panic
//! it, or to make it reset connections.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use cartstream::providers::{self, Provider};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    brokers, free_port, shopify_headers, unique_prefix, Http, RoleProcess, TestDaemon, TENANTS,
};

const STANDARD_PATH: &str = "/api/webhooks/standard/int_acme_standard_0000001";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A role of the daemon in a process of its own (so its CPU time and open files are its own),
/// ready to serve.
struct DaemonProcess {
    process: RoleProcess,
    ingress: String,
}

impl DaemonProcess {
    async fn start(dir: &Path, test: &str, role: &str, open_files: Option<u64>) -> Self {
        let (ingress_port, admin_port) = (free_port(), free_port());
        std::fs::write(dir.join("tenants.toml"), TENANTS).unwrap();
        let config_file = dir.join("cartstream.toml");
        let prefix = unique_prefix(test);
        std::fs::write(
            &config_file,
            format!(
                r#"
[kafka]
brokers = "{brokers}"
topic_prefix = "{prefix}"
partitions = 3
[ingress]
listen = "127.0.0.1:{ingress_port}"
max_body_bytes = 2097152
header_read_timeout = "3s"
[admin]
listen = "127.0.0.1:{admin_port}"
[processor]
state_dir = "{state}/processor"
group_id = "{prefix}-processor"
[delivery]
state_dir = "{state}/delivery"
group_id = "{prefix}-delivery"
[tenants]
file = "{tenants}"
[telemetry]
log_filter = "warn"
"#,
                brokers = brokers(),
                state = dir.display(),
                tenants = dir.join("tenants.toml").display(),
            ),
        )
        .unwrap();
        let process = match open_files {
            None => RoleProcess::start(role, &config_file),
            Some(limit) => RoleProcess::start_with_open_files(role, &config_file, limit),
        };
        let ready = format!("http://127.0.0.1:{admin_port}/readyz");
        let started = Instant::now();
        while status_of(&ready).await != Some(200) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the {role} process is not ready after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        DaemonProcess {
            process,
            ingress: format!("http://127.0.0.1:{ingress_port}"),
        }
    }
}

/// The status of a GET, or `None` when nothing answers yet.
async fn status_of(url: &str) -> Option<u16> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client.get(url.parse().ok()?).await.ok()?;
    Some(response.status().as_u16())
}

/// A JSON body of about `bytes` bytes that the standard provider inspects without complaint.
fn big_body(bytes: usize) -> Vec<u8> {
    format!(
        r#"{{"type":"checkout.updated","data":{{"id":"c1","pad":"{}"}}}}"#,
        "a".repeat(bytes)
    )
    .into_bytes()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Standard Webhooks headers that sign `body` correctly.
fn genuine(id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let key = providers::standard::Standard.key(STANDARD_SECRET).unwrap();
    let now = unix_now();
    vec![
        ("content-type", "application/json".to_string()),
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", now.to_string()),
        (
            "webhook-signature",
            providers::standard::sign(&key, id, now, body),
        ),
    ]
}

/// Standard Webhooks headers whose `webhook-signature` lists `entries` well-formed `v1` tags,
/// none of them right.
fn many_signatures(entries: usize) -> Vec<(&'static str, String)> {
    let wrong = format!("v1,{}", BASE64.encode([7u8; 32]));
    vec![
        ("content-type", "application/json".to_string()),
        ("webhook-id", "msg_amplify".to_string()),
        ("webhook-timestamp", unix_now().to_string()),
        ("webhook-signature", vec![wrong; entries].join(" ")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_header_of_thousands_of_entries_costs_no_more_than_one_entry() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = DaemonProcess::start(dir.path(), "hardening-amplify", "ingress", None).await;
    let http = Http::http1();
    let url = format!("{}{STANDARD_PATH}", daemon.ingress);
    let body = big_body(1 << 20);

    // The cost of a forged request with one entry: the body read, parsed and MACed once.
    let before = daemon.process.cpu_seconds();
    for _ in 0..3 {
        let answer = http.post(&url, &many_signatures(1), body.clone()).await;
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    let one_entry = daemon.process.cpu_seconds() - before;

    // 1,200 entries (about what fits in `ingress.max_header_bytes`, 64 KiB): before, each one
    // cost a full HMAC of the 1 MiB body — seconds of CPU per request.
    let before = daemon.process.cpu_seconds();
    for _ in 0..3 {
        let answer = http.post(&url, &many_signatures(1_200), body.clone()).await;
        assert_eq!(answer.status, 401, "{answer:?}");
        assert!(
            String::from_utf8_lossy(&answer.body).contains("too many webhook-signature entries"),
            "{answer:?}"
        );
    }
    let hostile = daemon.process.cpu_seconds() - before;

    // The most entries allowed (8): one HMAC per secret still, whatever their number.
    let before = daemon.process.cpu_seconds();
    for _ in 0..3 {
        let answer = http
            .post(
                &url,
                &many_signatures(providers::standard::MAX_SIGNATURES),
                body.clone(),
            )
            .await;
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    let most_allowed = daemon.process.cpu_seconds() - before;
    println!(
        "CPU for 3 requests of 1 MiB: one entry {one_entry:.2} s, 1,200 entries {hostile:.2} s, {} entries {most_allowed:.2} s",
        providers::standard::MAX_SIGNATURES
    );
    // Generous bounds (CPU time is counted in 10 ms ticks and the process has background work),
    // far below the 1,200 HMACs of 1 MiB each that the hostile header used to cost.
    let bound = 3.0 * one_entry + 0.5;
    assert!(hostile <= bound, "{hostile:.2} s > {bound:.2} s");
    assert!(most_allowed <= bound, "{most_allowed:.2} s > {bound:.2} s");

    // And a genuine delivery is still accepted.
    let body = big_body(64 << 10);
    let answer = http.post(&url, &genuine("msg_genuine", &body), body).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[cfg(feature = "fault-injection")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_answering_is_a_500_and_the_daemon_serves_on() {
    let daemon = TestDaemon::builder("hardening-panic").start().await;
    let http = Http::http1();
    let body =
        crate::support::fixture("shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json");
    let url = daemon.url("/api/webhooks/shopify");
    let signed = |id: &str| shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, id);

    let mut faulty = signed("wh-panic-1");
    faulty.push(("x-cartstream-inject-panic", "1".to_string()));
    for _ in 0..3 {
        let answer = http.post(&url, &faulty, body.clone()).await;
        assert_eq!(answer.status, 500, "{answer:?}");
        assert_eq!(
            answer.json(),
            serde_json::json!({"error": "internal error"}),
            "{answer:?}"
        );
        assert_eq!(answer.headers["content-type"], "application/json");
    }
    // The same connection pool, the same process: a good webhook is still answered.
    let answer = http
        .post(&url, &signed("wh-after-panic"), body.clone())
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");

    let metrics = http.get(&daemon.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.lines().any(
            |line| line.starts_with("cartstream_ingress_requests_total{")
                && line.contains("status=\"500\"")
                && line.ends_with(" 3")
        ),
        "{text}"
    );
    daemon.stop().await;
}

/// Opens `count` connections to `addr` that send `first` (perhaps nothing) and then wait.
async fn hold_connections(
    addr: std::net::SocketAddr,
    count: usize,
    first: &[u8],
) -> Vec<TcpStream> {
    hold_connections_from("127.0.0.1", addr, count, first).await
}

/// A connection to `addr` from the loopback address `source` (127.0.0.0/8 is all loopback:
/// each address is a client of its own to the daemon's limits per address).
async fn connect_from(source: &str, addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().unwrap())?;
    socket.connect(addr).await
}

/// [`hold_connections`] from the loopback address `source`.
async fn hold_connections_from(
    source: &str,
    addr: std::net::SocketAddr,
    count: usize,
    first: &[u8],
) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = connect_from(source, addr).await.unwrap();
        if !first.is_empty() {
            stream.write_all(first).await.unwrap();
        }
        held.push(stream);
    }
    held
}

/// How many of `streams` the server has closed (a read ends or fails at once).
async fn closed_by_server(streams: &mut [TcpStream]) -> usize {
    let mut closed = 0;
    for stream in streams.iter_mut() {
        let mut buffer = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_millis(20), stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => continue, // an answer (408, 503, a GOAWAY) before the close
                Err(_) => break,       // still open
            }
        }
    }
    closed
}

fn shopify_checkout() -> Vec<u8> {
    crate::support::fixture("shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json")
}

async fn post_checkout(http: &Http, url: &str, id: &str) -> (u16, Duration) {
    let body = shopify_checkout();
    let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, id);
    let started = Instant::now();
    let answer = http.post(url, &headers, body).await;
    (answer.status.as_u16(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_and_do_not_delay_a_good_webhook() {
    let daemon = TestDaemon::builder("hardening-idle")
        .config(|config| {
            config.ingress.header_read_timeout = Duration::from_secs(2);
            config.ingress.idle_timeout = Duration::from_secs(3);
            // The timeouts under test, not the cap per address: all 2,800 are held.
            config.ingress.max_connections_per_peer = 0;
        })
        .start()
        .await;
    let http = Http::http1();
    let url = daemon.url("/api/webhooks/shopify");
    let (status, usual) = post_checkout(&http, &url, "wh-before-flood").await;
    assert_eq!(status, 200);

    let addr = daemon.ingress_addr();
    let mut silent = hold_connections(addr, 2_000, b"").await;
    let mut half_preface = hold_connections(addr, 500, b"PRI * HTTP/2.0\r\n").await;
    let mut half_head = hold_connections(
        addr,
        300,
        b"POST /api/webhooks/shopify HTTP/1.1\r\nHost: x\r\n",
    )
    .await;
    // An HTTP/2 connection that made one request and then says nothing more.
    let h2_io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut h2, h2_connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), h2_io)
            .await
            .unwrap();
    let h2_ended = tokio::spawn(h2_connection);
    let response = h2
        .send_request(
            http::Request::get(daemon.url("/healthz"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // While 2,800 connections are held open, a good webhook is answered as usual.
    let (status, during) = post_checkout(&http, &url, "wh-during-flood").await;
    assert_eq!(status, 200);
    println!("a webhook took {usual:?} before the flood, {during:?} during it");
    assert!(
        during < usual + Duration::from_secs(1),
        "{during:?} during the flood against {usual:?} before"
    );

    // Past the timeouts, the server has closed every one of them.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        closed_by_server(&mut silent).await,
        silent.len(),
        "silent connections"
    );
    assert_eq!(
        closed_by_server(&mut half_preface).await,
        half_preface.len(),
        "half HTTP/2 prefaces"
    );
    assert_eq!(
        closed_by_server(&mut half_head).await,
        half_head.len(),
        "half HTTP/1 heads"
    );
    tokio::time::timeout(Duration::from_secs(5), h2_ended)
        .await
        .expect("the idle HTTP/2 connection is closed by the server")
        .unwrap()
        .ok();

    let (status, _) = post_checkout(&http, &url, "wh-after-flood").await;
    assert_eq!(status, 200);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_at_start_under_a_1024_file_limit_stops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = DaemonProcess::start(dir.path(), "hardening-flood", "all", Some(1024)).await;
    let addr: std::net::SocketAddr = daemon
        .ingress
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    // More connections than the process may open files.
    let mut flood = Vec::new();
    for _ in 0..1_100 {
        match TcpStream::connect(addr).await {
            Ok(stream) => flood.push(stream),
            Err(error) => panic!("connect failed: {error}"),
        }
    }
    // Past the cap, connections were answered 503 and closed at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut refused = 0;
    for stream in &flood {
        let mut buffer = [0u8; 256];
        if matches!(stream.try_read(&mut buffer), Ok(n) if buffer[..n].starts_with(b"HTTP/1.1 503"))
        {
            refused += 1;
        }
    }
    println!("{refused} of 1,100 connections were answered 503 at once");
    assert!(refused > 0, "no connection was refused past the cap");
    // The roles keep their files: the process is running, and a good webhook is accepted once
    // the held connections timed out (header_read_timeout 3 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        daemon.process.running(),
        "the daemon exited under the flood"
    );
    let http = Http::http1();
    let (status, _) = post_checkout(
        &http,
        &format!("{}/api/webhooks/shopify", daemon.ingress),
        "wh-after-start-flood",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        daemon.process.running(),
        "the daemon exited under the flood"
    );
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_near_max_body_bytes_fits_the_topics_the_daemon_creates() {
    // 2 MiB bodies allowed: twice what a broker accepts per record by default.
    let daemon = TestDaemon::builder("hardening-big-body")
        .config(|config| config.ingress.max_body_bytes = 2 << 20)
        .start()
        .await;
    let http = Http::http1();
    let body = big_body((2 << 20) - 4096);
    let answer = http
        .post(
            &daemon.url(STANDARD_PATH),
            &genuine("msg_big", &body),
            body.clone(),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let records = crate::support::read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value, body);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_larger_than_an_existing_topic_accepts_is_413_not_a_retry() {
    // The inbound topic exists already, created with a broker's default record limit.
    let prefix = unique_prefix("hardening-small-topic");
    let mut config = cartstream::config::Config::default();
    config.kafka.brokers = brokers();
    config.kafka.topic_prefix = prefix.clone();
    config.kafka.partitions = 3;
    cartstream::kafka::admin::ensure_topics(
        &config.kafka,
        &config.kafka.topics().all(),
        &[],
        1_048_588,
    )
    .await
    .unwrap();
    let daemon = TestDaemon::builder("hardening-small-topic")
        .config(|config| {
            config.kafka.topic_prefix = prefix;
            config.ingress.max_body_bytes = 2 << 20;
        })
        .start()
        .await;
    let http = Http::http1();
    let body = big_body(3 << 19);
    let answer = http
        .post(
            &daemon.url(STANDARD_PATH),
            &genuine("msg_too_big", &body),
            body,
        )
        .await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(
        answer.json(),
        serde_json::json!({"error": "body larger than the Kafka topic accepts"})
    );
    // The producer is not stuck: a normal delivery right after is accepted.
    let small = big_body(1024);
    let answer = http
        .post(
            &daemon.url(STANDARD_PATH),
            &genuine("msg_small", &small),
            small,
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_pipe_carry_no_colour_codes() {
    use std::io::BufRead;

    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("cartstream.toml");
    std::fs::write(dir.path().join("tenants.toml"), TENANTS).unwrap();
    std::fs::write(
        &config_file,
        format!(
            "[kafka]\nbrokers = \"{}\"\ntopic_prefix = \"{}\"\n[ingress]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[tenants]\nfile = \"{}\"\n[telemetry]\nlog_filter = \"info\"\n",
            brokers(),
            unique_prefix("hardening-ansi"),
            dir.path().join("tenants.toml").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cartstream"))
        .args(["ingress", "--config"])
        .arg(&config_file)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let started = line.contains("cartstream started");
            seen.push(line);
            if started {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(Duration::from_secs(60), lines)
        .await
        .expect("the daemon starts and logs it")
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.iter().any(|l| l.contains("cartstream started")),
        "{lines:?}"
    );
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "a colour code in {line:?}");
    }
}

/// Bodies are charged to the buffer budget by the bytes that arrived: slow senders that did send
/// most of their bodies hold the budget until their read timeout, and then give it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_cannot_hold_more_memory_than_the_buffer_budget() {
    let daemon = TestDaemon::builder("hardening-buffered")
        .config(|config| {
            config.ingress.max_body_bytes = 16 * 1024;
            config.ingress.max_buffered_bytes = 64 * 1024;
            config.ingress.max_unauthenticated_per_peer = 1;
            config.ingress.max_unauthenticated_per_connection = 1;
            config.ingress.min_body_bytes_per_second = 0;
            config.ingress.body_read_timeout = Duration::from_secs(3);
        })
        .start()
        .await;
    let http = Http::http1();
    let url = daemon.url("/api/webhooks/shopify");
    let (status, _) = post_checkout(&http, &url, "wh-before-slow").await;
    assert_eq!(status, 200);

    // Four clients announce 16 KiB bodies and send 15 KiB of them: 60 of the 64 KiB.
    let mut head = b"POST /api/webhooks/shopify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 16384\r\n\r\n".to_vec();
    head.extend(std::iter::repeat_n(b' ', 15 * 1024));
    let mut slow = Vec::new();
    for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        slow.extend(hold_connections_from(source, daemon.ingress_addr(), 1, &head).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = post_checkout(&http, &url, "wh-during-slow").await;
    assert_eq!(status, 503, "a 5 KB body does not fit in the 4 KiB left");

    // Their read timeout ends them (408) and gives the budget back.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, _) = post_checkout(&http, &url, "wh-after-slow").await;
    assert_eq!(status, 200);
    drop(slow);
    daemon.stop().await;
}

/// Requests that declare 1 MiB bodies and send nothing — on 256 HTTP/1 connections from one
/// address and as 256 streams of one HTTP/2 connection from another, renewed as the daemon
/// ends them — cost the default limits nothing a genuine webhook needs: on a connection of its
/// own it is answered 200 within a second, again and again. (Charged by declared length, the
/// 256 MiB budget was theirs, and every genuine webhook was answered 503.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_declared_and_never_sent_starve_no_genuine_webhook() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let daemon = TestDaemon::builder("hardening-starve").start().await;
    let addr = daemon.ingress_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let head = b"POST /api/webhooks/shopify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1048576\r\n\r\n";

    // HTTP/1: 256 connections, each re-opened as soon as the daemon answers or closes it.
    let h1 = {
        let (stop, answered) = (stop.clone(), answered.clone());
        tokio::spawn(async move {
            let mut held = hold_connections_from("127.0.0.2", addr, 256, head).await;
            while !stop.load(Ordering::Relaxed) {
                for stream in held.iter_mut() {
                    let mut buffer = [0u8; 512];
                    match stream.try_read(&mut buffer) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        _ => {}
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut renewed) = connect_from("127.0.0.2", addr).await {
                        if renewed.write_all(head).await.is_ok() {
                            *stream = renewed;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // HTTP/2 over cleartext: one connection, 256 streams whose bodies never come, each
    // re-sent when answered.
    let h2 = {
        let (stop, answered) = (stop.clone(), answered.clone());
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(connect_from("127.0.0.3", addr).await.unwrap());
            let (sender, connection) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let mut streams = tokio::task::JoinSet::new();
            for _ in 0..256 {
                let (mut sender, stop, answered) = (sender.clone(), stop.clone(), answered.clone());
                streams.spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let never =
                            http_body_util::StreamBody::new(futures_util::stream::pending::<
                                Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
                            >());
                        let request =
                            http::Request::post(format!("http://{addr}/api/webhooks/shopify"))
                                .header("content-type", "application/json")
                                .header("content-length", "1048576")
                                .body(never)
                                .unwrap();
                        if sender.ready().await.is_err() {
                            return;
                        }
                        let _ = sender.send_request(request).await;
                        answered.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                });
            }
            while streams.join_next().await.is_some() {}
        })
    };

    tokio::time::sleep(Duration::from_millis(500)).await;
    let http = Http::http1();
    let url = daemon.url("/api/webhooks/shopify");
    let mut took = Vec::new();
    for round in 0..10 {
        let (status, elapsed) = post_checkout(&http, &url, &format!("wh-starve-{round}")).await;
        assert_eq!(status, 200, "round {round}, after {elapsed:?}");
        took.push(elapsed);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    println!(
        "genuine webhooks took {took:?}; the daemon answered or closed {} held requests meanwhile",
        answered.load(Ordering::Relaxed)
    );
    assert!(took.iter().all(|t| *t < Duration::from_secs(1)), "{took:?}");
    assert!(
        answered.load(Ordering::Relaxed) > 0,
        "the held requests were renewed at least once"
    );
    h1.abort();
    h2.abort();
    daemon.stop().await;
}

/// One address cannot hold what the ingress's memory allows: past its share of connections a
/// new one from it is answered 503 and closed at once while other addresses are served, and a
/// request head larger than `max_header_bytes` is refused (431) instead of buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_only_its_share_of_connections_and_header_buffers() {
    let daemon = TestDaemon::builder("hardening-per-peer")
        .config(|config| config.ingress.max_connections_per_peer = 8)
        .start()
        .await;
    let addr = daemon.ingress_addr();
    let mut held = hold_connections_from("127.0.0.2", addr, 8, b"").await;
    let mut ninth = connect_from("127.0.0.2", addr).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), ninth.read_to_end(&mut answer))
        .await
        .expect("the ninth connection is answered and closed at once")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    assert_eq!(closed_by_server(&mut held).await, 0, "the eight are kept");
    // Another address is served meanwhile.
    let http = Http::http1();
    let url = daemon.url("/api/webhooks/shopify");
    let (status, _) = post_checkout(&http, &url, "wh-other-address").await;
    assert_eq!(status, 200);
    // Its slots come back when its connections close.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = hold_connections_from("127.0.0.2", addr, 8, b"").await;
    drop(again);

    // A head past max_header_bytes (64 KiB by default; HTTP/1 checks it between reads, so a
    // head may run one read past it) is not buffered: 431. Before, up to 408 KiB were.
    let body = shopify_checkout();
    let mut headers = shopify_headers(
        "acme-shopify-secret",
        "acme.myshopify.com",
        &body,
        "wh-big-head",
    );
    headers.push(("x-padding", "p".repeat(200 * 1024)));
    let answer = http.post(&url, &headers, body).await;
    assert_eq!(answer.status, 431, "{answer:?}");
    daemon.stop().await;
}

/// The admin port's 64 connections are no pool one peer can drain: holding every connection it
/// may from one address leaves the probes and the scrape from another address answered. (Before,
/// one address holding 64 idle connections made every probe a 503 and took the pod out of
/// service.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_holding_admin_connections_does_not_fail_the_probes() {
    let daemon = TestDaemon::builder("hardening-admin-peer").start().await;
    let admin: std::net::SocketAddr = daemon.running.admin_addr;
    let mut held = hold_connections_from("127.0.0.2", admin, 64, b"").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = Http::http1();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = http.get(&daemon.admin_url(path)).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
    }
    let refused = closed_by_server(&mut held).await;
    assert_eq!(
        refused, 56,
        "past 8 from one address, the admin port refuses"
    );
    drop(held);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_limit_a_webhook_is_answered_503_with_retry_after_at_once() {
    let daemon = TestDaemon::builder("hardening-in-flight")
        .config(|config| {
            config.ingress.max_in_flight_requests = 2;
            config.ingress.retry_after_seconds = 4;
            config.ingress.body_read_timeout = Duration::from_secs(3);
        })
        .start()
        .await;
    let http = Http::http1();
    let url = daemon.url("/api/webhooks/shopify");

    // Two requests whose bodies never come hold both in-flight slots until their read timeout.
    let head = b"POST /api/webhooks/shopify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
    let slow = hold_connections(daemon.ingress_addr(), 2, head).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = shopify_checkout();
    let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, "wh-3");
    let started = Instant::now();
    let answer = http.post(&url, &headers, body).await;
    let took = started.elapsed();
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers["retry-after"], "4");
    assert_eq!(
        answer.json(),
        serde_json::json!({"error": "overloaded: try again later"})
    );
    assert!(took < Duration::from_secs(1), "answered after {took:?}");

    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, _) = post_checkout(&http, &url, "wh-after").await;
    assert_eq!(status, 200, "the slots are free again");
    drop(slow);
    daemon.stop().await;
}

/// Sends `request` on a new connection and reads the answer until the daemon closes it.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    let _ = read.await.expect("the daemon answers and closes");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hyper_refuses_itself_are_answered_json_too() {
    let daemon = TestDaemon::builder("hardening-json-errors").start().await;
    let addr = daemon.ingress_addr();
    // More header fields than hyper parses (100): small enough to be read whole.
    let fields: String = (0..120).map(|i| format!("x-field-{i}: {i}\r\n")).collect();
    let huge = format!(
        "POST /api/webhooks/shopify HTTP/1.1\r\nhost: x\r\n{fields}content-length: 2\r\n\r\n{{}}"
    );
    let cases = [
        (huge.into_bytes(), "431", "request header fields too large"),
        (
            b"POST /api/webhooks/shopify HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n".to_vec(),
            "400",
            "the request could not be parsed as HTTP",
        ),
        (
            b"NOT AN HTTP REQUEST\r\n\r\n".to_vec(),
            "400",
            "the request could not be parsed as HTTP",
        ),
    ];
    for (request, status, error) in cases {
        let answer = raw_exchange(addr, &request).await;
        let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("\r\ncontent-type: application/json"),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(body, serde_json::json!({ "error": error }));
    }
    // The daemon's own answers are untouched.
    let http = Http::http1();
    let (status, _) = post_checkout(&http, &daemon.url("/api/webhooks/shopify"), "wh-ok").await;
    assert_eq!(status, 200);
    daemon.stop().await;
}
