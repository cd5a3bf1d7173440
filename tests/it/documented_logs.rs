//! Secrets stay out of the logs (README: secrets "never appear in logs, metrics or answers";
//! docs/providers.md: payload secrets are sealed and redacted). A daemon running every role,
//! logging at debug, takes signed and forged webhooks on several platforms (shared secrets
//! presented in headers among them), a ShopiMind install carrying an access token, delivers
//! signed webhooks (one endpoint failing into the dead-letter topic) and answers admin actions
//! with the token and without it. Its whole log must hold none of the configured secrets,
//! tokens or keys — nor the payload's secrets — in clear, in hex or in base64.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use cartstream::clock::Clock;
use cartstream::providers;
use serde_json::json;

use crate::documented::{Receiver, Reply, Setup, TOKEN, WAIT};
use crate::support::{brokers, read_json_eventually, shopify_headers, Http, RoleProcess};

const SHOPIFY: &str = "logs-shopify-secret-5Jq8rT2w";
const SHOPIFY_OLD: &str = "logs-shopify-old-secret-Hs61xQ";
/// A Standard Webhooks secret: the key is the decoded bytes.
const STANDARD_SECRET: &str = "whsec_bG9ncy1zdGFuZGFyZC1rZXktMzItYnl0ZXMtMDAwMDAh";
const SALLA: &str = "logs-salla-token-Vb93kLp0";
const EASYORDERS: &str = "logs-easyorders-secret-Qw72mZ";
const SHOPIMIND: &str = "logs-shopimind-secret-Rt55nY";
const SHOPIMIND_APP: &str = "logs-shopimind-app-secret-Ue48";
const ENDPOINT: &str = "whsec_bG9ncy1lbmRwb2ludC1zaWduaW5nLWtleS0wMDAwMDE=";
const ENDPOINT_OLD: &str = "logs-endpoint-old-secret-Kd20";
const ERP: &str = "logs-erp-signing-secret-Ln39";
/// `ingress.credentials_key`: 32 bytes, base64.
const CREDENTIALS_KEY: &str = "bG9ncy1jcmVkZW50aWFscy1rZXktMzItYnl0ZXMhISE=";
const KAFKA_PASSWORD: &str = "logs-kafka-sasl-password-Zp17";
/// Secrets a ShopiMind install carries in its payload.
const ACCESS_TOKEN: &str = "int_logs_access_token_Mx84Gh";
const CONFIG_VALUE: &str = "logs-shopimind-config-value-Tc62";

fn tenants(crm: &str, erp: &str) -> String {
    format!(
        r#"
[[tenant]]
id = "acme"
inactivity_window = "1s"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "acme.myshopify.com"
  secret = "{SHOPIFY}"
  previous_secret = "{SHOPIFY_OLD}"
  [[tenant.integration]]
  provider = "standard"
  integration_key = "int_acme_standard_logs0001"
  secret = "{STANDARD_SECRET}"
  [[tenant.integration]]
  provider = "salla"
  merchant_id = "1305146709"
  secret = "{SALLA}"
  [[tenant.integration]]
  provider = "easyorders"
  secret = "{EASYORDERS}"
  [[tenant.integration]]
  provider = "shopimind"
  installation_id = "pg-logs"
  secret = "{SHOPIMIND}"
  [[tenant.endpoint]]
  id = "crm"
  url = "{crm}"
  secret = "{ENDPOINT}"
  previous_secret = "{ENDPOINT_OLD}"
  [[tenant.endpoint]]
  id = "erp"
  url = "{erp}"
  secret = "{ERP}"
  retry_schedule = ["0s"]
"#
    )
}

/// Every form of `secret` a log line could carry it in: itself, hex, and base64 in both
/// alphabets — also as part of a longer value ("Bearer …" encoded whole, say), where its bytes
/// start anywhere in a 3-byte group: only the characters that depend on its bytes alone are
/// looked for then.
fn encodings(secret: &[u8]) -> Vec<String> {
    let mut forms = vec![hex::encode(secret), hex::encode_upper(secret)];
    if let Ok(text) = std::str::from_utf8(secret) {
        forms.push(text.to_string());
    }
    for (padded, unpadded) in [(&STANDARD, &STANDARD_NO_PAD), (&URL_SAFE, &URL_SAFE_NO_PAD)] {
        forms.push(padded.encode(secret));
        for offset in 0..3 {
            let shifted = [&vec![0u8; offset][..], secret].concat();
            let text = unpadded.encode(&shifted);
            // The first group holds the filler's bits, a last partial one the next bytes'.
            let start = if offset == 0 { 0 } else { 4 };
            let end = shifted.len() / 3 * 4;
            forms.push(text[start..end].to_string());
        }
    }
    forms
}

