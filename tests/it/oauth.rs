//! OAuth connect end to end, against a fake Shopify on loopback over TLS
//! (`fake_shopify.rs`): install link → consent → callback → token exchange → webhook
//! subscriptions → the integration in force, and every way it can fail leaving nothing behind.

use std::time::Duration;

use cartstream::clock::Clock;
use cartstream::kafka::Property;
use cartstream::platforms::App;
use serde_json::Value;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::fake_salla::FakeSalla;
use crate::fake_shopify::FakeShopify;
use crate::fake_zid::FakeZid;
use crate::support::{fixture, free_port, read_topic, shopify_headers, Answer, Http, TestDaemon};

const CLIENT_ID: &str = "cartstream-oauth-test-app";
const CLIENT_SECRET: &str = "shpss_oauth-test-app-client-secret";
const TOKEN: &str = "oauth-admin-token-0123456789";
const SEALING_KEY: &str = "b2F1dGgtdGVzdHMtc2VhbGluZy1rZXktMzItYnl0ZXM=";
const SHOP: &str = "acme.myshopify.com";

/// The topics Shopify is asked to send, as its GraphQL enum names them.
const TOPICS: [&str; 7] = [
    "APP_UNINSTALLED",
    "CARTS_CREATE",
    "CARTS_UPDATE",
    "CHECKOUTS_CREATE",
    "CHECKOUTS_UPDATE",
    "ORDERS_CREATE",
    "ORDERS_PAID",
];

/// A daemon with tenants from the topic, the fake's app, and its ingress where its
/// `public_url` says.
async fn daemon(name: &str, fake: &FakeShopify, clock: Clock) -> TestDaemon {
    let api_url = format!("{}/{{shop}}", fake.base);
    daemon_with(name, fake.ca_file(), clock, |platforms| {
        platforms.shopify = Some(app(CLIENT_ID, CLIENT_SECRET, None, Some(api_url)));
    })
    .await
}

/// The app of a platform: its client, and where it is.
fn app(
    client_id: &str,
    client_secret: &str,
    webhook_secret: Option<&str>,
    api_url: Option<String>,
) -> App {
    App {
        client_id: client_id.to_string(),
        client_secret: Property::Text(client_secret.to_string()),
        webhook_secret: webhook_secret.map(|s| Property::Text(s.to_string())),
        previous_webhook_secret: None,
        scopes: None,
        accounts_url: api_url.clone(),
        api_url,
    }
}

