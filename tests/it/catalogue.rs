//! Every platform of the catalogue (SPEC §2.1) through the running daemon: a genuine delivery is
//! answered 200 and lands on the inbound topic byte for byte; a tampered body, a wrong or missing
//! secret, and a secret of one tenant naming another tenant's store are 401 and produce nothing.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use cartstream::providers::{self, Key};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::{
    credentials_command, fixture, read_topic, Http, TestDaemon, CREDENTIALS_KEY_VARIABLE,
};

const TENANTS: &str = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "zid"
  store_id = "1"
  secret = "acme-zid-user:acme-zid-pass"

  [[tenant.integration]]
  provider = "easyorders"
  secret = "acme-easyorders-secret"

  [[tenant.integration]]
  provider = "vendera"
  integration_key = "int_acme_vendera_0000001"
  secret = "acme-vendera-secret"
  scheme = { auth = "hmac-base64", header = "X-Vendera-Signature", event_type_path = "event", delivery_id_path = "data.id" }

  [[tenant.integration]]
  provider = "flexype"
  flexype_store = "store_acme"
  secret = "acme-flexype-secret"

  [[tenant.integration]]
  provider = "shopimind"
  installation_id = "pg-1"
  secret = "acme-shopimind-secret"

  [[tenant.integration]]
  provider = "sprusify"
  store_id = "store_acme"
  secret = "acme-sprusify-secret"

  [[tenant.integration]]
  provider = "shopery"
  integration_key = "int_acme_shopery_0000001"
  secret = "acme-shopery-secret"

[[tenant]]
id = "globex"
  [[tenant.integration]]
  provider = "zid"
  store_id = "2"
  integration_key = "int_globex_zid_000000001"
  secret = "globex-zid-secret"
  event = "order.create"

  [[tenant.integration]]
  provider = "easyorders"
  integration_key = "int_globex_easyorders_01"
  secret = "globex-easyorders-secret"

  [[tenant.integration]]
  provider = "vendera"
  integration_key = "int_globex_vendera_000001"
  secret = "globex-vendera-secret"
  scheme = { auth = "token", header = "X-Vendera-Secret" }

  [[tenant.integration]]
  provider = "flexype"
  flexype_store = "store_globex"
  secret = "globex-flexype-secret"

  [[tenant.integration]]
  provider = "shopimind"
  installation_id = "pg-2"
  secret = "globex-shopimind-secret"

  [[tenant.integration]]
  provider = "sprusify"
  store_id = "store_globex"
  secret = "globex-sprusify-secret"

  [[tenant.integration]]
  provider = "shopery"
  integration_key = "int_globex_shopery_000001"
  secret = "globex-shopery-secret"

[[tenant]]
id = "initech"
  # Vendera without a scheme: in beta, off.
  [[tenant.integration]]
  provider = "vendera"
  integration_key = "int_initech_vendera_00001"
  secret = "initech-vendera-secret"
"#;

type Headers = Vec<(&'static str, String)>;

/// One request: path, headers, body.
struct Delivery {
    path: String,
    headers: Headers,
    body: Vec<u8>,
}

impl Delivery {
    fn new(path: &str, headers: Headers, body: &[u8]) -> Self {
        Delivery {
            path: path.to_string(),
            headers,
            body: body.to_vec(),
        }
    }

    /// The same delivery with a space inserted after the body's opening brace: still the same
    /// JSON (so the clue still names the same store), but not the bytes that were signed.
    fn tampered(mut self) -> Self {
        assert_eq!(self.body.first(), Some(&b'{'));
        self.body.insert(1, b' ');
        self
    }

    fn without(mut self, header: &str) -> Self {
        self.headers.retain(|(name, _)| *name != header);
        self
    }
}

/// What the genuine delivery must become.
struct Expected<'a> {
    tenant: &'a str,
    event_type: Option<&'a str>,
    delivery_id: String,
    answer: Value,
}