/// The secrets of this test in every form, with what each is.
fn forbidden() -> std::collections::BTreeSet<(String, String)> {
    let mut forms = std::collections::BTreeSet::new();
    let plain = [
        SHOPIFY,
        SHOPIFY_OLD,
        STANDARD_SECRET,
        SALLA,
        EASYORDERS,
        SHOPIMIND,
        SHOPIMIND_APP,
        ENDPOINT,
        ENDPOINT_OLD,
        ERP,
        CREDENTIALS_KEY,
        KAFKA_PASSWORD,
        TOKEN,
        ACCESS_TOKEN,
        CONFIG_VALUE,
    ];
    for secret in plain {
        for form in encodings(secret.as_bytes()) {
            forms.insert((secret.to_string(), form));
        }
    }
    // Keys used as their decoded bytes.
    let decoded = [
        STANDARD
            .decode(STANDARD_SECRET.strip_prefix("whsec_").unwrap())
            .unwrap(),
        STANDARD
            .decode(ENDPOINT.strip_prefix("whsec_").unwrap())
            .unwrap(),
        STANDARD.decode(CREDENTIALS_KEY).unwrap(),
    ];
    for key in decoded {
        for form in encodings(&key) {
            forms.insert((format!("the key {}", hex::encode(&key)), form));
        }
    }
    forms
}

