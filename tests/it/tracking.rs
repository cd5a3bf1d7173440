//! Storefront signals through a running daemon and a real broker: `POST /api/tracking/cart`
//! and its preflight as a browser sends them, the checks of key, origin, body and rates, the
//! record on the inbound topic; then, with the clock under the test's control, what the
//! processor makes of a signal — one abandonment after silence, one cart and one episode when
//! the platform's checkout names the same cart.

use std::time::Duration;

use bytes::Bytes;
use cartstream::app::Roles;
use cartstream::clock::Clock;
use cartstream::state::transition_id;
use serde_json::{json, Value};

use crate::support::{
    read_json, read_json_eventually, read_topic, shopify_headers, Answer, Http, TestDaemon,
};

const ACME_KEY: &str = "pk_acme_0123456789abcdef";
const GLOBEX_KEY: &str = "pk_globex_0123456789abcdef";
const SHOP: &str = "https://acme.example";

/// Two tenants with publishable keys; acme's Shopify shop signs checkouts.
const TENANTS: &str = r#"
[[tenant]]
id = "acme"
publishable_key = "pk_acme_0123456789abcdef"
allowed_origins = ["https://acme.example", "http://localhost:3000"]
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "acme.myshopify.com"
  secret = "acme-shopify-secret"

[[tenant]]
id = "globex"
publishable_key = "pk_globex_0123456789abcdef"
allowed_origins = ["https://globex.example"]
"#;

const WINDOW: Duration = Duration::from_secs(15 * 60);
const T0: u64 = 1_790_000_000;
const WAIT: Duration = Duration::from_secs(30);

/// A signal as a page sends it with `navigator.sendBeacon(url, string)`: `text/plain`, from
/// `origin`, the key in the body.
async fn beacon(http: &Http, daemon: &TestDaemon, origin: Option<&str>, body: &Value) -> Answer {
    beacon_from(http, daemon, origin, None, body).await
}

/// The same, through a trusted proxy that says the client is `client`.
async fn beacon_from(
    http: &Http,
    daemon: &TestDaemon,
    origin: Option<&str>,
    client: Option<&str>,
    body: &Value,
) -> Answer {
    let mut headers = vec![("content-type", "text/plain;charset=UTF-8".to_string())];
    if let Some(origin) = origin {
        headers.push(("origin", origin.to_string()));
    }
    if let Some(client) = client {
        headers.push(("x-forwarded-for", client.to_string()));
    }
    let body = serde_json::to_vec(body).unwrap();
    http.post(&daemon.url("/api/tracking/cart"), &headers, body)
        .await
}

fn add_to_cart(key: &str, cart: &str) -> Value {
    json!({"publishable_key": key, "event": "add_to_cart", "cart_token": cart,
           "cart_value": "42.50", "currency": "SAR", "item_count": 2})
}

