//! No acknowledged delivery is lost in silence (SPEC §2): an authentic delivery answered 200 is
//! either tracked as what it is, or visibly a platform's test; anything else is refused so that
//! the platform sees the error and retries. Through the running daemon, on Apache Kafka.

use std::time::{Duration, UNIX_EPOCH};

use cartstream::app::Roles;
use cartstream::clock::Clock;
use cartstream::providers;
use serde_json::{json, Value};

use crate::delivery::Receiver;
use crate::support::{
    credentials_command, eventually, fixture, read_json, read_json_eventually, read_topic,
    shopify_headers, Http, TestDaemon,
};

/// The manual clock's start: half a minute after the `event_time` of FlexyPe's documented
/// ACR (2026-05-07T10:00:00Z), when FlexyPe would have sent it.
const T0: u64 = 1_778_148_030;
const WAIT: Duration = Duration::from_secs(30);
const ENDPOINT_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

fn flexype_headers(secret: &str, event_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_string()),
        ("x-flexype-authorization", secret.to_string()),
        ("x-webhook-version", "2026-05".to_string()),
        ("x-event-id", event_id.to_string()),
    ]
}

/// The receipts of `receiver` once there are `n`.
async fn webhooks(receiver: &Receiver, n: usize) -> Vec<Value> {
    eventually(&format!("{n} webhooks"), WAIT, || {
        let received = receiver.received();
        (received.len() >= n).then(|| {
            received
                .iter()
                .map(|r| serde_json::from_slice(&r.body).unwrap())
                .collect()
        })
    })
    .await
}

/// FlexyPe's ACR exactly as its 2026-05 reference shows it (no checkout or session id: the
/// session is in `checkout_url`), from a store whose integration is configured with its Shopify
/// domain while the body names the store by id first: the cart is tracked, abandoned and
/// delivered, and a Shopify order by the same shopper recovers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_documented_flexype_acr_is_delivered_as_an_abandonment_and_an_order_recovers_it() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let tenants = format!(
        r#"
[[tenant]]
id = "hooli"
  [[tenant.integration]]
  provider = "flexype"
  flexype_store = "My-Store.myshopify.com "
  secret = "hooli-flexype-secret"

  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "hooli.myshopify.com"
  secret = "hooli-shopify-secret"

  [[tenant.endpoint]]
  id = "crm"
  url = "{}"
  secret = "{ENDPOINT_SECRET}"
"#,
        receiver.url()
    );
    let daemon = TestDaemon::builder("flexype-documented-acr")
        .roles(Roles::ALL)
        .clock(clock.clone())
        .tenants(&tenants)
        .config(|config| {
            config.delivery.allow_private_networks = vec!["127.0.0.0/8".to_string()];
            config.ingress.ack_timeout = Duration::from_secs(20);
        })
        .start()
        .await;
    let http = Http::http1();
    let acr = fixture("synthetic/flexype_acr_2026-05.json");
    let answer = http
        .post(
            &daemon.url("/api/webhooks/flexype"),
            &flexype_headers("hooli-flexype-secret", "evt_123456789"),
            acr,
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let inbound = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(inbound.len(), 1);
    assert_eq!(
        inbound[0].headers.get("cartstream-tenant").unwrap(),
        "hooli"
    );
    assert!(
        !inbound[0].headers.contains_key("cartstream-test"),
        "a real delivery, not a test: {:?}",
        inbound[0].headers
    );

    // FlexyPe has waited 15 minutes already: the abandonment follows at once.
    read_json_eventually(&daemon.brokers, &daemon.topics.events, 1, WAIT).await;
    clock.advance(Duration::from_secs(1));
    let received = webhooks(&receiver, 1).await;
    assert_eq!(received[0]["event"], "abandoned_candidate", "{received:?}");
    assert_eq!(received[0]["tenant_id"], "hooli");
    let data = &received[0]["data"];
    assert_eq!(
        data["checkout_token"], "331d47df-8461-495b-9c4f-27ed915d9c8e",
        "{data}"
    );
    assert_eq!(
        data["recovery_url"],
        "https://my-store.myshopify.com/?flx_s=331d47df-8461-495b-9c4f-27ed915d9c8e"
    );
    assert_eq!(data["customer"]["email"], "john.doe@example.com");

    // The shopper orders on the store itself: the order names the shopper, not the session.
    let order = serde_json::to_vec(&json!({
        "id": 7001,
        "email": "John.Doe@example.com",
        "total_price": "1260.00",
        "currency": "INR",
        "updated_at": rfc3339(clock.now_millis()),
    }))
    .unwrap();
    let mut headers = shopify_headers(
        "hooli-shopify-secret",
        "hooli.myshopify.com",
        &order,
        "w-order-1",
    );
    for (name, value) in headers.iter_mut() {
        if *name == "x-shopify-topic" {
            *value = "orders/create".to_string();
        }
    }
    let answer = http
        .post(&daemon.url("/api/webhooks/shopify"), &headers, order)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let received = webhooks(&receiver, 2).await;
    let recovery = received
        .iter()
        .find(|w| w["event"] == "order_completed")
        .unwrap_or_else(|| panic!("no recovery among {received:?}"));
    assert_eq!(recovery["data"]["to"], "recovered", "{recovery}");
    assert_eq!(recovery["data"]["recovered"], true);
    assert_eq!(recovery["data"]["cart"], received[0]["data"]["cart"]);
    daemon.stop().await;
}

