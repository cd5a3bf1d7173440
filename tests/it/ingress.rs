//! The ingress end to end: real HTTP in, real Kafka records out.

use std::collections::HashSet;
use std::time::Duration;

use cartstream::providers::{self, Provider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{fixture, read_topic, shopify_headers, Http, TestDaemon};

fn standard_headers(secret: &str, id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let key = providers::standard::Standard.key(secret).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
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

fn salla_headers(secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_string()),
        ("x-salla-security-strategy", "Signature".to_string()),
        (
            "x-salla-signature",
            providers::salla::sign(secret.as_bytes(), body),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_of_each_provider_land_byte_for_byte() {
    let daemon = TestDaemon::builder("each-provider").start().await;
    let http = Http::http1();

    let shopify_body = fixture("shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json");
    let answer = http
        .post(
            &daemon.url("/api/webhooks/shopify"),
            &shopify_headers(
                "acme-shopify-secret",
                "acme.myshopify.com",
                &shopify_body,
                "wh-shopify-1",
            ),
            shopify_body.clone(),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json(), serde_json::json!({"ok": true}));

    let salla_body = fixture("salla/docs_abandoned_cart.json");
    let answer = http
        .post(
            &daemon.url("/api/webhooks/salla"),
            &salla_headers("globex-salla-secret", &salla_body),
            salla_body.clone(),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");

    let standard_body = br#"{"type":"checkout.updated","data":{"id":"co_1"}}"#.to_vec();
    let answer = http
        .post(
            &daemon.url("/api/webhooks/standard/int_acme_standard_0000001"),
            &standard_headers(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_std_1",
                &standard_body,
            ),
            standard_body.clone(),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");

    let records = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(records.len(), 3, "{records:?}");
    let find = |provider: &str| {
        records
            .iter()
            .find(|r| r.headers["cartstream-provider"] == provider)
            .unwrap_or_else(|| panic!("no {provider} record"))
    };

    let shopify = find("shopify");
    assert_eq!(
        shopify.value, shopify_body,
        "the value is the body byte for byte"
    );
    assert_eq!(shopify.key.as_deref(), Some(&b"acme"[..]));
    assert_eq!(shopify.headers["cartstream-tenant"], "acme");
    assert_eq!(shopify.headers["cartstream-event-type"], "checkouts/create");
    assert_eq!(shopify.headers["cartstream-delivery-id"], "wh-shopify-1");
    assert_eq!(
        shopify.headers["cartstream-schema"],
        "cartstream.inbound.v1"
    );
    assert_eq!(shopify.headers["content-type"], "application/json");
    assert!(humantime::parse_rfc3339(&shopify.headers["cartstream-received-at"]).is_ok());

    let salla = find("salla");
    assert_eq!(salla.value, salla_body);
    assert_eq!(salla.headers["cartstream-tenant"], "globex");
    assert_eq!(salla.headers["cartstream-event-type"], "abandoned.cart");
    assert_eq!(
        salla.headers["cartstream-delivery-id"],
        providers::body_hash_id(&salla_body)
    );

    let standard = find("standard");
    assert_eq!(standard.value, standard_body);
    assert_eq!(standard.headers["cartstream-tenant"], "acme");
    assert_eq!(
        standard.headers["cartstream-event-type"],
        "checkout.updated"
    );
    assert_eq!(standard.headers["cartstream-delivery-id"], "msg_std_1");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_deliveries_are_401_and_produce_nothing() {
    let daemon = TestDaemon::builder("forged").start().await;
    let http = Http::http1();
    let body = fixture("shopify/derived_orders_create_body_from_sdkjs_2024-04.json");
    let url = daemon.url("/api/webhooks/shopify");

    let mut wrong_signature = shopify_headers(
        "acme-shopify-secret",
        "acme.myshopify.com",
        &body,
        "forged-1",
    );
    wrong_signature[1].1 = providers::shopify::sign(b"not-the-secret", &body);
    let other_tenants_secret = shopify_headers(
        "globex-shopify-secret",
        "acme.myshopify.com",
        &body,
        "forged-2",
    );
    let unknown_shop = shopify_headers(
        "acme-shopify-secret",
        "nobody.myshopify.com",
        &body,
        "forged-3",
    );
    let mut no_signature = shopify_headers(
        "acme-shopify-secret",
        "acme.myshopify.com",
        &body,
        "forged-4",
    );
    no_signature.remove(1);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let signed_for_other_body = shopify_headers(
        "acme-shopify-secret",
        "acme.myshopify.com",
        &body,
        "forged-5",
    );

    let mut answers = vec![
        http.post(&url, &wrong_signature, body.clone()).await,
        http.post(&url, &other_tenants_secret, body.clone()).await,
        http.post(&url, &unknown_shop, body.clone()).await,
        http.post(&url, &no_signature, body.clone()).await,
        http.post(&url, &signed_for_other_body, tampered).await,
    ];
    // Salla: globex's merchant, signed with acme's Shopify secret.
    let salla_body = fixture("salla/docs_abandoned_cart.json");
    answers.push(
        http.post(
            &daemon.url("/api/webhooks/salla"),
            &salla_headers("acme-shopify-secret", &salla_body),
            salla_body,
        )
        .await,
    );
    // Standard Webhooks: globex's integration key, signed with acme's secret.
    let std_body = br#"{"type":"x"}"#.to_vec();
    answers.push(
        http.post(
            &daemon.url("/api/webhooks/standard/int_globex_standard_00001"),
            &standard_headers(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_forged",
                &std_body,
            ),
            std_body.clone(),
        )
        .await,
    );
    // An integration key that exists, used with another provider's slug.
    answers.push(
        http.post(
            &daemon.url("/api/webhooks/shopify/int_acme_standard_0000001"),
            &shopify_headers(
                "acme-shopify-secret",
                "acme.myshopify.com",
                &body,
                "forged-6",
            ),
            body.clone(),
        )
        .await,
    );
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 401, "forgery {i}: {answer:?}");
        assert!(answer.json()["error"].is_string());
    }
    // An unknown shop and a wrong signature get the same answer: nothing tells them apart.
    assert_eq!(answers[0].body, answers[2].body);

    // One genuine delivery afterwards: it must be the only record on the topic.
    let genuine = http
        .post(
            &url,
            &shopify_headers(
                "acme-shopify-secret",
                "acme.myshopify.com",
                &body,
                "genuine",
            ),
            body.clone(),
        )
        .await;
    assert_eq!(genuine.status, 200);
    let records = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(
        records.len(),
        1,
        "only the genuine delivery is produced: {records:?}"
    );
    assert_eq!(records[0].headers["cartstream-delivery-id"], "genuine");

    let metrics = http.get(&daemon.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("cartstream_ingress_signature_failures_total{provider=\"shopify\"}"),
        "{text}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_unprefixed_headers_and_token_strategy_are_accepted() {
    let daemon = TestDaemon::builder("rotation").start().await;
    let http = Http::http1();
    let body = br#"{"id":1,"token":"abc"}"#.to_vec();

    let previous = shopify_headers(
        "acme-shopify-old-secret",
        "acme.myshopify.com",
        &body,
        "rot-1",
    );
    assert_eq!(
        http.post(
            &daemon.url("/api/webhooks/shopify"),
            &previous,
            body.clone()
        )
        .await
        .status,
        200
    );

    let unprefixed: Vec<(&str, String)> = vec![
        (
            "shopify-hmac-sha256",
            providers::shopify::sign(b"acme-shopify-secret", &body),
        ),
        ("shopify-shop-domain", "ACME.myshopify.com".to_string()),
        ("shopify-topic", "carts/update".to_string()),
        ("shopify-event-id", "rot-2".to_string()),
    ];
    assert_eq!(
        http.post(
            &daemon.url("/api/webhooks/shopify"),
            &unprefixed,
            body.clone()
        )
        .await
        .status,
        200
    );

    let salla_body = fixture("salla/docs_abandoned_cart.json");
    let token = vec![
        ("x-salla-security-strategy", "Token".to_string()),
        ("authorization", "Bearer globex-salla-secret".to_string()),
    ];
    assert_eq!(
        http.post(
            &daemon.url("/api/webhooks/salla"),
            &token,
            salla_body.clone()
        )
        .await
        .status,
        200
    );
    let wrong_token = vec![
        ("x-salla-security-strategy", "Token".to_string()),
        ("authorization", "Bearer acme-shopify-secret".to_string()),
    ];
    assert_eq!(
        http.post(&daemon.url("/api/webhooks/salla"), &wrong_token, salla_body)
            .await
            .status,
        401
    );

    let records = read_topic(&daemon.brokers, &daemon.topics.inbound);
    let ids: HashSet<_> = records
        .iter()
        .map(|r| r.headers["cartstream-delivery-id"].clone())
        .collect();
    assert_eq!(records.len(), 3);
    assert!(ids.contains("rot-1") && ids.contains("rot-2"), "{ids:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_statuses() {
    let daemon = TestDaemon::builder("statuses")
        .config(|c| {
            c.ingress.max_body_bytes = 1024;
        })
        .start()
        .await;
    let http = Http::http1();
    let small = b"{}".to_vec();

    let unknown_provider = http
        .post(&daemon.url("/api/webhooks/nosuch"), &[], small.clone())
        .await;
    assert_eq!(unknown_provider.status, 404);
    assert!(unknown_provider.json()["error"].is_string());
    assert_eq!(
        http.post(&daemon.url("/somewhere"), &[], small.clone())
            .await
            .status,
        404
    );
    let get = http.get(&daemon.url("/api/webhooks/shopify")).await;
    assert_eq!(get.status, 405);
    assert_eq!(get.headers["allow"], "POST");
    // The health routes answer GET and HEAD, as documented (docs/openapi-ingress.json).
    for path in ["/healthz", "/readyz"] {
        for method in ["POST", "PUT", "DELETE", "PATCH", "TRACE"] {
            let answer = http.send(method, &daemon.url(path), &[], Vec::new()).await;
            assert_eq!(answer.status, 405, "{method} {path}");
            assert_eq!(answer.headers["allow"], "GET, HEAD", "{method} {path}");
            assert!(answer.json()["error"].is_string(), "{method} {path}");
        }
        let head = http.send("HEAD", &daemon.url(path), &[], Vec::new()).await;
        assert_eq!(head.status, 200, "HEAD {path}");
    }

    let big = vec![b' '; 2048];
    let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", &big, "big");
    let too_large = http
        .post(&daemon.url("/api/webhooks/shopify"), &headers, big)
        .await;
    assert_eq!(too_large.status, 413, "{too_large:?}");
    assert!(too_large.json()["error"].as_str().unwrap().contains("1024"));

    // No shop domain and no integration key: nothing names the tenant.
    let anonymous = vec![(
        "x-shopify-hmac-sha256",
        providers::shopify::sign(b"x", &small),
    )];
    assert_eq!(
        http.post(
            &daemon.url("/api/webhooks/shopify"),
            &anonymous,
            small.clone()
        )
        .await
        .status,
        400
    );
    // Salla needs a JSON body to find the merchant.
    let not_json = salla_headers("globex-salla-secret", b"merchant=1");
    assert_eq!(
        http.post(
            &daemon.url("/api/webhooks/salla"),
            &not_json,
            &b"merchant=1"[..]
        )
        .await
        .status,
        400
    );
    // Standard Webhooks with a stale timestamp.
    let body = br#"{"type":"x"}"#.to_vec();
    let key = providers::standard::Standard
        .key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    let stale = vec![
        ("webhook-id", "msg_stale".to_string()),
        ("webhook-timestamp", "1614265330".to_string()),
        (
            "webhook-signature",
            providers::standard::sign(&key, "msg_stale", 1_614_265_330, &body),
        ),
    ];
    let answer = http
        .post(
            &daemon.url("/api/webhooks/standard/int_acme_standard_0000001"),
            &stale,
            body.clone(),
        )
        .await;
    assert_eq!(answer.status, 401, "{answer:?}");
    // A timestamp past the end of time: refused like a stale one, not a panic.
    let end_of_time = vec![
        ("webhook-id", "msg_end".to_string()),
        ("webhook-timestamp", u64::MAX.to_string()),
        (
            "webhook-signature",
            providers::standard::sign(&key, "msg_end", u64::MAX, &body),
        ),
    ];
    let answer = http
        .post(
            &daemon.url("/api/webhooks/standard/int_acme_standard_0000001"),
            &end_of_time,
            body,
        )
        .await;
    assert_eq!(answer.status, 401, "{answer:?}");

    let records = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert!(records.is_empty(), "{records:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_mode_answers_503_with_retry_after() {
    let daemon = TestDaemon::builder("maintenance")
        .config(|c| c.ingress.maintenance = true)
        .start()
        .await;
    let http = Http::http1();
    let body = b"{}".to_vec();
    let answer = http
        .post(
            &daemon.url("/api/webhooks/shopify"),
            &shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, "m-1"),
            body,
        )
        .await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers["retry-after"], "5");
    assert!(answer.json()["error"]
        .as_str()
        .unwrap()
        .contains("maintenance"));
    // Health endpoints keep answering.
    assert_eq!(http.get(&daemon.url("/healthz")).await.status, 200);
    assert!(read_topic(&daemon.brokers, &daemon.topics.inbound).is_empty());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_rate_limit_answers_429_with_retry_after() {
    let daemon = TestDaemon::builder("ratelimit")
        .config(|c| {
            c.ingress.tenant_rate_limit_per_second = 1;
            c.ingress.tenant_rate_limit_burst = 2;
        })
        .start()
        .await;
    let http = Http::http1();
    let mut statuses = Vec::new();
    for i in 0..4 {
        let body = format!(r#"{{"n":{i}}}"#).into_bytes();
        let headers = shopify_headers(
            "acme-shopify-secret",
            "acme.myshopify.com",
            &body,
            &format!("rl-{i}"),
        );
        let answer = http
            .post(&daemon.url("/api/webhooks/shopify"), &headers, body)
            .await;
        if answer.status == 429 {
            assert!(
                answer.headers["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
                    >= 1
            );
        }
        statuses.push(answer.status.as_u16());
    }
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    // Another tenant has its own budget.
    let body = b"{}".to_vec();
    let headers = shopify_headers(
        "globex-shopify-secret",
        "globex.myshopify.com",
        &body,
        "rl-globex",
    );
    assert_eq!(
        http.post(&daemon.url("/api/webhooks/shopify"), &headers, body)
            .await
            .status,
        200
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_are_served() {
    let daemon = TestDaemon::builder("health").start().await;
    let http = Http::http1();
    for url in [daemon.url("/healthz"), daemon.admin_url("/healthz")] {
        assert_eq!(http.get(&url).await.json()["status"], "ok");
    }
    for url in [daemon.url("/readyz"), daemon.admin_url("/readyz")] {
        let answer = http.get(&url).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let body = b"{}".to_vec();
    let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, "h-1");
    assert_eq!(
        http.post(&daemon.url("/api/webhooks/shopify"), &headers, body)
            .await
            .status,
        200
    );
    let metrics = http.get(&daemon.admin_url("/metrics")).await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body);
    for needle in [
        "cartstream_ingress_requests_total{provider=\"shopify\",status=\"200\"}",
        "cartstream_ingress_request_duration_seconds_bucket",
        "cartstream_kafka_ack_duration_seconds_bucket",
        "cartstream_ingress_in_flight_requests",
        "cartstream_kafka_producer_queue_messages",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cleartext_is_served() {
    let daemon = TestDaemon::builder("h2c").start().await;
    let http = Http::h2c();
    let body = b"{\"h2\":true}".to_vec();
    let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, "h2-1");
    let answer = http
        .post(&daemon.url("/api/webhooks/shopify"), &headers, body.clone())
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let records = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value, body);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_cut_off() {
    let daemon = TestDaemon::builder("slow-body")
        .config(|c| c.ingress.body_read_timeout = Duration::from_millis(300))
        .start()
        .await;
    let mut stream = tokio::net::TcpStream::connect(daemon.ingress_addr())
        .await
        .unwrap();
    let head = "POST /api/webhooks/shopify HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"partial\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("the daemon answers without waiting for the rest of the body")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_2000_concurrent_requests_is_acknowledged_exactly_once() {
    const REQUESTS: usize = 2000;
    let daemon = TestDaemon::builder("burst").start().await;
    let http = Http::http1();
    let body = fixture("shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json");
    let url = daemon.url("/api/webhooks/shopify");
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(REQUESTS));
    let mut tasks = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let (http, url, body, barrier) = (http.clone(), url.clone(), body.clone(), barrier.clone());
        let (secret, shop) = if i % 2 == 0 {
            ("acme-shopify-secret", "acme.myshopify.com")
        } else {
            ("globex-shopify-secret", "globex.myshopify.com")
        };
        let headers = shopify_headers(secret, shop, &body, &format!("burst-{i}"));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            http.post(&url, &headers, body).await.status.as_u16()
        }));
    }
    let mut statuses = Vec::with_capacity(REQUESTS);
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let not_ok: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        not_ok.is_empty(),
        "{} answers were not 200: {:?}",
        not_ok.len(),
        &not_ok[..not_ok.len().min(10)]
    );

    let records = read_topic(&daemon.brokers, &daemon.topics.inbound);
    let ids: HashSet<_> = records
        .iter()
        .map(|r| r.headers["cartstream-delivery-id"].clone())
        .collect();
    assert_eq!(
        ids.len(),
        REQUESTS,
        "every acknowledged delivery is on the topic"
    );
    assert_eq!(records.len(), REQUESTS, "and none twice");
    assert!(records.iter().all(|r| r.value == body));
    // Keyed by tenant: each tenant's records share one partition.
    for tenant in ["acme", "globex"] {
        let partitions: HashSet<_> = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(tenant.as_bytes()))
            .map(|r| r.partition)
            .collect();
        assert_eq!(partitions.len(), 1, "{tenant}: {partitions:?}");
    }
    daemon.stop().await;
}

#[test]
fn check_config_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(
        &tenants,
        "[[tenant]]\nid = \"a\"\n[[tenant.integration]]\nprovider = \"nosuch\"\nsecret = \"x\"\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            "[ingress]\nmax_body_bytes = \"big\"\nack_timeout = \"never\"\n[kafka]\npartitions = 0\n[tenants]\nfile = {:?}\n",
            tenants.display().to_string()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cartstream"))
        .args(["check-config", "--config"])
        .arg(&config)
        .env("CARTSTREAM__ADMIN__LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "ingress.max_body_bytes",
        "ingress.ack_timeout",
        "kafka.partitions",
        "admin.listen",
        "unknown provider",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected:?} missing from:\n{stderr}"
        );
    }
    assert!(stderr.contains("(5 problems)"), "{stderr}");

    // The example configuration names its tenants file relative to its own folder, so it
    // checks the same from the repository root and from anywhere else.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let elsewhere = tempfile::tempdir().unwrap();
    for folder in [
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        elsewhere.path(),
    ] {
        let ok = std::process::Command::new(env!("CARGO_BIN_EXE_cartstream"))
            .arg("check-config")
            .arg("--config")
            .arg(&example)
            .current_dir(folder)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "from {}: {}",
            folder.display(),
            String::from_utf8_lossy(&ok.stderr)
        );
        let stdout = String::from_utf8_lossy(&ok.stdout);
        assert!(stdout.contains("configuration ok: 2 tenants"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopify_event_headers_without_the_x_prefix_carry_the_delivery_id() {
    let daemon = TestDaemon::builder("shopify-unprefixed").start().await;
    let http = Http::http1();
    let body = fixture("shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json");
    // Shopify's newer event deliveries name their headers without `X-`.
    let headers: Vec<(&str, String)> =
        shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, "unused")
            .into_iter()
            .filter_map(|(name, value)| match name {
                "x-shopify-webhook-id" => None,
                name => Some((name.strip_prefix("x-").unwrap_or(name), value)),
            })
            .chain([("shopify-webhook-id", "wh-unprefixed-1".to_string())])
            .collect();
    let answer = http
        .post(&daemon.url("/api/webhooks/shopify"), &headers, body)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let records = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].headers["cartstream-delivery-id"],
        "wh-unprefixed-1"
    );
    daemon.stop().await;
}