fn error_of(answer: &Answer) -> String {
    assert_eq!(answer.headers["content-type"], "application/json");
    answer.json()["error"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_pass_from_the_origins_their_key_allows_and_nothing_else_does() {
    let daemon = TestDaemon::builder("tracking-checks")
        .tenants(TENANTS)
        .config(|c| {
            c.ingress.ack_timeout = Duration::from_secs(20);
            c.ingress.tracking.max_body_bytes = 512;
        })
        .start()
        .await;
    let http = Http::http1();
    let url = daemon.url(&format!("/api/tracking/cart?key={ACME_KEY}"));
    let preflight = |origin: &'static str| {
        let headers = vec![
            ("origin", origin.to_string()),
            ("access-control-request-method", "POST".to_string()),
            ("access-control-request-headers", "content-type".to_string()),
        ];
        let (http, url) = (http.clone(), url.clone());
        async move { http.send("OPTIONS", &url, &headers, Bytes::new()).await }
    };

    // The preflight of a fetch with a JSON body: from acme's shop, and from elsewhere.
    let passed = preflight(SHOP).await;
    assert_eq!(passed.status, 204, "{passed:?}");
    assert_eq!(passed.headers["access-control-allow-origin"], SHOP);
    assert_eq!(passed.headers["access-control-allow-methods"], "POST");
    assert_eq!(
        passed.headers["access-control-allow-headers"],
        "content-type"
    );
    assert_eq!(passed.headers["access-control-max-age"], "600");
    assert_eq!(passed.headers["vary"], "Origin");
    for elsewhere in ["https://evil.example", "https://globex.example"] {
        let failed = preflight(elsewhere).await;
        assert_eq!(failed.status, 403, "{elsewhere}");
        assert!(!failed.headers.contains_key("access-control-allow-origin"));
        assert_eq!(error_of(&failed), "origin not allowed");
    }

    // The fetch itself, JSON, the key in the URL.
    let fetched = http
        .post(
            &url,
            &[
                ("content-type", "application/json".to_string()),
                ("origin", SHOP.to_string()),
            ],
            serde_json::to_vec(&json!({"event": "cart_viewed", "cart_token": "c-fetch"})).unwrap(),
        )
        .await;
    assert_eq!(fetched.status, 202, "{fetched:?}");
    assert_eq!(fetched.json(), json!({"ok": true}));
    assert_eq!(fetched.headers["access-control-allow-origin"], SHOP);

    // A beacon: text/plain, no preflight, the key in the body, a client event id.
    let mut signal = add_to_cart(ACME_KEY, "c-beacon");
    signal["event_id"] = json!("evt-1");
    let sent = beacon(&http, &daemon, Some("http://localhost:3000"), &signal).await;
    assert_eq!(sent.status, 202, "{sent:?}");
    assert_eq!(
        sent.headers["access-control-allow-origin"],
        "http://localhost:3000"
    );
    // From no browser at all: no origin to check.
    let server = beacon(&http, &daemon, None, &add_to_cart(ACME_KEY, "c-server")).await;
    assert_eq!(server.status, 202, "{server:?}");
    assert!(!server.headers.contains_key("access-control-allow-origin"));

    // Refused: a forged or missing key, a page of another origin, bodies that are not signals.
    let forged = beacon(
        &http,
        &daemon,
        Some(SHOP),
        &add_to_cart("pk_forged_0123456789abcdef", "c"),
    )
    .await;
    assert_eq!(forged.status, 401);
    assert_eq!(error_of(&forged), "unknown publishable key");
    let keyless = beacon(
        &http,
        &daemon,
        Some(SHOP),
        &json!({"event": "add_to_cart", "cart_token": "c"}),
    )
    .await;
    assert_eq!(keyless.status, 401);
    assert!(error_of(&keyless).contains("publishable key is required"));
    let other_page = beacon(
        &http,
        &daemon,
        Some("https://globex.example"),
        &add_to_cart(ACME_KEY, "c"),
    )
    .await;
    assert_eq!(other_page.status, 403);
    assert_eq!(
        error_of(&other_page),
        "origin not allowed for this publishable key"
    );
    assert!(!other_page
        .headers
        .contains_key("access-control-allow-origin"));
    let unknown_event = beacon(
        &http,
        &daemon,
        Some(SHOP),
        &json!({"publishable_key": ACME_KEY, "event": "purchase", "cart_token": "c"}),
    )
    .await;
    assert_eq!(unknown_event.status, 400);
    assert!(error_of(&unknown_event).starts_with("event must be one of"));
    let form = http
        .post(
            &url,
            &[(
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            )],
            "event=add_to_cart&cart_token=c",
        )
        .await;
    assert_eq!(form.status, 400);
    let mut large = add_to_cart(ACME_KEY, "c-large");
    large["padding"] = json!("x".repeat(600));
    assert_eq!(beacon(&http, &daemon, Some(SHOP), &large).await.status, 413);
    let put = http.send("PUT", &url, &[], Bytes::new()).await;
    assert_eq!(put.status, 405);
    assert_eq!(put.headers["allow"], "POST, OPTIONS");

    // What reached the inbound topic: the three accepted signals, untouched, as `tracking`.
    let records = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(records.len(), 3, "{records:?}");
    let beacon_record = records
        .iter()
        .find(|r| r.headers.get("cartstream-delivery-id").map(String::as_str) == Some("evt-1"))
        .expect("the beacon's record, by its event id");
    assert_eq!(beacon_record.value, serde_json::to_vec(&signal).unwrap());
    assert_eq!(beacon_record.key.as_deref(), Some(&b"acme"[..]));
    for record in &records {
        assert_eq!(record.headers["cartstream-provider"], "tracking");
        assert_eq!(record.headers["cartstream-tenant"], "acme");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_address_and_each_key_has_its_own_rate() {
    let daemon = TestDaemon::builder("tracking-rates")
        .tenants(TENANTS)
        .config(|c| {
            c.ingress.ack_timeout = Duration::from_secs(20);
            // Clients are read from X-Forwarded-For, as behind a load balancer.
            c.ingress.trusted_proxies = vec!["127.0.0.1".to_string()];
            c.ingress.tracking.address_rate_limit_per_second = 1;
            c.ingress.tracking.address_rate_limit_burst = 3;
            c.ingress.tracking.rate_limit_per_second = 1;
            c.ingress.tracking.rate_limit_burst = 8;
        })
        .start()
        .await;
    let http = Http::http1();
    let signal = |n: usize| add_to_cart(ACME_KEY, &format!("c-{n}"));

    // One address: its burst, then 429 with Retry-After. A second is unaffected.
    let mut answers = Vec::new();
    for n in 0..10 {
        let answer = beacon_from(&http, &daemon, Some(SHOP), Some("203.0.113.1"), &signal(n)).await;
        let limited = answer.status == 429;
        answers.push(answer);
        if limited {
            break;
        }
    }
    let limited = answers.last().unwrap();
    assert_eq!(limited.status, 429, "never limited: {answers:?}");
    assert!(answers.len() >= 4, "limited before its burst: {answers:?}");
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_eq!(error_of(limited), "rate limit exceeded");
    let other = beacon_from(
        &http,
        &daemon,
        Some(SHOP),
        Some("203.0.113.2"),
        &signal(100),
    )
    .await;
    assert_eq!(other.status, 202);

    // One key from many addresses: its own burst, then 429 — and only for it.
    let mut key_limited = None;
    for n in 0..40 {
        let client = format!("198.51.100.{n}");
        let answer = beacon_from(&http, &daemon, Some(SHOP), Some(&client), &signal(200 + n)).await;
        if answer.status == 429 {
            key_limited = Some(answer);
            break;
        }
        assert_eq!(answer.status, 202, "{answer:?}");
    }
    let key_limited = key_limited.expect("the key's rate limits it");
    assert!(key_limited.headers.contains_key("retry-after"));
    // Its answer still carries CORS, so the page can read it.
    assert_eq!(key_limited.headers["access-control-allow-origin"], SHOP);
    let globex = beacon_from(
        &http,
        &daemon,
        Some("https://globex.example"),
        Some("192.0.2.77"),
        &add_to_cart(GLOBEX_KEY, "g-1"),
    )
    .await;
    assert_eq!(globex.status, 202, "another key is not limited by acme's");
    daemon.stop().await;
}

/// A daemon running every role on a manual clock.
async fn shop(test: &str) -> (TestDaemon, Clock) {
    let clock = Clock::manual(T0);
    let daemon = TestDaemon::builder(test)
        .tenants(TENANTS)
        .roles(Roles::ALL)
        .clock(clock.clone())
        .config(|c| c.ingress.ack_timeout = Duration::from_secs(20))
        .start()
        .await;
    (daemon, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_to_cart_then_silence_is_one_abandonment() {
    let (daemon, _clock) = shop("tracking-silence").await;
    let http = Http::http1();
    let sent = beacon(
        &http,
        &daemon,
        Some(SHOP),
        &add_to_cart(ACME_KEY, "c1-silent"),
    )
    .await;
    assert_eq!(sent.status, 202, "{sent:?}");
    let events = read_json_eventually(&daemon.brokers, &daemon.topics.events, 1, WAIT).await;
    assert_eq!(events[0]["provider"], "tracking");
    assert_eq!(events[0]["event_bucket"], "abandoned_candidate");
    assert_eq!(events[0]["cart_token"], "c1-silent");

    daemon.advance(WINDOW - Duration::from_secs(1)).await;
    assert!(read_json(&daemon.brokers, &daemon.topics.transitions).is_empty());
    daemon.advance(Duration::from_secs(2)).await;
    let transitions =
        read_json_eventually(&daemon.brokers, &daemon.topics.transitions, 1, WAIT).await;
    let abandoned = &transitions[0];
    assert_eq!(abandoned["to"], "abandoned");
    assert_eq!(abandoned["tenant_id"], "acme");
    assert_eq!(abandoned["cart"], "c1-silent");
    assert_eq!(abandoned["event"]["cart_value"], "42.50");
    assert_eq!(abandoned["event"]["customer"]["email"], Value::Null);
    daemon.advance(3 * WINDOW).await;
    let transitions = read_json(&daemon.brokers, &daemon.topics.transitions);
    assert_eq!(transitions.len(), 1, "one abandonment: {transitions:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_to_cart_then_a_checkout_of_the_same_cart_is_one_cart_and_one_episode() {
    let (daemon, clock) = shop("tracking-join").await;
    let http = Http::http1();
    // A Web Pixel names the cart by its id; the checkout webhook by the bare token.
    let pixel = add_to_cart(ACME_KEY, "gid://shopify/Cart/c1-joined?key=5f2e");
    assert_eq!(beacon(&http, &daemon, Some(SHOP), &pixel).await.status, 202);
    read_json_eventually(&daemon.brokers, &daemon.topics.events, 1, WAIT).await;

    daemon.advance(Duration::from_secs(5 * 60)).await;
    let checkout = serde_json::to_vec(&json!({
        "id": 1001,
        "token": "checkout-c1-joined",
        "cart_token": "c1-joined",
        "email": "bob@example.com",
        "total_price": "379.69",
        "currency": "USD",
        "abandoned_checkout_url": "https://acme.example/recover/c1-joined",
        "updated_at": humantime::format_rfc3339(clock.now()).to_string(),
    }))
    .unwrap();
    let headers = shopify_headers(
        "acme-shopify-secret",
        "acme.myshopify.com",
        &checkout,
        "w-1",
    );
    let answer = http
        .post(&daemon.url("/api/webhooks/shopify"), &headers, checkout)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    read_json_eventually(&daemon.brokers, &daemon.topics.events, 2, WAIT).await;

    // The checkout re-armed the one cart's timer: nothing at the signal's deadline.
    daemon.advance(WINDOW - Duration::from_secs(60)).await;
    assert!(read_json(&daemon.brokers, &daemon.topics.transitions).is_empty());
    daemon.advance(Duration::from_secs(120)).await;
    let transitions =
        read_json_eventually(&daemon.brokers, &daemon.topics.transitions, 1, WAIT).await;
    let abandoned = &transitions[0];
    assert_eq!(abandoned["cart"], "c1-joined");
    assert_eq!(
        abandoned["id"],
        transition_id("acme", "c1-joined", "abandoned_candidate", 0)
    );
    assert_eq!(abandoned["event"]["customer"]["email"], "bob@example.com");
    assert_eq!(
        abandoned["event"]["recovery_url"],
        "https://acme.example/recover/c1-joined"
    );
    daemon.advance(3 * WINDOW).await;
    let transitions = read_json(&daemon.brokers, &daemon.topics.transitions);
    assert_eq!(
        transitions.len(),
        1,
        "one cart, one episode: {transitions:?}"
    );
    daemon.stop().await;
}