const KEYED_TENANTS: &str = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "flexype"
  flexype_store = "store_acme"
  integration_key = "int_acme_flexype_0000001"
  secret = "acme-flexype-secret"
"#;

fn flexype_checkout(store: &str, event_type: &str, session: &str) -> Vec<u8> {
    json!({
        "event_time": "2026-05-07T10:00:00Z",
        "event_type": event_type,
        "store": {"id": store},
        "payload": {
            "checkout_url": format!("https://acme.example/?flx_s={session}"),
            "total_payable": 10,
            "user": {"email": "shopper@example.com"}
        }
    })
    .to_string()
    .into_bytes()
}

/// Behind an integration key, a store no integration has is a platform's test only when the
/// delivery says so or names the store of the vendor's documented samples, and each such
/// acceptance is counted; a merchant's second store is refused (401) instead of answered 200
/// and dropped; a clue with stray whitespace is the integration's own store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_marked_or_documented_samples_are_taken_as_tests_behind_an_integration_key() {
    let daemon = TestDaemon::builder("clue-mismatch")
        .roles(Roles::INGRESS)
        .tenants(KEYED_TENANTS)
        .start()
        .await;
    let http = Http::http1();
    let keyed = daemon.url("/api/webhooks/flexype/int_acme_flexype_0000001");
    let post = |event_id: &str, body: Vec<u8>| {
        let (http, url) = (http.clone(), keyed.clone());
        let headers = flexype_headers("acme-flexype-secret", event_id);
        async move { http.post(&url, &headers, body).await }
    };

    // A second store of the merchant's, with the integration's secret: refused, not swallowed.
    let second_store = post(
        "evt-1",
        flexype_checkout("store_second", "ACR_CHECKOUT", "s-1"),
    )
    .await;
    assert_eq!(second_store.status, 401, "{second_store:?}");
    // The integration's own store, with whitespace around the id: a real delivery.
    let spaced = post(
        "evt-2",
        flexype_checkout(" store_acme\t", "ACR_CHECKOUT", "s-2"),
    )
    .await;
    assert_eq!(spaced.status, 200, "{spaced:?}");
    // The store of FlexyPe's documented samples, as the Test button sends it: a test.
    let sample = post("evt-3", flexype_checkout("store_01", "ACR_CHECKOUT", "s-3")).await;
    assert_eq!(sample.status, 200, "{sample:?}");
    // An unknown store whose event says it is a test: a test.
    let marked = post("evt-4", flexype_checkout("store_x", "TEST", "s-4")).await;
    assert_eq!(marked.status, 200, "{marked:?}");

    let inbound = read_topic(&daemon.brokers, &daemon.topics.inbound);
    let marks: Vec<(String, Option<String>)> = inbound
        .iter()
        .map(|r| {
            (
                r.headers["cartstream-delivery-id"].clone(),
                r.headers.get("cartstream-test").cloned(),
            )
        })
        .collect();
    assert_eq!(
        marks,
        vec![
            ("evt-2".to_string(), None),
            ("evt-3".to_string(), Some("true".to_string())),
            ("evt-4".to_string(), Some("true".to_string())),
        ]
    );
    let scrape = http.get(&daemon.admin_url("/metrics")).await;
    let scrape = String::from_utf8_lossy(&scrape.body);
    assert!(
        scrape.contains("cartstream_ingress_clue_mismatches_total{provider=\"flexype\"} 2"),
        "{scrape}"
    );
    daemon.stop().await;
}