/// A daemon with tenants from the topic, the apps `platforms` sets, the fake platform's CA
/// trusted, the tenant acme, and its ingress where its `public_url` says.
async fn daemon_with(
    name: &str,
    ca_file: std::path::PathBuf,
    clock: Clock,
    platforms: impl FnOnce(&mut cartstream::platforms::Config),
) -> TestDaemon {
    let port = free_port();
    let daemon = TestDaemon::builder(name)
        .tenants_from_topic(SEALING_KEY)
        .clock(clock)
        .config(|c| {
            c.ingress.listen = format!("127.0.0.1:{port}").parse().unwrap();
            c.ingress.public_url = Some(format!("http://127.0.0.1:{port}"));
            c.admin.token = Some(serde_json::from_value(serde_json::json!(TOKEN)).unwrap());
            platforms(&mut c.platforms);
            c.platforms.ca_file = Some(ca_file);
        })
        .start()
        .await;
    let created = admin(&daemon, "POST", "/admin/v1/tenants", r#"{"id":"acme"}"#).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    daemon
}

async fn admin(daemon: &TestDaemon, method: &str, path: &str, body: &'static str) -> Answer {
    let headers = [
        ("content-type", "application/json".to_string()),
        ("authorization", format!("Bearer {TOKEN}")),
    ];
    Http::http1()
        .send(method, &daemon.admin_url(path), &headers, body)
        .await
}

/// The install link the admin API issues for `shop`.
async fn install_link(daemon: &TestDaemon, shop: &'static str) -> String {
    let body = match shop {
        SHOP => r#"{"provider":"shopify","shop":"acme.myshopify.com"}"#,
        _ => r#"{"provider":"shopify","shop":"globex.myshopify.com"}"#,
    };
    link_for(daemon, body).await
}

/// The install link the admin API answers `body` with.
async fn link_for(daemon: &TestDaemon, body: &'static str) -> String {
    let link = admin(daemon, "POST", "/admin/v1/tenants/acme/connect", body).await;
    assert_eq!(link.status, 200, "{:?}", link.body);
    link.json()["install_url"].as_str().unwrap().to_string()
}

/// A merchant's browser on the install link: the consent screen it is sent to, and the cookie
/// the install set.
async fn install(install_url: &str) -> (String, String) {
    let install = Http::http1().get(install_url).await;
    assert_eq!(install.status, 302, "{:?}", install.body);
    let location = install.headers["location"].to_str().unwrap().to_string();
    let cookie = install.headers["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("cartstream_oauth="), "{cookie}");
    (location, cookie)
}

/// A merchant's browser: the install link, then the consent screen. The callback URL the
/// platform sends the browser back to, and the cookie the install set.
async fn consent(fake: &FakeShopify, install_url: &str) -> (String, String) {
    let (location, cookie) = install(install_url).await;
    assert!(
        location.starts_with(&format!("{}/{SHOP}/admin/oauth/authorize?", fake.base)),
        "{location}"
    );
    (fake.follow_authorize(&location).await, cookie)
}

/// The callback, opened by the browser that holds `cookie`.
async fn callback(url: &str, cookie: Option<&str>) -> Answer {
    let headers: Vec<(&str, String)> = cookie
        .map(|c| ("cookie", c.to_string()))
        .into_iter()
        .collect();
    Http::http1().send("GET", url, &headers, "").await
}

async fn shopify_webhook(daemon: &TestDaemon, topic: &str, id: &str) -> u16 {
    let body = br#"{"id":42,"token":"cart-42"}"#.to_vec();
    let mut headers = shopify_headers(CLIENT_SECRET, SHOP, &body, id);
    headers.retain(|(name, _)| *name != "x-shopify-topic");
    headers.push(("x-shopify-topic", topic.to_string()));
    Http::http1()
        .post(&daemon.url("/api/webhooks/shopify"), &headers, body)
        .await
        .status
        .as_u16()
}

pub(crate) fn error_of(answer: &Answer) -> String {
    answer.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_connects_through_oauth_and_its_webhooks_land_under_its_tenant_until_uninstall() {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let daemon = daemon("oauth-connect", &fake, Clock::System).await;
    let public_url = daemon.config.ingress.public_url.clone().unwrap();

    let (callback_url, cookie) = consent(&fake, &install_link(&daemon, SHOP).await).await;
    let asked = fake.authorize_requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].shop, SHOP);
    assert_eq!(
        asked[0].scopes,
        ["read_orders", "read_customers", "read_checkouts"]
    );
    assert_eq!(
        asked[0].redirect_uri,
        format!("{public_url}/api/oauth/shopify/callback")
    );

    let connected = callback(&callback_url, Some(&cookie)).await;
    assert_eq!(connected.status, 200, "{:?}", connected.body);
    let connected = connected.json();
    assert_eq!(connected["connected"]["tenant"], "acme");
    assert_eq!(connected["connected"]["store"], SHOP);

    // Exactly the listed topics, each pointing at the webhook route of the public URL.
    let webhook_url = format!("{public_url}/api/webhooks/shopify");
    let expected: Vec<(String, String)> = TOPICS
        .iter()
        .map(|topic| (topic.to_string(), webhook_url.clone()))
        .collect();
    assert_eq!(fake.subscriptions(SHOP), expected);

    // A webhook the platform signs with the app's secret for this shop lands under acme.
    assert_eq!(
        shopify_webhook(&daemon, "checkouts/create", "oauth-1").await,
        200
    );
    let inbound = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(inbound.len(), 1);
    assert_eq!(inbound[0].headers["cartstream-tenant"], "acme");

    // The tenant shows the integration, signed by the app; the token is on the topic only
    // sealed.
    let tenant = admin(&daemon, "GET", "/admin/v1/tenants/acme", "")
        .await
        .json();
    let integrations = tenant["integrations"].as_array().unwrap();
    assert_eq!(integrations.len(), 1, "{tenant}");
    assert_eq!(integrations[0]["signed_by_app"], true);
    let token = fake.tokens(SHOP).pop().unwrap();
    let registry = read_topic(&daemon.brokers, &daemon.topics.tenants);
    let written: Vec<Value> = registry
        .iter()
        .filter_map(|r| serde_json::from_slice(&r.value).ok())
        .filter(|v: &Value| v["kind"] == "integration")
        .collect();
    assert_eq!(written.len(), 1);
    assert!(
        written[0]["access_token"]["sealed"].is_string(),
        "{}",
        written[0]
    );
    assert!(registry
        .iter()
        .all(|r| !String::from_utf8_lossy(&r.value).contains(&token)));

    // The same callback again: the state was used.
    let replayed = callback(&callback_url, Some(&cookie)).await;
    assert_eq!(replayed.status, 400);
    assert!(
        error_of(&replayed).contains("used already"),
        "{:?}",
        replayed.body
    );
    assert_eq!(fake.tokens(SHOP).len(), 1, "no second exchange");

    // The app uninstalled: its uninstall webhook disconnects the store.
    assert_eq!(
        shopify_webhook(&daemon, "app/uninstalled", "oauth-2").await,
        200
    );
    let mut status = 200;
    for _ in 0..100 {
        status = shopify_webhook(&daemon, "checkouts/update", "oauth-3").await;
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 401);
    let tenant = admin(&daemon, "GET", "/admin/v1/tenants/acme", "")
        .await
        .json();
    assert_eq!(tenant["integrations"], serde_json::json!([]));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_leaves_nothing_subscribed_and_no_integration() {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let clock = Clock::manual(1_796_000_000);
    let daemon = daemon("oauth-failures", &fake, clock.clone()).await;
    let no_integration = || async {
        let tenant = admin(&daemon, "GET", "/admin/v1/tenants/acme", "")
            .await
            .json();
        assert_eq!(tenant["integrations"], serde_json::json!([]), "{tenant}");
    };

    // One subscription refused: those made before it are removed, nothing is written.
    fake.fail_registration("ORDERS_PAID");
    let (url, cookie) = consent(&fake, &install_link(&daemon, SHOP).await).await;
    let failed = callback(&url, Some(&cookie)).await;
    assert_eq!(failed.status, 502, "{:?}", failed.body);
    assert!(
        error_of(&failed).contains("ORDERS_PAID"),
        "{:?}",
        failed.body
    );
    assert_eq!(fake.subscriptions(SHOP), []);
    assert_eq!(fake.created_count(SHOP), fake.deleted_count(SHOP));
    assert!(fake.created_count(SHOP) > 0);
    no_integration().await;

    // From another browser (no cookie of the state): refused before the code is used.
    let (url, _) = consent(&fake, &install_link(&daemon, SHOP).await).await;
    let elsewhere = callback(&url, None).await;
    assert_eq!(elsewhere.status, 403);
    let wrong_cookie = callback(&url, Some("cartstream_oauth=another-browsers")).await;
    assert_eq!(wrong_cookie.status, 403);

    // A callback whose query was changed is not Shopify's.
    let (url, cookie) = consent(&fake, &install_link(&daemon, SHOP).await).await;
    let changed = url.replace("code=", "code=x");
    let forged = callback(&changed, Some(&cookie)).await;
    assert_eq!(forged.status, 401, "{:?}", forged.body);

    // The merchant declines.
    fake.deny_next();
    let (url, cookie) = consent(&fake, &install_link(&daemon, SHOP).await).await;
    let declined = callback(&url, Some(&cookie)).await;
    assert_eq!(declined.status, 400);
    assert!(
        error_of(&declined).contains("did not consent"),
        "{:?}",
        declined.body
    );

    // A state older than ten minutes.
    let (url, cookie) = consent(&fake, &install_link(&daemon, SHOP).await).await;
    clock.advance(Duration::from_secs(10 * 60 + 1));
    let expired = callback(&url, Some(&cookie)).await;
    assert_eq!(expired.status, 400);
    assert!(error_of(&expired).contains("expired"), "{:?}", expired.body);
    // And an install link, likewise.
    let link = install_link(&daemon, SHOP).await;
    clock.advance(Duration::from_secs(10 * 60 + 1));
    let late = Http::http1().get(&link).await;
    assert_eq!(late.status, 400);

    // A state forged or made for another deployment.
    let forged_state = url.replace("state=", "state=x");
    let forged = callback(&forged_state, Some(&cookie)).await;
    assert_eq!(forged.status, 400);

    assert_eq!(fake.subscriptions(SHOP), []);
    no_integration().await;
    daemon.stop().await;
}

const SALLA_ID: &str = "cartstream-oauth-test-salla-app";
const SALLA_SECRET: &str = "salla-oauth-test-app-client-secret";
const SALLA_WEBHOOK_SECRET: &str = "salla-oauth-test-app-webhook-secret";
/// The merchant of the Salla fixtures.
const MERCHANT: u64 = 1_305_146_709;

async fn salla_webhook(daemon: &TestDaemon, body: &[u8]) -> u16 {
    let headers = vec![
        ("content-type", "application/json".to_string()),
        ("x-salla-security-strategy", "Signature".to_string()),
        (
            "x-salla-signature",
            cartstream::providers::salla::sign(SALLA_WEBHOOK_SECRET.as_bytes(), body),
        ),
    ];
    Http::http1()
        .post(&daemon.url("/api/webhooks/salla"), &headers, body.to_vec())
        .await
        .status
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salla_store_connects_through_oauth_signed_by_the_app_until_it_uninstalls() {
    let fake = FakeSalla::start(SALLA_ID, SALLA_SECRET, MERCHANT).await;
    let base = fake.base.clone();
    let daemon = daemon_with("oauth-salla", fake.ca_file(), Clock::System, |platforms| {
        let secret = Some(SALLA_WEBHOOK_SECRET);
        platforms.salla = Some(app(SALLA_ID, SALLA_SECRET, secret, Some(base)));
    })
    .await;
    let public_url = daemon.config.ingress.public_url.clone().unwrap();

    // A registration Salla refuses: those made before it are removed, nothing is written.
    fake.fail_registration("order.created");
    let (location, cookie) = install(&link_for(&daemon, r#"{"provider":"salla"}"#).await).await;
    assert!(
        location.starts_with(&format!("{}/oauth2/auth?", fake.base)),
        "{location}"
    );
    let failed = callback(&fake.follow_authorize(&location).await, Some(&cookie)).await;
    assert_eq!(failed.status, 502, "{:?}", failed.body);
    assert_eq!(fake.subscriptions(), []);
    assert_eq!(fake.created_count(), fake.deleted_count());
    let tenant = admin(&daemon, "GET", "/admin/v1/tenants/acme", "")
        .await
        .json();
    assert_eq!(tenant["integrations"], serde_json::json!([]), "{tenant}");
    fake.fail_nothing();

    let (location, cookie) = install(&link_for(&daemon, r#"{"provider":"salla"}"#).await).await;
    let connected = callback(&fake.follow_authorize(&location).await, Some(&cookie)).await;
    assert_eq!(connected.status, 200, "{:?}", connected.body);
    assert_eq!(connected.json()["connected"]["store"], MERCHANT.to_string());
    let asked = fake.authorize_requests().pop().unwrap();
    assert_eq!(
        asked.scopes,
        [
            "offline_access",
            "carts.read",
            "orders.read",
            "customers.read",
            "webhooks.read_write"
        ]
    );
    assert_eq!(
        asked.redirect_uri,
        format!("{public_url}/api/oauth/salla/callback")
    );
    let url = format!("{public_url}/api/webhooks/salla");
    let events = [
        "abandoned.cart",
        "abandoned.cart.purchased",
        "order.created",
    ];
    let expected: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.to_string(), url.clone()))
        .collect();
    assert_eq!(fake.subscriptions(), expected);
    assert!(fake
        .subscription_details()
        .iter()
        .all(|s| s.security_strategy.as_deref() == Some("signature")));

    // Connected again, and a subscription refused this time: those of the store in force stay.
    fake.fail_registration("order.created");
    let (location, cookie) = install(&link_for(&daemon, r#"{"provider":"salla"}"#).await).await;
    let again = callback(&fake.follow_authorize(&location).await, Some(&cookie)).await;
    assert_eq!(again.status, 502, "{:?}", again.body);
    assert_eq!(fake.subscriptions(), expected);
    fake.fail_nothing();

    // Salla signs the store's deliveries with the app's webhook secret.
    let cart = fixture("salla/docs_abandoned_cart.json");
    assert_eq!(salla_webhook(&daemon, &cart).await, 200);
    let inbound = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(inbound.len(), 1);
    assert_eq!(inbound[0].headers["cartstream-tenant"], "acme");

    // The app uninstalled: the store is disconnected.
    let uninstalled = serde_json::json!({
        "event": "app.uninstalled",
        "merchant": MERCHANT,
        "created_at": "2026-12-07 12:31:25",
        "data": {"id": 1, "app_name": "cartstream", "uninstallation_date": "2026-12-07 12:31:25"},
    });
    let uninstalled = serde_json::to_vec(&uninstalled).unwrap();
    assert_eq!(salla_webhook(&daemon, &uninstalled).await, 200);
    let mut status = 200;
    for _ in 0..100 {
        let mut changed = cart.clone();
        changed.push(b' ');
        status = salla_webhook(&daemon, &changed).await;
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 401);
    daemon.stop().await;
}

const ZID_ID: &str = "4242";
const ZID_SECRET: &str = "zid-oauth-test-app-client-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zid_store_connects_through_oauth_with_credentials_of_its_own() {
    let fake = FakeZid::start(ZID_ID, ZID_SECRET).await;
    let base = fake.base.clone();
    let daemon = daemon_with("oauth-zid", fake.ca_file(), Clock::System, |platforms| {
        platforms.zid = Some(app(ZID_ID, ZID_SECRET, None, Some(base)));
    })
    .await;
    let public_url = daemon.config.ingress.public_url.clone().unwrap();

    fake.fail_registration("order.create");
    let (location, cookie) = install(&link_for(&daemon, r#"{"provider":"zid"}"#).await).await;
    assert!(
        location.starts_with(&format!("{}/oauth/authorize?", fake.base)),
        "{location}"
    );
    let failed = callback(&fake.follow_authorize(&location).await, Some(&cookie)).await;
    assert_eq!(failed.status, 502, "{:?}", failed.body);
    assert_eq!(fake.subscriptions(), []);
    assert!(fake.deleted_count() > 0);
    fake.fail_nothing();

    let (location, cookie) = install(&link_for(&daemon, r#"{"provider":"zid"}"#).await).await;
    let connected = callback(&fake.follow_authorize(&location).await, Some(&cookie)).await;
    assert_eq!(connected.status, 200, "{:?}", connected.body);
    let key = connected.json()["connected"]["store"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(key.starts_with("int_"), "{key}");
    let target = format!("{public_url}/api/webhooks/zid/{key}");
    let subscribed = fake.subscriptions();
    let events: Vec<&str> = subscribed.iter().map(|s| s.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "abandoned_cart.completed",
            "abandoned_cart.created",
            "order.create",
            "order.payment_status.update"
        ]
    );
    assert!(subscribed
        .iter()
        .all(|s| s.target_url == target && s.original_id == key));
    let (user, password) = (
        subscribed[0].username.clone().unwrap(),
        subscribed[0].password.clone().unwrap(),
    );

    // Zid sends the credentials it was given: they are the integration's secret.
    let body = fixture("zid/derived_order_object_from_sdk_fixture.json");
    let post = |credentials: String| {
        let headers = vec![
            ("content-type", "application/json".to_string()),
            (
                "authorization",
                format!("Basic {}", BASE64.encode(credentials)),
            ),
        ];
        let (daemon, body, target) = (&daemon, body.clone(), target.clone());
        async move {
            let path = target
                .strip_prefix(&daemon.config.ingress.public_url.clone().unwrap())
                .unwrap()
                .to_string();
            Http::http1()
                .post(&daemon.url(&path), &headers, body)
                .await
                .status
                .as_u16()
        }
    };
    assert_eq!(post(format!("{user}:{password}")).await, 200);
    assert_eq!(post(format!("{user}:not-the-password")).await, 401);
    let inbound = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(inbound.len(), 1);
    assert_eq!(inbound[0].headers["cartstream-tenant"], "acme");
    daemon.stop().await;
}