fn json_headers(extra: &[(&'static str, String)]) -> Headers {
    let mut headers = vec![("content-type", "application/json".to_string())];
    headers.extend_from_slice(extra);
    headers
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends every forgery (each must be 401), then the genuine delivery (200), and checks that
/// the genuine delivery is the only record on the inbound topic.
async fn check(
    provider: &str,
    forgeries: Vec<(&str, Delivery)>,
    genuine: Delivery,
    expected: Expected<'_>,
) {
    let daemon = TestDaemon::builder(&format!("catalogue-{provider}"))
        .tenants(TENANTS)
        .start()
        .await;
    let http = Http::http1();
    for (what, forgery) in &forgeries {
        let answer = http
            .post(
                &daemon.url(&forgery.path),
                &forgery.headers,
                forgery.body.clone(),
            )
            .await;
        assert_eq!(answer.status, 401, "{provider}: {what}: {answer:?}");
        assert!(answer.json()["error"].is_string(), "{provider}: {what}");
    }
    let answer = http
        .post(
            &daemon.url(&genuine.path),
            &genuine.headers,
            genuine.body.clone(),
        )
        .await;
    assert_eq!(answer.status, 200, "{provider}: genuine: {answer:?}");
    assert_eq!(answer.json(), expected.answer, "{provider}");

    let records = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(
        records.len(),
        1,
        "{provider}: only the genuine delivery is produced: {records:?}"
    );
    let record = &records[0];
    assert_eq!(record.value, genuine.body, "{provider}: byte for byte");
    assert_eq!(record.key.as_deref(), Some(expected.tenant.as_bytes()));
    assert_eq!(record.headers["cartstream-tenant"], expected.tenant);
    assert_eq!(record.headers["cartstream-provider"], provider);
    assert_eq!(
        record
            .headers
            .get("cartstream-event-type")
            .map(String::as_str),
        expected.event_type,
        "{provider}"
    );
    assert_eq!(
        record.headers["cartstream-delivery-id"], expected.delivery_id,
        "{provider}"
    );
    daemon.stop().await;
}

fn ok() -> Value {
    json!({"ok": true})
}

/// The headers of a ShopiMind delivery of `body`, signed now with acme's webhook secret.
fn shopimind_signed(body: &[u8]) -> Headers {
    let now = unix_now();
    json_headers(&[
        ("x-shopimind-timestamp", now.to_string()),
        (
            "x-shopimind-signature",
            providers::shopimind::sign(b"acme-shopimind-secret", now, body),
        ),
    ])
}

/// The delivery id of a body of a platform whose payloads carry secrets, by the documented
/// rule (docs/topics.md), computed here: `sha256:` and the hex HMAC-SHA256 of the body under
/// HMAC-SHA256(credentials key, "cartstream delivery id").
fn keyed_delivery_id(body: &[u8]) -> String {
    let hmac = |key: &[u8], message: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    };
    let credentials_key = BASE64.decode(crate::support::CREDENTIALS_KEY).unwrap();
    let id_key = hmac(&credentials_key, b"cartstream delivery id");
    format!("sha256:{}", hex::encode(hmac(&id_key, body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zid_deliveries_are_signed_or_carry_basic_credentials() {
    fn signed(secret: &str, body: &[u8]) -> Headers {
        json_headers(&[(
            "x-zid-signature",
            providers::zid::sign(secret.as_bytes(), body),
        )])
    }
    fn basic(credentials: &str) -> Headers {
        json_headers(&[("authorization", providers::zid::basic(credentials))])
    }
    let order = fixture("zid/derived_order_object_from_sdk_fixture.json");
    let globex_order = br#"{"id":7,"store_id":2,"event":"order.create"}"#;
    let secret = "acme-zid-user:acme-zid-pass";
    let path = "/api/webhooks/zid";
    let forgeries = vec![
        (
            "tampered body",
            Delivery::new(path, signed(secret, &order), &order).tampered(),
        ),
        (
            "wrong secret",
            Delivery::new(path, signed("not-the-secret", &order), &order),
        ),
        (
            "wrong credentials",
            Delivery::new(path, basic("acme-zid-user:guess"), &order),
        ),
        (
            "no signature and no credentials",
            Delivery::new(path, json_headers(&[]), &order),
        ),
        (
            "acme's secret naming globex's store",
            Delivery::new(path, signed(secret, globex_order), globex_order),
        ),
        (
            "acme's credentials with globex's integration key",
            Delivery::new(
                "/api/webhooks/zid/int_globex_zid_000000001",
                basic(secret),
                globex_order,
            ),
        ),
    ];
    // Basic credentials, the way Zid's own API sends them; the signed form is covered by the
    // vectors and by the forgeries above being refused for the right reason only.
    let genuine = Delivery::new(path, basic(secret), &order);
    check(
        "zid",
        forgeries,
        genuine,
        Expected {
            tenant: "acme",
            event_type: None,
            delivery_id: providers::body_hash_id(&order),
            answer: ok(),
        },
    )
    .await;
}

/// A signed delivery to globex's Zid integration key is accepted with the integration's event.
async fn zid_by_integration_key(body: &[u8]) {
    let headers = json_headers(&[(
        "x-zid-signature",
        providers::zid::sign(b"globex-zid-secret", body),
    )]);
    let genuine = Delivery::new("/api/webhooks/zid/int_globex_zid_000000001", headers, body);
    check(
        "zid",
        vec![],
        genuine,
        Expected {
            tenant: "globex",
            event_type: Some("order.create"),
            delivery_id: providers::body_hash_id(body),
            answer: ok(),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zid_signed_deliveries_by_integration_key_are_accepted() {
    zid_by_integration_key(br#"{"id":7,"store_id":2,"event":"order.create"}"#).await;
}

/// Zid subscribes one URL per event and its order payloads need not name it: the integration's
/// `event` fills the record's event type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zid_deliveries_naming_no_event_carry_their_integrations_event() {
    zid_by_integration_key(br#"{"id":8,"store_id":2,"order_total":"10.00","currency_code":"SAR"}"#)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn easyorders_secrets_name_and_authenticate_their_integration() {
    fn with_secret(secret: &str) -> Headers {
        json_headers(&[("secret", secret.to_string())])
    }
    let order = fixture("easyorders/docs_order_created.json");
    let path = "/api/webhooks/easyorders";
    let forgeries = vec![
        (
            "unknown secret",
            Delivery::new(path, with_secret("acme-easyorders-secreT"), &order),
        ),
        (
            "no secret",
            Delivery::new(path, with_secret("x"), &order).without("secret"),
        ),
        (
            "acme's secret with globex's integration key",
            Delivery::new(
                "/api/webhooks/easyorders/int_globex_easyorders_01",
                with_secret("acme-easyorders-secret"),
                &order,
            ),
        ),
        (
            "another provider's secret",
            Delivery::new(path, with_secret("acme-shopery-secret"), &order),
        ),
    ];
    let genuine = Delivery::new(path, with_secret("acme-easyorders-secret"), &order);
    check(
        "easyorders",
        forgeries,
        genuine,
        Expected {
            tenant: "acme",
            event_type: Some("order.created"),
            // The order id names the order, not the delivery: the body identifies it.
            delivery_id: providers::body_hash_id(&order),
            answer: ok(),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn easyorders_status_changes_by_integration_key_are_accepted() {
    let change = fixture("easyorders/docs_order_status_change.json");
    let genuine = Delivery::new(
        "/api/webhooks/easyorders/int_globex_easyorders_01",
        json_headers(&[("secret", "globex-easyorders-secret".to_string())]),
        &change,
    );
    check(
        "easyorders",
        vec![],
        genuine,
        Expected {
            tenant: "globex",
            event_type: Some("order-status-update"),
            delivery_id: providers::body_hash_id(&change),
            answer: ok(),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendera_deliveries_follow_the_integrations_scheme() {
    fn signed(secret: &str, body: &[u8]) -> Headers {
        let tag = Key::new(secret.as_bytes()).sign(&[body]);
        json_headers(&[("x-vendera-signature", BASE64.encode(tag))])
    }
    let body = br#"{"event":"checkout.updated","data":{"id":"chk_81","total":"12.50"}}"#;
    let acme = "/api/webhooks/vendera/int_acme_vendera_0000001";
    let globex = "/api/webhooks/vendera/int_globex_vendera_000001";
    let initech = "/api/webhooks/vendera/int_initech_vendera_00001";
    let forgeries = vec![
        (
            "tampered body",
            Delivery::new(acme, signed("acme-vendera-secret", body), body).tampered(),
        ),
        (
            "wrong secret",
            Delivery::new(acme, signed("not-the-secret", body), body),
        ),
        (
            "missing signature",
            Delivery::new(acme, json_headers(&[]), body),
        ),
        (
            "acme's signature with globex's integration key",
            Delivery::new(globex, signed("acme-vendera-secret", body), body),
        ),
        (
            "acme's secret as globex's token",
            Delivery::new(
                globex,
                json_headers(&[("x-vendera-secret", "acme-vendera-secret".to_string())]),
                body,
            ),
        ),
        (
            "an integration without a scheme",
            Delivery::new(
                initech,
                json_headers(&[
                    ("x-vendera-secret", "initech-vendera-secret".to_string()),
                    ("x-vendera-signature", {
                        let tag = Key::new(b"initech-vendera-secret").sign(&[body]);
                        BASE64.encode(tag)
                    }),
                ]),
                body,
            ),
        ),
    ];
    let genuine = Delivery::new(acme, signed("acme-vendera-secret", body), body);
    check(
        "vendera",
        forgeries,
        genuine,
        Expected {
            tenant: "acme",
            event_type: Some("checkout.updated"),
            // The configured field names the checkout: its value, then the body's digest.
            delivery_id: format!("chk_81:{}", &providers::body_hash_id(body)[7..23]),
            answer: ok(),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendera_token_schemes_are_accepted() {
    let body = br#"{"type":"order"}"#;
    let genuine = Delivery::new(
        "/api/webhooks/vendera/int_globex_vendera_000001",
        json_headers(&[("x-vendera-secret", "globex-vendera-secret".to_string())]),
        body,
    );
    check(
        "vendera",
        vec![],
        genuine,
        Expected {
            tenant: "globex",
            event_type: None,
            delivery_id: providers::body_hash_id(body),
            answer: ok(),
        },
    )
    .await;
}

fn flexype_body(store: &str) -> Vec<u8> {
    json!({
        "event_time": "2026-05-07T10:00:00Z",
        "event_type": "ACR_CHECKOUT",
        "event_id": "evt_123456789",
        "store": {"id": store, "name": "My Awesome Store", "shopify_domain": "my-store.myshopify.com"},
        "payload": {"user": {"email": "john.doe@example.com", "full_name": "John Doe"}}
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flexype_deliveries_carry_the_secret_for_their_store() {
    fn with_secret(secret: &str) -> Headers {
        json_headers(&[
            ("x-flexype-authorization", secret.to_string()),
            ("x-webhook-version", "2026-05".to_string()),
            ("x-event-id", "evt_123456789".to_string()),
        ])
    }
    let body = flexype_body("store_acme");
    let path = "/api/webhooks/flexype";
    let forgeries = vec![
        (
            "wrong secret",
            Delivery::new(path, with_secret("acme-flexype-secreT"), &body),
        ),
        (
            "missing secret",
            Delivery::new(path, with_secret("x"), &body).without("x-flexype-authorization"),
        ),
        (
            "acme's secret naming globex's store",
            Delivery::new(
                path,
                with_secret("acme-flexype-secret"),
                &flexype_body("store_globex"),
            ),
        ),
        (
            "an unknown store",
            Delivery::new(
                path,
                with_secret("acme-flexype-secret"),
                &flexype_body("store_nobody"),
            ),
        ),
    ];
    let genuine = Delivery::new(path, with_secret("acme-flexype-secret"), &body);
    check(
        "flexype",
        forgeries,
        genuine,
        Expected {
            tenant: "acme",
            event_type: Some("ACR_CHECKOUT"),
            delivery_id: "evt_123456789".to_string(),
            answer: ok(),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopimind_deliveries_are_signed_fresh_and_answered_success() {
    fn signed_at(secret: &str, timestamp: u64, body: &[u8]) -> Headers {
        json_headers(&[
            ("x-shopimind-timestamp", timestamp.to_string()),
            (
                "x-shopimind-signature",
                providers::shopimind::sign(secret.as_bytes(), timestamp, body),
            ),
        ])
    }
    // A lifecycle event that carries no secret is produced byte for byte (the ones that carry
    // secrets: `shopimind_secrets_in_payloads_are_sealed_and_never_produced_in_clear`).
    let body =
        br#"{"event":"integration.deactivated","installation_id":"pg-1","shop_domain":"demo.shop"}"#
            .to_vec();
    let globex_body = br#"{"event":"integration.activated","installation_id":"pg-2"}"#;
    let secret = "acme-shopimind-secret";
    let now = unix_now();
    let path = "/api/webhooks/shopimind";
    let forgeries = vec![
        (
            "tampered body",
            Delivery::new(path, signed_at(secret, now, &body), &body).tampered(),
        ),
        (
            "wrong secret",
            Delivery::new(path, signed_at("not-the-secret", now, &body), &body),
        ),
        (
            "missing signature",
            Delivery::new(path, signed_at(secret, now, &body), &body)
                .without("x-shopimind-signature"),
        ),
        (
            "timestamp older than 300 s",
            Delivery::new(path, signed_at(secret, now - 301, &body), &body),
        ),
        (
            "timestamp past the end of time",
            Delivery::new(path, signed_at(secret, u64::MAX, &body), &body),
        ),
        (
            "acme's secret naming globex's installation",
            Delivery::new(path, signed_at(secret, now, globex_body), globex_body),
        ),
    ];
    let genuine = Delivery::new(path, signed_at(secret, now, &body), &body);
    check(
        "shopimind",
        forgeries,
        genuine,
        Expected {
            tenant: "acme",
            event_type: Some("integration.deactivated"),
            delivery_id: keyed_delivery_id(&body),
            answer: json!({"success": true}),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopimind_secrets_in_payloads_are_sealed_and_never_produced_in_clear() {
    fn signed(body: &[u8]) -> Vec<(&'static str, String)> {
        let now = unix_now();
        let signature = providers::shopimind::sign(b"acme-shopimind-secret", now, body);
        vec![
            ("content-type", "application/json".to_string()),
            ("x-shopimind-timestamp", now.to_string()),
            ("x-shopimind-signature", signature),
        ]
    }
    let daemon = TestDaemon::builder("shopimind-secrets")
        .tenants(TENANTS)
        .start()
        .await;
    let http = Http::http1();
    // The install carries the API key, sent only this once, and configuration values.
    let installed = fixture("shopimind/kit_test_integration_installed.json");
    let updated = br#"{"event":"integration.config_updated","installation_id":"pg-1","configs":{"api_key":"NEWER-SECRET","colour":"blue"}}"#;
    for body in [&installed[..], &updated[..]] {
        let answer = http
            .post(
                &daemon.url("/api/webhooks/shopimind"),
                &signed(body),
                body.to_vec(),
            )
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.json(), json!({"success": true}));
    }

    // The inbound records: the same members, the secrets redacted, nothing in clear.
    let inbound = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(inbound.len(), 2, "{inbound:?}");
    for record in &inbound {
        let text = String::from_utf8_lossy(&record.value);
        for secret in ["int_T", "SUPER-SECRET", "NEWER-SECRET", "blue"] {
            assert!(
                !text.contains(secret),
                "{secret} in clear on the inbound topic: {text}"
            );
        }
    }
    let first: Value = serde_json::from_slice(&inbound[0].value).unwrap();
    assert_eq!(
        first,
        json!({"event": "integration.installed", "installation_id": "pg-1",
               "access_token": "[redacted]", "shop_domain": "demo.shop", "configs": "[redacted]"})
    );
    // A retry of the same delivery is still recognised: the id is a digest of the body sent,
    // keyed, so that it cannot confirm a guess of the redacted values.
    assert_eq!(
        inbound[0].headers["cartstream-delivery-id"],
        keyed_delivery_id(&installed)
    );
    assert_ne!(
        inbound[0].headers["cartstream-delivery-id"],
        providers::body_hash_id(&installed)
    );

    // The credentials topic: one record per field, sealed, bound to its key.
    let sealed = read_topic(&daemon.brokers, &daemon.topics.credentials);
    assert_eq!(
        sealed.len(),
        3,
        "installed: token + configs, updated: configs"
    );
    for record in &sealed {
        let text = String::from_utf8_lossy(&record.value);
        for secret in ["int_T", "SUPER-SECRET", "NEWER-SECRET", "blue"] {
            assert!(!text.contains(secret), "{secret} in clear: {text}");
        }
    }
    let credential_schema = crate::support::schema("credentials.v1.json");
    let vault =
        cartstream::credentials::Vault::from_base64(crate::support::CREDENTIALS_KEY).unwrap();
    let token_key =
        cartstream::topics::credentials::record_key("acme", "shopimind", "pg-1", "access_token");
    let token = sealed
        .iter()
        .find(|r| r.key.as_deref() == Some(token_key.as_bytes()))
        .expect("the access token is kept");
    let record_json: Value = serde_json::from_slice(&token.value).unwrap();
    assert!(credential_schema.is_valid(&record_json), "{record_json}");
    let record: cartstream::topics::credentials::Credential =
        serde_json::from_value(record_json).unwrap();
    assert_eq!(record.delivery_id, keyed_delivery_id(&installed));
    assert_eq!(
        vault.open_record(token_key.as_bytes(), &record).unwrap(),
        br#""int_T""#
    );

    // The operator reads them back: the latest value of each field, the token of the install
    // kept past the later configuration change.
    let (_dir, config) = daemon.credentials_config();
    let lines: Vec<Value> = credentials_command(&config, &["--tenant", "acme"])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let values: Vec<(&str, &Value)> = lines
        .iter()
        .map(|l| (l["field"].as_str().unwrap(), &l["value"]))
        .collect();
    assert_eq!(
        values,
        [
            ("access_token", &json!("int_T")),
            (
                "configs",
                &json!({"api_key": "NEWER-SECRET", "colour": "blue"})
            )
        ]
    );
    assert!(lines.iter().all(|l| l["installation"] == "pg-1"));

    // Another key opens nothing, and says so.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cartstream"))
        .args(["credentials", "--config"])
        .arg(&config)
        .env(
            CREDENTIALS_KEY_VARIABLE,
            "b3RoZXIta2V5LXRoYXQtb3BlbnMtbm90aGluZyEhISE=",
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not this key"),
        "{output:?}"
    );
    daemon.stop().await;
}

/// A body of a platform whose payloads carry secrets is read member by member to take them
/// out. One that cannot be read so — bytes that are not UTF-8 in another member, an array — is
/// refused 400: never produced as it came, its secrets in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopimind_bodies_whose_members_cannot_be_read_are_refused_and_nothing_produced() {
    let daemon = TestDaemon::builder("shopimind-unreadable")
        .tenants(TENANTS)
        .start()
        .await;
    let http = Http::http1();
    let latin1 = b"{\"event\":\"integration.installed\",\"installation_id\":\"pg-1\",\"access_token\":\"int_T\",\"shop_name\":\"Caf\xe9\"}";
    let array = br#"["integration.installed","pg-1","int_T"]"#;
    for body in [&latin1[..], &array[..]] {
        let answer = http
            .post(
                &daemon.url("/api/webhooks/shopimind"),
                &shopimind_signed(body),
                body.to_vec(),
            )
            .await;
        assert_eq!(answer.status, 400, "{answer:?}");
        assert!(answer.json()["error"].is_string(), "{answer:?}");
    }
    assert!(read_topic(&daemon.brokers, &daemon.topics.inbound).is_empty());
    assert!(read_topic(&daemon.brokers, &daemon.topics.credentials).is_empty());
    daemon.stop().await;
}

/// A secret member named twice (or spelt once plainly and once with escapes) leaves no telling
/// which value the platform meant: the delivery is refused 400, nothing is produced or sealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopimind_bodies_repeating_a_secret_member_are_refused_and_nothing_produced() {
    let daemon = TestDaemon::builder("shopimind-repeated")
        .tenants(TENANTS)
        .start()
        .await;
    let http = Http::http1();
    let twice = br#"{"event":"integration.installed","installation_id":"pg-1","access_token":"int_A","access_token":"int_B"}"#;
    let escaped = br#"{"event":"integration.config_updated","installation_id":"pg-1","configs":{"k":1},"config\u0073":{"k":2}}"#;
    for (body, field) in [(&twice[..], "access_token"), (&escaped[..], "configs")] {
        let answer = http
            .post(
                &daemon.url("/api/webhooks/shopimind"),
                &shopimind_signed(body),
                body.to_vec(),
            )
            .await;
        assert_eq!(answer.status, 400, "{answer:?}");
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(error.contains(field), "{error}");
    }
    assert!(read_topic(&daemon.brokers, &daemon.topics.inbound).is_empty());
    assert!(read_topic(&daemon.brokers, &daemon.topics.credentials).is_empty());
    daemon.stop().await;
}

/// `cartstream credentials` prints raw secrets into a pipe or a file; onto a terminal (here a
/// pseudo-terminal made by `script`) only with `--reveal`, and without it says so on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credentials_command_prints_secrets_on_a_terminal_only_with_reveal() {
    let daemon = TestDaemon::builder("shopimind-reveal")
        .tenants(TENANTS)
        .start()
        .await;
    let body = br#"{"event":"integration.installed","installation_id":"pg-1","access_token":"int_TERMINAL_T"}"#;
    let answer = Http::http1()
        .post(
            &daemon.url("/api/webhooks/shopimind"),
            &shopimind_signed(body),
            body.to_vec(),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let (_dir, config) = daemon.credentials_config();
    // `script -qec COMMAND /dev/null` runs COMMAND with a pseudo-terminal as its stdout and
    // stderr, and copies what it shows to its own stdout.
    let on_terminal = |extra: &str| {
        let command = format!(
            "'{}' credentials --config '{}' {extra}",
            env!("CARGO_BIN_EXE_cartstream"),
            config.display()
        );
        let output = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env(CREDENTIALS_KEY_VARIABLE, crate::support::CREDENTIALS_KEY)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("`script` (util-linux) makes the terminal");
        let shown = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status, shown)
    };
    let (status, shown) = on_terminal("");
    assert!(!status.success(), "{shown}");
    assert!(!shown.contains("int_TERMINAL_T"), "{shown}");
    assert!(shown.contains("--reveal"), "{shown}");
    let (status, shown) = on_terminal("--reveal");
    assert!(status.success(), "{shown}");
    assert!(shown.contains("int_TERMINAL_T"), "{shown}");
    // Into a pipe, as before.
    assert!(credentials_command(&config, &[]).contains("int_TERMINAL_T"));
    daemon.stop().await;
}

fn sprusify_body(store: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"12345","store_id":"{store}","event":"conversion.created","total":99.95,"affiliate_id":"aff_678","coupons":["AFF10"]}}"#
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sprusify_deliveries_are_signed_in_hex_or_base64() {
    fn signed(secret: &str, body: &[u8]) -> Headers {
        json_headers(&[(
            "x-spru-signature",
            providers::sprusify::sign(secret.as_bytes(), body),
        )])
    }
    let body = sprusify_body("store_acme");
    let secret = "acme-sprusify-secret";
    let path = "/api/webhooks/sprusify";
    let base64 = json_headers(&[(
        "x-spru-signature",
        BASE64.encode(Key::new(secret.as_bytes()).sign(&[&body])),
    )]);
    let forgeries = vec![
        (
            "tampered body",
            Delivery::new(path, signed(secret, &body), &body).tampered(),
        ),
        (
            "tampered body, base64 signature",
            Delivery::new(path, base64.clone(), &body).tampered(),
        ),
        (
            "wrong secret",
            Delivery::new(path, signed("not-the-secret", &body), &body),
        ),
        (
            "missing signature",
            Delivery::new(path, json_headers(&[]), &body),
        ),
        (
            "acme's secret naming globex's store",
            Delivery::new(
                path,
                signed(secret, &sprusify_body("store_globex")),
                &sprusify_body("store_globex"),
            ),
        ),
    ];
    let genuine = Delivery::new(path, base64, &body);
    check(
        "sprusify",
        forgeries,
        genuine,
        Expected {
            tenant: "acme",
            event_type: Some("conversion.created"),
            delivery_id: providers::body_hash_id(&body),
            answer: ok(),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopery_deliveries_carry_the_secret_of_their_integration_key() {
    fn with_secret(secret: &str) -> Headers {
        json_headers(&[("x-shopery-secret", secret.to_string())])
    }
    let body = br#"{"id":"ord_01HA4XCG60CT4G3EWF4CKYM1MF","event":"order-created","data":{"total":"10.00"}}"#;
    let acme = "/api/webhooks/shopery/int_acme_shopery_0000001";
    let forgeries = vec![
        (
            "wrong secret",
            Delivery::new(acme, with_secret("acme-shopery-secreT"), body),
        ),
        (
            "missing secret",
            Delivery::new(acme, json_headers(&[]), body),
        ),
        (
            "acme's secret with globex's integration key",
            Delivery::new(
                "/api/webhooks/shopery/int_globex_shopery_000001",
                with_secret("acme-shopery-secret"),
                body,
            ),
        ),
    ];
    let genuine = Delivery::new(acme, with_secret("acme-shopery-secret"), body);
    check(
        "shopery",
        forgeries,
        genuine,
        Expected {
            tenant: "acme",
            event_type: Some("order-created"),
            delivery_id: providers::body_hash_id(body),
            answer: ok(),
        },
    )
    .await;
}

/// Integrations of the platforms the catalogue's tenants lack, for the oracle test.
const MORE_TENANTS: &str = r#"
[[tenant]]
id = "hooli"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "hooli.myshopify.com"
  secret = "hooli-shopify-secret"

  [[tenant.integration]]
  provider = "salla"
  merchant_id = "1305146709"
  secret = "hooli-salla-secret"

  [[tenant.integration]]
  provider = "standard"
  integration_key = "int_hooli_standard_000001"
  secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"#;

/// Path, headers, body.
type Request = (String, Headers, Vec<u8>);

/// Asking the ingress whether a tenant exists must teach nothing: for every platform, a
/// delivery naming a tenant that does not exist (by clue, by integration key, by secret) is
/// answered exactly as one naming an existing tenant with a wrong signature — same status,
/// same body — whatever key signed it. (Both also do the same verification work; see
/// `Keys::unknown_tenant`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tenant_is_answered_like_a_wrong_signature_on_every_platform() {
    let daemon = TestDaemon::builder("catalogue-oracle")
        .tenants(&format!("{TENANTS}{MORE_TENANTS}"))
        .start()
        .await;
    let http = Http::http1();
    let now = unix_now();
    // A wrong secret, and the key the daemon verifies unknown tenants with were it public
    // (before, signing with it was answered unlike a wrong signature for a known tenant).
    for wrong in ["not-the-secret-of-anyone", "cartstream: no such tenant"] {
        let shopify = |shop: &str| crate::support::shopify_headers(wrong, shop, b"{}", "wh-1");
        let salla = |merchant: &str| {
            let body = format!(r#"{{"event":"abandoned.cart","merchant":{merchant},"data":{{}}}}"#);
            let headers = json_headers(&[
                ("x-salla-security-strategy", "Signature".to_string()),
                (
                    "x-salla-signature",
                    providers::salla::sign(wrong.as_bytes(), body.as_bytes()),
                ),
            ]);
            (headers, body.into_bytes())
        };
        let standard = json_headers(&[
            ("webhook-id", "msg_1".to_string()),
            ("webhook-timestamp", now.to_string()),
            (
                "webhook-signature",
                format!("v1,{}", BASE64.encode([7u8; 32])),
            ),
        ]);
        let zid = |store: &str| {
            let body = format!(r#"{{"id":7,"store_id":{store},"event":"order.create"}}"#);
            let headers = json_headers(&[(
                "x-zid-signature",
                providers::zid::sign(wrong.as_bytes(), body.as_bytes()),
            )]);
            (headers, body.into_bytes())
        };
        let token = |name: &'static str| json_headers(&[(name, wrong.to_string())]);
        let flexype = json_headers(&[
            ("x-flexype-authorization", wrong.to_string()),
            ("x-webhook-version", "2026-05".to_string()),
            ("x-event-id", "evt_1".to_string()),
        ]);
        let shopimind = |installation: &str| {
            let body = format!(
                r#"{{"event":"integration.activated","installation_id":"{installation}"}}"#
            );
            let headers = json_headers(&[
                ("x-shopimind-timestamp", now.to_string()),
                (
                    "x-shopimind-signature",
                    providers::shopimind::sign(wrong.as_bytes(), now, body.as_bytes()),
                ),
            ]);
            (headers, body.into_bytes())
        };
        let sprusify = |store: &str| {
            let body = sprusify_body(store);
            let headers = json_headers(&[(
                "x-spru-signature",
                providers::sprusify::sign(wrong.as_bytes(), &body),
            )]);
            (headers, body)
        };
        let vendera = json_headers(&[("x-vendera-signature", BASE64.encode([7u8; 32]))]);
        let order = br#"{"id":"ord_1","event":"order-created","data":{"total":"10.00"}}"#.to_vec();

        // Per platform: the delivery to an existing tenant with a wrong signature first, then the
        // same delivery naming tenants that do not exist.
        let (salla_known, salla_unknown) = (salla("1305146709"), salla("999999999"));
        let (zid_known, zid_unknown) = (zid("1"), zid("999"));
        let (spm_known, spm_unknown) = (shopimind("pg-1"), shopimind("pg-999"));
        let (spru_known, spru_unknown) = (sprusify("store_acme"), sprusify("store_nobody"));
        let groups: Vec<(&str, Vec<Request>)> = vec![
            (
                "shopify",
                vec![
                    (
                        "/api/webhooks/shopify".into(),
                        shopify("hooli.myshopify.com"),
                        b"{}".to_vec(),
                    ),
                    (
                        "/api/webhooks/shopify".into(),
                        shopify("nobody.myshopify.com"),
                        b"{}".to_vec(),
                    ),
                ],
            ),
            (
                "salla",
                vec![
                    ("/api/webhooks/salla".into(), salla_known.0, salla_known.1),
                    (
                        "/api/webhooks/salla".into(),
                        salla_unknown.0,
                        salla_unknown.1,
                    ),
                ],
            ),
            (
                "standard",
                vec![
                    (
                        "/api/webhooks/standard/int_hooli_standard_000001".into(),
                        standard.clone(),
                        b"{}".to_vec(),
                    ),
                    (
                        "/api/webhooks/standard/int_nobody_standard_00001".into(),
                        standard,
                        b"{}".to_vec(),
                    ),
                ],
            ),
            (
                "zid",
                vec![
                    ("/api/webhooks/zid".into(), zid_known.0, zid_known.1),
                    ("/api/webhooks/zid".into(), zid_unknown.0, zid_unknown.1),
                ],
            ),
            (
                "easyorders",
                vec![
                    (
                        "/api/webhooks/easyorders/int_globex_easyorders_01".into(),
                        token("secret"),
                        order.clone(),
                    ),
                    (
                        "/api/webhooks/easyorders/int_nobody_easyorders_01".into(),
                        token("secret"),
                        order.clone(),
                    ),
                    // The secret is the clue: an unknown secret names no tenant at all.
                    (
                        "/api/webhooks/easyorders".into(),
                        token("secret"),
                        order.clone(),
                    ),
                ],
            ),
            (
                "vendera",
                vec![
                    // An HMAC scheme, a token scheme (whose header is absent here), no scheme, none.
                    (
                        "/api/webhooks/vendera/int_acme_vendera_0000001".into(),
                        vendera.clone(),
                        order.clone(),
                    ),
                    (
                        "/api/webhooks/vendera/int_globex_vendera_000001".into(),
                        vendera.clone(),
                        order.clone(),
                    ),
                    (
                        "/api/webhooks/vendera/int_initech_vendera_00001".into(),
                        vendera.clone(),
                        order.clone(),
                    ),
                    (
                        "/api/webhooks/vendera/int_nobody_vendera_000001".into(),
                        vendera,
                        order.clone(),
                    ),
                ],
            ),
            (
                "flexype",
                vec![
                    (
                        "/api/webhooks/flexype".into(),
                        flexype.clone(),
                        flexype_body("store_acme"),
                    ),
                    (
                        "/api/webhooks/flexype".into(),
                        flexype,
                        flexype_body("store_nobody"),
                    ),
                ],
            ),
            (
                "shopimind",
                vec![
                    ("/api/webhooks/shopimind".into(), spm_known.0, spm_known.1),
                    (
                        "/api/webhooks/shopimind".into(),
                        spm_unknown.0,
                        spm_unknown.1,
                    ),
                ],
            ),
            (
                "sprusify",
                vec![
                    ("/api/webhooks/sprusify".into(), spru_known.0, spru_known.1),
                    (
                        "/api/webhooks/sprusify".into(),
                        spru_unknown.0,
                        spru_unknown.1,
                    ),
                ],
            ),
            (
                "shopery",
                vec![
                    (
                        "/api/webhooks/shopery/int_acme_shopery_0000001".into(),
                        token("x-shopery-secret"),
                        order.clone(),
                    ),
                    (
                        "/api/webhooks/shopery/int_nobody_shopery_000001".into(),
                        token("x-shopery-secret"),
                        order,
                    ),
                ],
            ),
        ];
        for (platform, requests) in groups {
            let mut answers = Vec::new();
            for (path, headers, body) in requests {
                let answer = http.post(&daemon.url(&path), &headers, body).await;
                answers.push((path, answer.status, answer.body));
            }
            let (first_path, status, body) = &answers[0];
            assert_eq!(*status, 401, "{platform}: {first_path}: {answers:?}");
            for (path, other_status, other_body) in &answers[1..] {
                assert_eq!(
                    (other_status, other_body),
                    (status, body),
                    "{platform}: {path} is answered unlike {first_path}"
                );
            }
        }
    }
    assert!(read_topic(&daemon.brokers, &daemon.topics.inbound).is_empty());
    daemon.stop().await;
}
