//! A ShopiMind installation's lifecycle through the ingress, with tenants from the topic: each
//! signed event moves it in the order it was sent, whatever order it arrives in; every event,
//! duplicates and late ones included, is answered `{"success":true}`; what changes nothing is
//! not kept; the uninstall forgets the sealed token and configuration.

use std::time::{SystemTime, UNIX_EPOCH};

use cartstream::providers;
use serde_json::{json, Value};

use crate::oauth::error_of;
use crate::support::{read_topic, Answer, Http, Record, TestDaemon};

const TOKEN: &str = "shopimind-admin-token-0123456789";
const SEALING_KEY: &str = "c2hvcGltaW5kLXRlc3RzLXNlYWxpbmcta2V5LTMyYnk=";
const SECRET: &str = "acme-shopimind-webhook-secret";

async fn admin(daemon: &TestDaemon, method: &str, path: &str, body: &'static str) -> Answer {
    let headers = [
        ("content-type", "application/json".to_string()),
        ("authorization", format!("Bearer {TOKEN}")),
    ];
    Http::http1()
        .send(method, &daemon.admin_url(path), &headers, body)
        .await
}

/// Posts the lifecycle `event` of installation pg-7, signed as sent at `sent_at`.
async fn lifecycle(daemon: &TestDaemon, event: &str, sent_at: u64, extra: Value) -> Answer {
    let mut body = json!({ "event": event, "installation_id": "pg-7", "shop_domain": "demo.shop" });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let body = serde_json::to_vec(&body).unwrap();
    signed(daemon, SECRET, sent_at, body).await
}

/// Posts `body` to the ShopiMind webhook route, signed with `secret` as sent at `sent_at`.
async fn signed(daemon: &TestDaemon, secret: &str, sent_at: u64, body: Vec<u8>) -> Answer {
    let headers = vec![
        ("content-type", "application/json".to_string()),
        ("x-shopimind-timestamp", sent_at.to_string()),
        (
            "x-shopimind-signature",
            providers::shopimind::sign(secret.as_bytes(), sent_at, &body),
        ),
    ];
    Http::http1()
        .post(&daemon.url("/api/webhooks/shopimind"), &headers, body)
        .await
}

/// Now, in whole seconds.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The value of the last record of `key` (empty for a tombstone), if any.
fn last_of(records: &[Record], key: &str) -> Option<Vec<u8>> {
    records
        .iter()
        .rev()
        .find(|r| r.key.as_deref() == Some(key.as_bytes()))
        .map(|r| r.value.clone())
}

