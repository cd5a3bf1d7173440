//! A ShopiMind installation's lifecycle through the ingress, with tenants from the topic: each
//! signed event moves it in the order it was sent, whatever order it arrives in; every event,
//! duplicates and late ones included, is answered `{"success":true}`; what changes nothing is
//! not kept; the uninstall forgets the sealed token and configuration.

use std::time::{SystemTime, UNIX_EPOCH};

use cartstream::providers;
use serde_json::{json, Value};

use crate::support::{read_topic, Answer, Http, TestDaemon};

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
    let headers = vec![
        ("content-type", "application/json".to_string()),
        ("x-shopimind-timestamp", sent_at.to_string()),
        (
            "x-shopimind-signature",
            providers::shopimind::sign(SECRET.as_bytes(), sent_at, &body),
        ),
    ];
    Http::http1()
        .post(&daemon.url("/api/webhooks/shopimind"), &headers, body)
        .await
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t0 = now - 250;
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = br#"{"event":"integration.installed","installation_id":"pg-9","access_token":"int_held_token","shop_domain":"demo.shop"}"#.to_vec();
    let headers = vec![
        ("content-type", "application/json".to_string()),
        ("x-shopimind-timestamp", now.to_string()),
        (
            "x-shopimind-signature",
            providers::shopimind::sign(APP_SECRET.as_bytes(), now, &body),
        ),
    ];
    let install = Http::http1()
        .post(&daemon.url("/api/webhooks/shopimind"), &headers, body)
        .await;
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
    let last = |key: &str| {
        credentials
            .iter()
            .rev()
            .find(|r| r.key.as_deref() == Some(key.as_bytes()))
            .map(|r| r.value.clone())
    };
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