const SHOPIMIND_TENANTS: &str = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopimind"
  installation_id = "pg-1"
  secret = "acme-shopimind-secret"
"#;

fn shopimind_headers(secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    vec![
        ("content-type", "application/json".to_string()),
        ("x-shopimind-timestamp", now.to_string()),
        (
            "x-shopimind-signature",
            providers::shopimind::sign(secret.as_bytes(), now, body),
        ),
    ]
}

/// ShopiMind sends an installation's access token once, at install, possibly before anyone has
/// typed the installation into a tenant: signed with the app's secret, the install is answered
/// `{"success":true}` and its token kept sealed under the owner `unclaimed`, readable with
/// `cartstream credentials --unclaimed`. Nothing else of an unknown installation is let in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopimind_install_for_an_unknown_installation_keeps_its_token_unclaimed() {
    let daemon = TestDaemon::builder("shopimind-unclaimed")
        .roles(Roles::INGRESS)
        .tenants(SHOPIMIND_TENANTS)
        .config(|config| {
            config.ingress.shopimind_app_secret = Some(cartstream::kafka::Property::Text(
                "shopimind-app-secret".to_string(),
            ));
        })
        .start()
        .await;
    let http = Http::http1();
    let url = daemon.url("/api/webhooks/shopimind");
    let install = br#"{"event":"integration.installed","installation_id":"pg-new","access_token":"int_NEW_TOKEN","shop_domain":"new.shop"}"#;
    let answer = http
        .post(
            &url,
            &shopimind_headers("shopimind-app-secret", install),
            install.to_vec(),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json(), json!({"success": true}));

    // Not the app's secret, or not an install: refused as before.
    let forged = http
        .post(
            &url,
            &shopimind_headers("someone-else", install),
            install.to_vec(),
        )
        .await;
    assert_eq!(forged.status, 401, "{forged:?}");
    let activate =
        br#"{"event":"integration.activated","installation_id":"pg-new","configs":{"k":"v"}}"#;
    let unclaimed_activate = http
        .post(
            &url,
            &shopimind_headers("shopimind-app-secret", activate),
            activate.to_vec(),
        )
        .await;
    assert_eq!(unclaimed_activate.status, 401, "{unclaimed_activate:?}");

    // The inbound record says whose it is, and carries no token in clear.
    let inbound = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(inbound.len(), 1, "{inbound:?}");
    assert_eq!(inbound[0].headers["cartstream-tenant"], "unclaimed");
    assert!(!String::from_utf8_lossy(&inbound[0].value).contains("int_NEW_TOKEN"));

    // The operator reads the token back.
    let (_dir, config) = daemon.credentials_config();
    let lines: Vec<Value> = credentials_command(&config, &["--unclaimed"])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| (
                l["tenant"].as_str().unwrap(),
                l["installation"].as_str().unwrap(),
                l["field"].as_str().unwrap(),
                l["value"].clone()
            ))
            .collect::<Vec<_>>(),
        vec![(
            "unclaimed",
            "pg-new",
            "access_token",
            json!("int_NEW_TOKEN")
        )]
    );
    assert!(read_json(&daemon.brokers, &daemon.topics.events).is_empty());
    daemon.stop().await;
}