async fn installation(daemon: &TestDaemon) -> Value {
    let tenant = admin(daemon, "GET", "/admin/v1/tenants/acme", "")
        .await
        .json();
    tenant["integrations"][0]["installation"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopimind_installation_moves_in_the_order_its_events_were_sent_and_ends_at_uninstall() {
    let daemon = TestDaemon::builder("shopimind-lifecycle")
        .tenants_from_topic(SEALING_KEY)
        .config(|c| {
            c.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap());
        })
        .start()
        .await;
    let created = admin(&daemon, "POST", "/admin/v1/tenants", r#"{"id":"acme"}"#).await;
    assert_eq!(created.status, 201);
    let connected = admin(
        &daemon,
        "POST",
        "/admin/v1/tenants/acme/integrations",
        r#"{"provider":"shopimind","installation_id":"pg-7","secret":"acme-shopimind-webhook-secret"}"#,
    )
    .await;
    assert_eq!(connected.status, 201, "{:?}", connected.body);
    let t0 = now() - 250;
    let success = |answer: Answer| {
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.json(), json!({"success": true}));
    };
    let configs = |value: &str| json!({ "configs": { "list_id": value } });

    success(
        lifecycle(
            &daemon,
            "integration.installed",
            t0,
            json!({"access_token": "int_T"}),
        )
        .await,
    );
    assert_eq!(
        installation(&daemon).await,
        json!({"phase": "installed", "changed_at": t0, "config_at": null})
    );
    success(lifecycle(&daemon, "integration.activated", t0 + 10, configs("first")).await);
    // Sent last, arriving first; then the one sent before it arrives late.
    success(
        lifecycle(
            &daemon,
            "integration.config_updated",
            t0 + 30,
            configs("third"),
        )
        .await,
    );
    success(
        lifecycle(
            &daemon,
            "integration.config_updated",
            t0 + 20,
            configs("second"),
        )
        .await,
    );
    // A duplicate, and a deactivation sent before the activation in force.
    success(lifecycle(&daemon, "integration.activated", t0 + 10, configs("first")).await);
    success(lifecycle(&daemon, "integration.deactivated", t0 + 5, json!({})).await);
    assert_eq!(
        installation(&daemon).await,
        json!({"phase": "active", "changed_at": t0 + 10, "config_at": t0 + 30})
    );
    // What changed nothing was not kept: the install, the activation and the newest
    // configuration are the inbound records, and the credentials of those three.
    let inbound = read_topic(&daemon.brokers, &daemon.topics.inbound);
    let events: Vec<&str> = inbound
        .iter()
        .map(|r| r.headers["cartstream-event-type"].as_str())
        .collect();
    assert_eq!(
        events,
        [
            "integration.installed",
            "integration.activated",
            "integration.config_updated"
        ]
    );

    success(lifecycle(&daemon, "integration.deactivated", t0 + 40, json!({})).await);
    assert_eq!(installation(&daemon).await["phase"], "inactive");
    success(lifecycle(&daemon, "integration.uninstalled", t0 + 50, json!({})).await);
    assert_eq!(
        installation(&daemon).await,
        json!({"phase": "uninstalled", "changed_at": t0 + 50, "config_at": null})
    );
    // Its sealed token and configuration are forgotten: each key's last record is a tombstone.
    let credentials = read_topic(&daemon.brokers, &daemon.topics.credentials);
    let mut last = std::collections::BTreeMap::new();
    for record in &credentials {
        let key = String::from_utf8(record.key.clone().unwrap()).unwrap();
        last.insert(key, record.value.is_empty());
    }
    assert!(last.len() >= 2, "{last:?}");
    assert!(last.values().all(|tombstone| *tombstone), "{last:?}");
    // Nothing after the uninstall is kept, though it is answered.
    success(lifecycle(&daemon, "integration.activated", t0 + 60, configs("late")).await);
    assert_eq!(installation(&daemon).await["phase"], "uninstalled");
    let inbound = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(inbound.len(), 5);
    daemon.stop().await;
}

const APP_SECRET: &str = "the-deployments-shopimind-app-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_nobody_claimed_is_held_until_a_tenant_claims_it_with_its_token() {
    let daemon = TestDaemon::builder("shopimind-claim")
        .tenants_from_topic(SEALING_KEY)
        .config(|c| {
            c.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap());
            c.ingress.shopimind_app_secret =
                Some(cartstream::kafka::Property::Text(APP_SECRET.to_string()));
        })
        .start()
        .await;
    // The install of an installation no tenant has, signed with the app's secret.
    let install = signed_by_app(&daemon, br#"{"event":"integration.installed","installation_id":"pg-9","access_token":"int_held_token","shop_domain":"demo.shop"}"#).await;
    assert_eq!(install.status, 200);
    let held = r#"["unclaimed","shopimind","pg-9","access_token"]"#;

    // acme claims it: the token is now sealed for acme, and no longer held.
    assert_eq!(
        admin(&daemon, "POST", "/admin/v1/tenants", r#"{"id":"acme"}"#)
            .await
            .status,
        201
    );
    let claimed = admin(
        &daemon,
        "POST",
        "/admin/v1/tenants/acme/integrations",
        r#"{"provider":"shopimind","installation_id":"pg-9","secret":"acme-shopimind-webhook-secret"}"#,
    )
    .await;
    assert_eq!(claimed.status, 201, "{:?}", claimed.body);
    assert_eq!(claimed.json()["claimed"], json!(["access_token"]));
    let credentials = read_topic(&daemon.brokers, &daemon.topics.credentials);
    let last = |key: &str| last_of(&credentials, key);
    assert_eq!(
        last(held),
        Some(Vec::new()),
        "the held record is a tombstone"
    );
    let theirs = last(r#"["acme","shopimind","pg-9","access_token"]"#).unwrap();
    let record: cartstream::topics::credentials::Credential =
        serde_json::from_slice(&theirs).unwrap();
    let vault =
        cartstream::credentials::Vault::from_base64(crate::support::CREDENTIALS_KEY).unwrap();
    let key = r#"["acme","shopimind","pg-9","access_token"]"#;
    assert_eq!(
        vault.open_record(key.as_bytes(), &record).unwrap(),
        br#""int_held_token""#,
        "the JSON value as sent"
    );
    assert!(!String::from_utf8_lossy(&theirs).contains("int_held_token"));
    daemon.stop().await;
}

/// The ShopiMind app's page, and where its OAuth installations come back to.
const SHOPIMIND_APP: &str = "https://app.shopimind.test/apps/cartstream";
const SHOPIMIND_RETURN: &str = "https://app.shopimind.test/oauth/return";

/// Posts `body` signed with the deployment's ShopiMind app secret.
async fn signed_by_app(daemon: &TestDaemon, body: &'static [u8]) -> Answer {
    signed(daemon, APP_SECRET, now(), body.to_vec()).await
}

/// The consent page, as ShopiMind sends the browser holding `cookie` to it.
async fn consent(daemon: &TestDaemon, query: &str, cookie: Option<&str>) -> Answer {
    let headers: Vec<(&str, String)> = cookie
        .map(|c| ("cookie", c.to_string()))
        .into_iter()
        .collect();
    let url = daemon.url(&format!("/api/oauth/shopimind/consent?{query}"));
    Http::http1().send("GET", &url, &headers, "").await
}

/// The merchant's browser on `tenant`'s install link: the cookie the link set.
async fn open_link(daemon: &TestDaemon, tenant: &'static str) -> String {
    let path = match tenant {
        "acme" => "/admin/v1/tenants/acme/connect",
        _ => "/admin/v1/tenants/globex/connect",
    };
    let link = admin(daemon, "POST", path, r#"{"provider":"shopimind"}"#).await;
    assert_eq!(link.status, 200, "{:?}", link.body);
    let install_url = link.json()["install_url"].as_str().unwrap().to_string();
    assert!(
        install_url.contains("/api/oauth/shopimind/install?link="),
        "{install_url}"
    );
    let install = Http::http1().get(&install_url).await;
    assert_eq!(install.status, 302, "{:?}", install.body);
    assert_eq!(install.headers["location"], SHOPIMIND_APP);
    let cookie = install.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_string()
}

/// A daemon with the deployment's ShopiMind app, on the topics of `prefix` when given.
async fn type_b_daemon(name: &str, prefix: Option<&str>) -> TestDaemon {
    let port = crate::support::free_port();
    let mut builder = TestDaemon::builder(name);
    if let Some(prefix) = prefix {
        builder = builder.topic_prefix(prefix);
    }
    builder
        .tenants_from_topic(SEALING_KEY)
        .config(|c| {
            c.ingress.listen = format!("127.0.0.1:{port}").parse().unwrap();
            c.ingress.public_url = Some(format!("http://127.0.0.1:{port}"));
            c.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap());
            c.ingress.shopimind_app_secret =
                Some(cartstream::kafka::Property::Text(APP_SECRET.to_string()));
            c.platforms.shopimind = Some(cartstream::platforms::ShopimindApp {
                return_urls: vec![format!("{SHOPIMIND_RETURN}/")],
                install_url: Some(SHOPIMIND_APP.to_string()),
            });
        })
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopimind_oauth_installation_is_tied_on_the_consent_page_to_the_tenant_whose_link_the_browser_opened(
) {
    let daemon = type_b_daemon("shopimind-type-b", None).await;
    for tenant in [r#"{"id":"acme"}"#, r#"{"id":"globex"}"#] {
        let created = admin(&daemon, "POST", "/admin/v1/tenants", tenant).await;
        assert_eq!(created.status, 201, "{:?}", created.body);
    }
    // ShopiMind sends the install, with its token, before the merchant consents: it is held.
    let install = signed_by_app(&daemon, br#"{"event":"integration.installed","installation_id":"pg-11","access_token":"int_type_b_token","external_account_id":"acme"}"#).await;
    assert_eq!(install.status, 200, "{:?}", install.body);
    let held = r#"["unclaimed","shopimind","pg-11","access_token"]"#;
    // The daemon restarts before the merchant comes back: the token is held on Kafka.
    let prefix = daemon.config.kafka.topic_prefix.clone();
    daemon.stop().await;
    let daemon = type_b_daemon("shopimind-type-b-again", Some(&prefix)).await;

    let back = format!(
        "installation_id=pg-11&state=spm-state-1&redirect_uri={}",
        url::form_urlencoded::byte_serialize(format!("{SHOPIMIND_RETURN}/step?x=1").as_bytes())
            .collect::<String>()
    );
    // A browser that opened no install link, or holds a forged one, is refused.
    let refused = consent(&daemon, &back, None).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert!(
        error_of(&refused).contains("install link"),
        "{}",
        error_of(&refused)
    );
    let forged = consent(&daemon, &back, Some("cartstream_oauth=e30.AAAA")).await;
    assert_eq!(forged.status, 403, "{:?}", forged.body);

    let cookie = open_link(&daemon, "acme").await;
    // Back anywhere but ShopiMind's return URLs: refused, and nothing is tied.
    let elsewhere = "installation_id=pg-11&redirect_uri=https%3A%2F%2Fapp.shopimind.test.evil.example%2Foauth%2Freturn%2F";
    let open_redirect = consent(&daemon, elsewhere, Some(&cookie)).await;
    assert_eq!(open_redirect.status, 400, "{:?}", open_redirect.body);
    assert!(error_of(&open_redirect).contains("return_urls"));
    let bad_id = consent(
        &daemon,
        "installation_id=..%2Fx&redirect_uri=https%3A%2F%2Fapp.shopimind.test%2Foauth%2Freturn%2F",
        Some(&cookie),
    )
    .await;
    assert_eq!(bad_id.status, 400, "{:?}", bad_id.body);
    let tenant = admin(&daemon, "GET", "/admin/v1/tenants/acme", "")
        .await
        .json();
    assert_eq!(tenant["integrations"], json!([]), "{tenant}");

    // The consent: tied to acme, and back to ShopiMind with its state and the account.
    let tied = consent(&daemon, &back, Some(&cookie)).await;
    assert_eq!(tied.status, 302, "{:?}", tied.body);
    let location = url::Url::parse(tied.headers["location"].to_str().unwrap()).unwrap();
    assert_eq!(
        location.as_str().split('?').next().unwrap(),
        format!("{SHOPIMIND_RETURN}/step")
    );
    let query: std::collections::BTreeMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["x"], "1");
    assert_eq!(query["state"], "spm-state-1");
    assert_eq!(query["installation_id"], "pg-11");
    assert_eq!(query["external_account_id"], "acme");
    assert!(tied.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let tenant = admin(&daemon, "GET", "/admin/v1/tenants/acme", "")
        .await
        .json();
    let integrations = tenant["integrations"].as_array().unwrap();
    assert_eq!(integrations.len(), 1, "{tenant}");
    assert_eq!(integrations[0]["provider"], "shopimind");
    assert_eq!(
        integrations[0]["id"], "shopimind:installation_id=pg-11",
        "{tenant}"
    );

    // The token it sent before is acme's now, and no longer held.
    let credentials = read_topic(&daemon.brokers, &daemon.topics.credentials);
    let last = |key: &str| last_of(&credentials, key);
    assert_eq!(
        last(held),
        Some(Vec::new()),
        "the held record is a tombstone"
    );
    let key = r#"["acme","shopimind","pg-11","access_token"]"#;
    let record: cartstream::topics::credentials::Credential =
        serde_json::from_slice(&last(key).expect("sealed for acme")).unwrap();
    let vault =
        cartstream::credentials::Vault::from_base64(crate::support::CREDENTIALS_KEY).unwrap();
    assert_eq!(
        vault.open_record(key.as_bytes(), &record).unwrap(),
        br#""int_type_b_token""#
    );

    // Its events, signed by the app, are acme's from now on, and move its lifecycle.
    let activated = signed_by_app(
        &daemon,
        br#"{"event":"integration.activated","installation_id":"pg-11","configs":{"list_id":"a"}}"#,
    )
    .await;
    assert_eq!(activated.status, 200, "{:?}", activated.body);
    assert_eq!(activated.json(), json!({"success": true}));
    let tenant = admin(&daemon, "GET", "/admin/v1/tenants/acme", "")
        .await
        .json();
    assert_eq!(
        tenant["integrations"][0]["installation"]["phase"], "active",
        "{tenant}"
    );
    let inbound = read_topic(&daemon.brokers, &daemon.topics.inbound);
    let activation = inbound
        .iter()
        .find(|r| r.headers["cartstream-event-type"] == "integration.activated")
        .expect("the activation is produced");
    assert_eq!(activation.headers["cartstream-tenant"], "acme");

    // The same browser again: the installation is acme's already, and it goes back again.
    let again = consent(&daemon, &back, Some(&cookie)).await;
    assert_eq!(again.status, 302, "{:?}", again.body);
    // Another tenant's link cannot take it.
    let globex = open_link(&daemon, "globex").await;
    let taken = consent(&daemon, &back, Some(&globex)).await;
    assert_eq!(taken.status, 409, "{:?}", taken.body);
    let tenant = admin(&daemon, "GET", "/admin/v1/tenants/globex", "")
        .await
        .json();
    assert_eq!(tenant["integrations"], json!([]), "{tenant}");
    daemon.stop().await;
}