fn unix_now() -> u64 {
    #[allow(clippy::disallowed_methods)]
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn json_headers(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut headers = vec![("content-type", "application/json".to_string())];
    headers.extend(extra.iter().cloned());
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_logged_at_debug_shows_no_secret_in_any_encoding() {
    let crm = Receiver::start(Clock::System).await;
    let erp = Receiver::start(Clock::System).await;
    erp.by_default(Reply::Status(500));
    let setup = Setup::write(
        "documented-logs",
        &brokers(),
        &tenants(&crm.url(), &erp.url()),
        |config| {
            let ingress = config["ingress"].as_table_mut().unwrap();
            ingress.insert("credentials_key".into(), CREDENTIALS_KEY.into());
            ingress.insert("shopimind_app_secret".into(), SHOPIMIND_APP.into());
            ingress.insert("ack_timeout".into(), "20s".into());
            let client: toml::Table = toml::from_str(&format!(
                "\"sasl.username\" = \"cartstream\"\n\"sasl.password\" = \"{KAFKA_PASSWORD}\""
            ))
            .unwrap();
            config["kafka"]
                .as_table_mut()
                .unwrap()
                .insert("client".into(), client.into());
        },
    );
    let log = setup.dir.path().join("all.log");
    let process = RoleProcess::start_logging(
        "all",
        &setup.file,
        &[("RUST_LOG", "debug,cartstream=trace")],
        &log,
    );
    let http = Http::http1();
    setup.ready(&http).await;
    let url = |path: &str| format!("http://{}{path}", setup.ingress);
    let post = |path: &str, headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let (http, url) = (http.clone(), url(path));
        async move { http.post(&url, &headers, body).await.status.as_u16() }
    };

    // Shopify: the current and the previous secret, a forged signature, an unknown shop.
    let checkout = |cart: &str| {
        serde_json::to_vec(&json!({
            "id": 1, "token": format!("checkout-{cart}"), "cart_token": cart,
            "email": "bob@example.com", "total_price": "10.00", "currency": "USD",
            "updated_at": crate::documented::rfc3339(Clock::System.now_millis()),
        }))
        .unwrap()
    };
    let shop = "acme.myshopify.com";
    let body = checkout("cart-1");
    let signed = shopify_headers(SHOPIFY, shop, &body, "w-1");
    assert_eq!(post("/api/webhooks/shopify", signed, body).await, 200);
    let body = checkout("cart-2");
    let signed = shopify_headers(SHOPIFY_OLD, shop, &body, "w-2");
    assert_eq!(post("/api/webhooks/shopify", signed, body).await, 200);
    let body = checkout("cart-3");
    let forged = shopify_headers("not-the-secret-at-all", shop, &body, "w-3");
    assert_eq!(
        post("/api/webhooks/shopify", forged, body.clone()).await,
        401
    );
    let unknown = shopify_headers(SHOPIFY, "nobody.myshopify.com", &body, "w-4");
    assert_eq!(post("/api/webhooks/shopify", unknown, body).await, 401);

    // Standard Webhooks: signed with the key, and forged.
    let key = providers::Key::new(
        &STANDARD
            .decode(STANDARD_SECRET.strip_prefix("whsec_").unwrap())
            .unwrap(),
    );
    let now = unix_now();
    let body = br#"{"type":"contact.created","data":{"id":"c-1"}}"#.to_vec();
    let standard = |signature: String| {
        json_headers(&[
            ("webhook-id", "msg_logs_1".to_string()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", signature),
        ])
    };
    let path = "/api/webhooks/standard/int_acme_standard_logs0001";
    let good = standard(providers::standard::sign(&key, "msg_logs_1", now, &body));
    assert_eq!(post(path, good, body.clone()).await, 200);
    let bad = standard(format!("v1,{}", STANDARD.encode([7u8; 32])));
    assert_eq!(post(path, bad, body).await, 401);

    // Salla with its token in the Authorization header, right and wrong.
    let body = br#"{"event":"abandoned.cart","merchant":1305146709,"data":{"id":1}}"#.to_vec();
    for (token, status) in [(SALLA, 200), ("logs-wrong-salla-token-0000", 401)] {
        let headers = json_headers(&[
            ("x-salla-security-strategy", "Token".to_string()),
            ("authorization", format!("Bearer {token}")),
        ]);
        assert_eq!(
            post("/api/webhooks/salla", headers, body.clone()).await,
            status
        );
    }

    // EasyOrders: the secret itself in a header, right and wrong.
    let body = crate::support::fixture("easyorders/docs_order_created.json");
    for (secret, status) in [(EASYORDERS, 200), ("logs-wrong-easyorders-0000", 401)] {
        let headers = json_headers(&[("secret", secret.to_string())]);
        assert_eq!(
            post("/api/webhooks/easyorders", headers, body.clone()).await,
            status
        );
    }

    // A ShopiMind install, its access token and configuration in the payload.
    let install = serde_json::to_vec(&json!({
        "event": "integration.installed", "installation_id": "pg-logs",
        "access_token": ACCESS_TOKEN, "shop_domain": "logs.shop",
        "configs": {"api_key": CONFIG_VALUE},
    }))
    .unwrap();
    let shopimind = |secret: &str| {
        json_headers(&[
            ("x-shopimind-timestamp", now.to_string()),
            (
                "x-shopimind-signature",
                providers::shopimind::sign(secret.as_bytes(), now, &install),
            ),
        ])
    };
    assert_eq!(
        post(
            "/api/webhooks/shopimind",
            shopimind(SHOPIMIND),
            install.clone()
        )
        .await,
        200
    );
    assert_eq!(
        post(
            "/api/webhooks/shopimind",
            shopimind("logs-wrong"),
            install.clone()
        )
        .await,
        401
    );

    // The two checkouts are abandoned a second later: signed deliveries to both endpoints, one
    // failing into the dead-letter topic.
    crm.arrived_eventually(2).await;
    let topics = setup.config.kafka.topics();
    read_json_eventually(&setup.config.kafka.brokers, &topics.dead_letters, 2, WAIT).await;

    // Admin actions with the token, and with a wrong one.
    let admin = |path: &str, token: &str, body: serde_json::Value| {
        let (http, url) = (http.clone(), setup.admin_url(path));
        let bearer = [("authorization", format!("Bearer {token}"))];
        async move {
            http.post(&url, &bearer, body.to_string())
                .await
                .status
                .as_u16()
        }
    };
    let endpoint = json!({"tenant_id": "acme", "endpoint_id": "crm"});
    assert_eq!(
        admin("/admin/endpoints/test", TOKEN, endpoint.clone()).await,
        200
    );
    assert_eq!(
        admin("/admin/endpoints/test", "logs-wrong-token-000000", endpoint).await,
        401
    );
    assert_eq!(
        admin("/admin/dead-letters/redrive", TOKEN, json!({})).await,
        200
    );
    let listed = http
        .send(
            "GET",
            &setup.admin_url("/admin/deliveries?state=dead"),
            &[("authorization", format!("Bearer {TOKEN}"))],
            Bytes::new(),
        )
        .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    erp.arrived_eventually(4).await;
    crate::support::process_settled(
        setup.admin,
        cartstream::telemetry::metrics::DELIVERY_SETTLED,
    )
    .await;
    process.kill();

    let text = std::fs::read_to_string(&log).unwrap();
    // The run was logged at debug, each refusal included.
    for provider in ["shopify", "standard", "salla", "easyorders", "shopimind"] {
        let refused = format!("DEBUG cartstream::ingress: webhook refused provider=\"{provider}\"");
        assert!(
            text.contains(&refused),
            "{refused:?} is not in the log: {text}"
        );
    }
    let leaks: Vec<String> = forbidden()
        .into_iter()
        .filter(|(_, form)| text.contains(form.as_str()))
        .map(|(secret, form)| {
            let line = text
                .lines()
                .find(|line| line.contains(form.as_str()))
                .unwrap();
            format!("{secret} as {form}, in: {line}")
        })
        .collect();
    assert!(leaks.is_empty(), "secrets in the log: {leaks:#?}");
}
