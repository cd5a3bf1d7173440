//! The broker goes away and comes back; the daemon never claims what Kafka did not acknowledge.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use cartstream::app::Roles;

use crate::support::{eventually, read_topic, shopify_headers, Http, PrivateBroker, TestDaemon};

const ACK_TIMEOUT: Duration = Duration::from_secs(2);

async fn post(http: &Http, daemon: &TestDaemon, id: &str) -> (u16, Duration) {
    let body = format!(r#"{{"id":"{id}"}}"#).into_bytes();
    let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, id);
    let started = Instant::now();
    let answer = http
        .post(&daemon.url("/api/webhooks/shopify"), &headers, body)
        .await;
    (answer.status.as_u16(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_never_yields_200_and_recovers_without_restart() {
    let mut broker = PrivateBroker::start();
    let daemon = TestDaemon::builder("outage")
        .brokers(&broker.brokers())
        .config(|c| c.ingress.ack_timeout = ACK_TIMEOUT)
        .start()
        .await;
    let http = Http::http1();
    let mut acknowledged = HashSet::new();

    let id = until_accepted(&http, &daemon, "before").await;
    acknowledged.insert(id);

    broker.kill();
    let mut during = Vec::new();
    for i in 0..20 {
        let (http, id) = (http.clone(), format!("during-{i}"));
        let daemon_url = daemon.url("/api/webhooks/shopify");
        during.push(tokio::spawn(async move {
            let body = format!(r#"{{"id":"{id}"}}"#).into_bytes();
            let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, &id);
            let started = Instant::now();
            let answer = http.post(&daemon_url, &headers, body).await;
            (
                answer.status.as_u16(),
                started.elapsed(),
                answer.headers.get("retry-after").is_some(),
            )
        }));
    }
    for task in during {
        let (status, took, retry_after) = task.await.unwrap();
        assert!(
            status == 503 || status == 504,
            "answered {status} while the broker was down"
        );
        assert!(
            took <= ACK_TIMEOUT + Duration::from_millis(1500),
            "answered after {took:?}"
        );
        if status == 503 {
            assert!(retry_after, "503 carries Retry-After");
        }
    }
    let ready = http.get(&daemon.admin_url("/readyz")).await;
    assert_eq!(ready.status, 503, "not ready while Kafka is unreachable");

    broker.restart();
    let id = until_accepted(&http, &daemon, "after").await;
    acknowledged.insert(id);
    for i in 0..10 {
        let id = format!("recovered-{i}");
        let (status, _) = post(&http, &daemon, &id).await;
        assert_eq!(status, 200, "{id}");
        acknowledged.insert(id);
    }

    let records = read_topic(&daemon.brokers, &daemon.topics.inbound);
    let on_topic: HashSet<_> = records
        .iter()
        .map(|r| r.headers["cartstream-delivery-id"].clone())
        .collect();
    let missing: Vec<_> = acknowledged.difference(&on_topic).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not on the topic: {missing:?}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_broker_down_webhooks_are_answered_503_at_once() {
    let mut broker = PrivateBroker::start();
    let daemon = TestDaemon::builder("outage-fast")
        .brokers(&broker.brokers())
        .config(|c| c.ingress.ack_timeout = Duration::from_secs(5))
        .start()
        .await;
    let http = Http::http1();
    until_accepted(&http, &daemon, "before").await;

    broker.kill();
    // librdkafka notices the lost connection within moments; give it a few seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut fast = 0;
    for i in 0..20 {
        let id = format!("down-{i}");
        let body = format!(r#"{{"id":"{id}"}}"#).into_bytes();
        let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, &id);
        let started = Instant::now();
        let answer = http
            .post(&daemon.url("/api/webhooks/shopify"), &headers, body)
            .await;
        let took = started.elapsed();
        let status = answer.status.as_u16();
        assert!(
            status == 503 || status == 504,
            "answered {status} while down"
        );
        if status == 503 && took < Duration::from_millis(500) {
            assert!(answer.headers.get("retry-after").is_some(), "{answer:?}");
            fast += 1;
        }
    }
    // One request a second still goes through to find out whether the broker is back (and
    // waits its ack timeout); the others are refused at once instead of held 5 s each.
    assert!(fast >= 15, "only {fast} of 20 answered 503 at once");

    broker.restart();
    until_accepted(&http, &daemon, "after").await;
    let (status, took) = post(&http, &daemon, "after-recovery").await;
    assert_eq!(status, 200, "answered after {took:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_is_answered_504_before_shopify_gives_up_at_five_seconds() {
    let broker = PrivateBroker::start();
    let daemon = TestDaemon::builder("outage-deadline")
        .brokers(&broker.brokers())
        // Longer than Shopify waits: the provider's own deadline must cut it shorter.
        .config(|c| c.ingress.ack_timeout = Duration::from_secs(20))
        .start()
        .await;
    let http = Http::http1();
    until_accepted(&http, &daemon, "before").await;

    broker.pause();
    let (status, took) = post(&http, &daemon, "frozen").await;
    broker.resume();
    assert_eq!(status, 504, "after {took:?}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(5),
        "answered after {took:?}: Shopify cuts the request at 5 s"
    );
    until_accepted(&http, &daemon, "after").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_a_hung_broker_ends_within_the_shutdown_timeout() {
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
    let broker = PrivateBroker::start();
    let daemon = TestDaemon::builder("hung-stop")
        .brokers(&broker.brokers())
        .roles(Roles::ALL)
        .config(|c| {
            c.kafka.shutdown_timeout = SHUTDOWN_TIMEOUT;
            c.ingress.ack_timeout = ACK_TIMEOUT;
        })
        .start()
        .await;
    let http = Http::http1();
    for i in 0..20 {
        let (status, _) = post(&http, &daemon, &format!("hung-{i}")).await;
        assert_eq!(status, 200);
    }
    // The processor is in its group and has published (and committed) what it read.
    let (brokers, events) = (daemon.brokers.clone(), daemon.topics.events.clone());
    eventually("the processor's events", Duration::from_secs(30), || {
        (read_topic(&brokers, &events).len() == 20).then_some(())
    })
    .await;

    broker.pause();
    let started = Instant::now();
    daemon.running.shutdown();
    let stopped = tokio::time::timeout(Duration::from_secs(30), daemon.running.wait()).await;
    let took = started.elapsed();
    broker.resume();
    assert!(stopped.is_ok(), "still stopping 30 s after the signal");
    // The drain is immediate (nothing in flight); the processor and the delivery worker give
    // Kafka the shutdown timeout, the producer has nothing left to flush.
    assert!(
        took <= SHUTDOWN_TIMEOUT + Duration::from_secs(2),
        "the stop took {took:?}"
    );
}

/// Posts fresh deliveries until one is accepted (at most 60 s); only 503 and 504 may come before.
async fn until_accepted(http: &Http, daemon: &TestDaemon, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    for attempt in 0.. {
        let id = format!("{prefix}-{attempt}");
        match post(http, daemon, &id).await.0 {
            200 => return id,
            503 | 504 => {}
            other => panic!("answered {other} while waiting for Kafka"),
        }
        assert!(
            Instant::now() < deadline,
            "{prefix}: no delivery accepted within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight() {
    let daemon = TestDaemon::builder("drain").start().await;
    let body = br#"{"drain":true}"#;
    let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", body, "drain-1");
    let mut head = format!(
        "POST /api/webhooks/shopify HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(daemon.ingress_addr())
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Shutdown begins while the request is still being received.
    daemon.running.shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(&body[5..]).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the in-flight request is answered")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // New connections are refused once draining began.
    assert!(tokio::net::TcpStream::connect(daemon.ingress_addr())
        .await
        .is_err());
    let (brokers, topic) = (daemon.brokers.clone(), daemon.topics.inbound.clone());
    daemon.running.wait().await.unwrap();
    let records = read_topic(&brokers, &topic);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].headers["cartstream-delivery-id"], "drain-1");
}

/// A broker that stops answering without closing its connections (frozen, overloaded) is not
/// known to be down: the webhook waits for the acknowledgement as long as the ack timeout, and
/// is answered 504, which platforms retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_answering_gives_504_after_the_ack_timeout() {
    let broker = PrivateBroker::start();
    let daemon = TestDaemon::builder("outage-frozen")
        .brokers(&broker.brokers())
        .config(|c| c.ingress.ack_timeout = ACK_TIMEOUT)
        .start()
        .await;
    let http = Http::http1();
    until_accepted(&http, &daemon, "before").await;

    broker.pause();
    let body = br#"{"id":"frozen"}"#.to_vec();
    let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, "frozen");
    let started = Instant::now();
    let answer = http
        .post(&daemon.url("/api/webhooks/shopify"), &headers, body)
        .await;
    let took = started.elapsed();
    broker.resume();
    assert_eq!(answer.status, 504, "{answer:?}");
    assert_eq!(
        answer.json(),
        serde_json::json!({"error": "Kafka did not acknowledge in time: try again"})
    );
    assert!(
        took >= ACK_TIMEOUT && took < ACK_TIMEOUT + Duration::from_secs(1),
        "answered after {took:?}"
    );
    until_accepted(&http, &daemon, "after").await;
    daemon.stop().await;
}
