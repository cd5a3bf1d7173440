//! A secured cluster, as managed Kafka services run them: a SASL_SSL listener (SCRAM-SHA-512,
//! a certificate from a CA made for the test), with the daemon's credentials read from the
//! environment and a file through `[kafka.client]`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cartstream::app::Roles;
use cartstream::config::Config;

use crate::support::{free_port, read_topic, shopify_headers, Http, PrivateBroker, TestDaemon};

const USER: &str = "cartstream";
const PASSWORD: &str = "scram-password-for-the-test-0001";

/// A broker with a plaintext listener (for the test's own reader) and a SASL_SSL one.
fn secured_broker() -> (PrivateBroker, u16) {
    let port = free_port();
    let broker = PrivateBroker::start_with(&[
        ("KAFKA_SASL_SSL_PORT", &port.to_string()),
        ("KAFKA_SCRAM_USER", USER),
        ("KAFKA_SCRAM_PASSWORD", PASSWORD),
    ]);
    (broker, port)
}

/// The `[kafka.client]` of a configuration file, loaded as the daemon loads it: the user name
/// from the environment, the password from a file beside the configuration.
fn client_settings(broker: &PrivateBroker, password: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kafka-password"), format!("{password}\n")).unwrap();
    let file = dir.path().join("cartstream.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[kafka.client]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = {{ env = "TEST_KAFKA_USER" }}
"sasl.password" = {{ file = "kafka-password" }}
"ssl.ca.location" = "{ca}"
"#,
            ca = broker.dir().join("tls/ca.pem").display()
        ),
    )
    .unwrap();
    let env = HashMap::from([("TEST_KAFKA_USER".to_string(), USER.to_string())]);
    Config::load(Some(&file), &env).expect("the configuration is valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_produces_through_a_sasl_ssl_listener() {
    let (broker, sasl_port) = secured_broker();
    let loaded = client_settings(&broker, PASSWORD);
    let daemon = TestDaemon::builder("sasl")
        .brokers(&format!("127.0.0.1:{sasl_port}"))
        .roles(Roles::ALL)
        .config(|c| c.kafka.client = loaded.kafka.client.clone())
        .start()
        .await;
    let http = Http::http1();
    let ready = http.get(&daemon.admin_url("/readyz")).await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);

    let body = br#"{"id":"sasl-1","token":"sasl-checkout","email":"a@example.com"}"#.to_vec();
    let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, "sasl-1");
    let answer = http
        .post(&daemon.url("/api/webhooks/shopify"), &headers, body)
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);

    // Read back through the plaintext listener: the record went through the secured one.
    let records = read_topic(&broker.brokers(), &daemon.topics.inbound);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].headers["cartstream-delivery-id"], "sasl-1");
    // The processor's consumer and outbox go through the secured listener too.
    let events = daemon.topics.events.clone();
    let plain = broker.brokers();
    crate::support::eventually("the processor's event", Duration::from_secs(30), || {
        (read_topic(&plain, &events).len() == 1).then_some(())
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_error_at_start_and_readyz_says_so() {
    let (broker, sasl_port) = secured_broker();
    let wrong = client_settings(&broker, "not-the-password");

    // With topic creation, start-up fails at once and says why.
    let started = Instant::now();
    let failed = TestDaemon::builder("sasl-wrong")
        .brokers(&format!("127.0.0.1:{sasl_port}"))
        .config(|c| c.kafka.client = wrong.kafka.client.clone())
        .try_start()
        .await;
    let error = format!("{:#}", failed.err().expect("start-up fails"));
    assert!(
        error.contains("kafka refused the credentials"),
        "start-up error: {error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?} to fail",
        started.elapsed()
    );

    // Without it (topics made by the operator), the daemon runs and is not ready, with the reason.
    let daemon = TestDaemon::builder("sasl-wrong")
        .brokers(&format!("127.0.0.1:{sasl_port}"))
        .config(|c| {
            c.kafka.client = wrong.kafka.client.clone();
            c.kafka.create_topics = false;
        })
        .start()
        .await;
    let http = Http::http1();
    let deadline = Instant::now() + Duration::from_secs(15);
    let ready = loop {
        let answer = http.get(&daemon.admin_url("/readyz")).await;
        let body = String::from_utf8_lossy(&answer.body).to_string();
        if answer.status == 503 && body.contains("kafka refused the credentials") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz answers {} {body}",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(ready.contains("not ready"), "{ready}");
    daemon.stop().await;
}
