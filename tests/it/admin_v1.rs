//! The admin API v1 against daemons reading their tenants from the tenants topic on a real
//! broker: tenants created, listed, changed and deleted through one instance are in force on
//! another, and every answer `docs/openapi.json` lists for a route is produced here — and no
//! answer it does not list.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cartstream::clock::Clock;
use cartstream::credentials::Vault;
use cartstream::tenants::{plan, Records};
use serde_json::{json, Value};

use crate::support::{
    fixture, read_topic, shopify_headers, Answer, Http, PrivateBroker, TestDaemon,
};

mod state;
mod workers;

const TOKEN: &str = "admin-v1-token-0123456789";
const PUBLIC_URL: &str = "https://hooks.example.com";
const SEALING_KEY: &str = "YWRtaW4tdjEtc2VhbGluZy1rZXktZm9yLXRoZS10ZXM=";

/// A tenant with integrations and a plain-HTTP endpoint, written to the topic as
/// `cartstream tenants apply` would.
const GLOBEX: &str = r#"
[[tenant]]
id = "globex"
allow_plain_http = true
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "globex.myshopify.com"
  secret = "globex-shopify-secret"

  [[tenant.endpoint]]
  id = "crm"
  url = "http://127.0.0.1:9/hooks"
  secret = "whsec_Z2xvYmV4LWNybS1zaWduaW5nLWtleS0wMDAwMDE="
"#;

/// Calls to the API, each noted as (route, method, status).
struct Api {
    http: Http,
    seen: Mutex<BTreeSet<(String, String, u16)>>,
}

impl Api {
    fn new() -> Api {
        Api {
            http: Http::http1(),
            seen: Mutex::default(),
        }
    }

    /// `method path` on `daemon`'s admin port with `token`, noted under `route`.
    async fn call(
        &self,
        daemon: &TestDaemon,
        (method, route, path): (&str, &str, &str),
        token: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(token) = token {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        let answer = self
            .http
            .send(method, &daemon.admin_url(path), &headers, body)
            .await;
        if answer.status.is_client_error() || answer.status.is_server_error() {
            let error = answer.json();
            assert!(error["error"].is_string(), "{method} {path}: {error}");
        }
        self.seen.lock().unwrap().insert((
            route.to_string(),
            method.to_lowercase(),
            answer.status.as_u16(),
        ));
        answer
    }

    /// The same, with the admin token.
    async fn admin(
        &self,
        daemon: &TestDaemon,
        call: (&str, &str, &str),
        body: impl Into<Bytes>,
    ) -> Answer {
        self.call(daemon, call, Some(TOKEN), body).await
    }

    /// Asks `daemon` until it answers `status` (15 s at most).
    async fn until(&self, daemon: &TestDaemon, call: (&str, &str, &str), status: u16) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let answer = self.admin(daemon, call, Bytes::new()).await;
            if answer.status.as_u16() == status {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "{call:?}: still {} after 15 s, not {status}",
                answer.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every (route, method, status) the document lists.
fn documented() -> BTreeSet<(String, String, u16)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut answers = BTreeSet::new();
    for (route, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for status in operation["responses"].as_object().into_iter().flatten() {
                answers.insert((route.clone(), method.clone(), status.0.parse().unwrap()));
            }
        }
    }
    answers
}

/// A daemon on `brokers` reading its tenants from the topic under `prefix`.
async fn daemon(name: &str, brokers: &str, prefix: &str, token: bool) -> TestDaemon {
    TestDaemon::builder(name)
        .brokers(brokers)
        .topic_prefix(prefix)
        .tenants_from_topic(SEALING_KEY)
        .config(|c| {
            if token {
                c.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap());
            }
            // As in production: a tenant's plain-HTTP endpoint needs the tenant's consent.
            c.delivery.allow_plain_http = false;
            c.ingress.public_url = Some(PUBLIC_URL.to_string());
            // Kafka away answers 503 after 2 s, not 10.
            c.admin.write_timeout = Duration::from_secs(2);
            // These tests make hundreds of changes a minute; the limit has a test of its own.
            c.admin.writes_per_minute = 0;
            // The deployment's Shopify app, which OAuth connect's install links are for.
            c.platforms.shopify = Some(cartstream::platforms::App {
                client_id: "admin-v1-shopify-app".to_string(),
                client_secret: cartstream::kafka::Property::Text(
                    "admin-v1-shopify-app-secret".to_string(),
                ),
                webhook_secret: None,
                previous_webhook_secret: None,
                scopes: None,
                api_url: None,
                accounts_url: None,
            });
        })
        .start()
        .await
}

/// The same on `clock`.
async fn daemon_at(name: &str, brokers: &str, prefix: &str, clock: &Clock) -> TestDaemon {
    TestDaemon::builder(name)
        .brokers(brokers)
        .topic_prefix(prefix)
        .tenants_from_topic(SEALING_KEY)
        .clock(clock.clone())
        .config(|c| {
            c.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap());
            c.admin.writes_per_minute = 0;
        })
        .start()
        .await
}

/// Writes `text`'s tenants to the topic `daemon` reads, as `tenants apply` to an empty
/// topic does.
async fn seed(daemon: &TestDaemon, text: &str) {
    let vault = Vault::from_base64(SEALING_KEY).unwrap();
    let records = Records::from_toml(text, Path::new("."), &HashMap::new(), &vault).unwrap();
    let plan = plan(&Records::default(), &records, &vault.into()).unwrap();
    cartstream::kafka::registry::write(&daemon.config.kafka, plan.messages())
        .await
        .unwrap();
}

/// The status `daemon`'s ingress answers a Shopify checkout from `shop` signed with `secret`.
async fn shopify_webhook(http: &Http, daemon: &TestDaemon, (secret, shop): (&str, &str)) -> u16 {
    let body = fixture("shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json");
    let headers = shopify_headers(secret, shop, &body, &format!("w-{}", rand_id()));
    http.post(&daemon.url("/api/webhooks/shopify"), &headers, body)
        .await
        .status
        .as_u16()
}

/// The status `daemon`'s ingress answers a Standard Webhooks delivery at `path` signed with
/// `secret` (`whsec_…`).
async fn standard_webhook(http: &Http, daemon: &TestDaemon, path: &str, secret: &str) -> u16 {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let key = cartstream::providers::Key::new(&bytes);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let id = format!("msg_{}", rand_id());
    let body = br#"{"type":"contact.created","data":{"id":"c-1"}}"#.to_vec();
    let headers = [
        ("content-type", "application/json".to_string()),
        ("webhook-id", id.clone()),
        ("webhook-timestamp", now.to_string()),
        (
            "webhook-signature",
            cartstream::providers::standard::sign(&key, &id, now, &body),
        ),
    ];
    http.post(&daemon.url(path), &headers, body)
        .await
        .status
        .as_u16()
}

/// Asks until `probe` answers `status` (15 s at most).
async fn until_status<F: std::future::Future<Output = u16>>(
    what: &str,
    status: u16,
    mut probe: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = probe().await;
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {got}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rand_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The status `daemon`'s ingress answers a signed Shopify checkout from globex.
async fn globex_webhook(http: &Http, daemon: &TestDaemon, id: &str) -> u16 {
    let body = fixture("shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json");
    let headers = shopify_headers("globex-shopify-secret", "globex.myshopify.com", &body, id);
    http.post(&daemon.url("/api/webhooks/shopify"), &headers, body)
        .await
        .status
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_v1_gives_every_answer_its_document_lists_and_no_other() {
    let api = Api::new();
    let broker = PrivateBroker::start();
    let brokers = broker.brokers();
    let prefix = crate::support::unique_prefix("admin-v1");
    let (a, b) = (
        daemon("admin-v1-a", &brokers, &prefix, true).await,
        daemon("admin-v1-b", &brokers, &prefix, true).await,
    );
    const TENANTS: &str = "/admin/v1/tenants";
    const TENANT: &str = "/admin/v1/tenants/{id}";
    const PUBLISHABLE_KEY: &str = "/admin/v1/tenants/{id}/publishable_key";
    const INTEGRATIONS: &str = "/admin/v1/tenants/{id}/integrations";
    const CONNECT: &str = "/admin/v1/tenants/{id}/connect";
    const INTEGRATION: &str = "/admin/v1/tenants/{id}/integrations/{integration}";
    const SECRET: &str = "/admin/v1/tenants/{id}/integrations/{integration}/secret";
    const VERIFY: &str = "/admin/v1/tenants/{id}/integrations/{integration}/verify";
    const STATUS: &str = "/admin/v1/tenants/{id}/integrations/{integration}/status";
    const ENDPOINTS: &str = "/admin/v1/tenants/{id}/endpoints";
    const ENDPOINT: &str = "/admin/v1/tenants/{id}/endpoints/{endpoint}";
    const ENDPOINT_SECRET: &str = "/admin/v1/tenants/{id}/endpoints/{endpoint}/secret";
    const ENDPOINT_TEST: &str = "/admin/v1/tenants/{id}/endpoints/{endpoint}/test";
    const KEYS: &str = "/admin/v1/keys";
    const MAINTENANCE: &str = "/admin/v1/maintenance";
    const DELIVERIES: &str = "/admin/v1/deliveries";
    const KEY: &str = "/admin/v1/keys/{key}";
    const ACME_SHOPIFY: &str =
        "/admin/v1/tenants/acme/integrations/shopify:shop_domain=acme.myshopify.com";
    let list = |path| ("GET", TENANTS, path);
    let http = Http::http1();

    // The document, to anyone; everything else behind the token.
    let doc = api
        .call(
            &a,
            ("GET", "/admin/v1/openapi.json", "/admin/v1/openapi.json"),
            None,
            Bytes::new(),
        )
        .await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json()["openapi"], "3.1.0");
    // A method the route does not take (no operation of the document, so not noted).
    let bearer = [("authorization", format!("Bearer {TOKEN}"))];
    let put = api
        .http
        .send("PUT", &a.admin_url(TENANTS), &bearer, "{}")
        .await;
    assert_eq!(put.status, 405);
    assert_eq!(put.headers["allow"], "GET, POST");
    let every_call = [
        list(TENANTS),
        ("POST", TENANTS, TENANTS),
        ("GET", TENANT, "/admin/v1/tenants/acme"),
        ("PATCH", TENANT, "/admin/v1/tenants/acme"),
        ("DELETE", TENANT, "/admin/v1/tenants/acme"),
        (
            "POST",
            PUBLISHABLE_KEY,
            "/admin/v1/tenants/acme/publishable_key",
        ),
        ("POST", INTEGRATIONS, "/admin/v1/tenants/acme/integrations"),
        ("POST", CONNECT, "/admin/v1/tenants/acme/connect"),
        ("DELETE", INTEGRATION, ACME_SHOPIFY),
        ("POST", SECRET, &format!("{ACME_SHOPIFY}/secret")),
        ("POST", VERIFY, &format!("{ACME_SHOPIFY}/verify")),
        ("GET", STATUS, &format!("{ACME_SHOPIFY}/status")),
        ("POST", ENDPOINTS, "/admin/v1/tenants/acme/endpoints"),
        ("DELETE", ENDPOINT, "/admin/v1/tenants/acme/endpoints/crm"),
        ("PATCH", ENDPOINT, "/admin/v1/tenants/acme/endpoints/crm"),
        (
            "POST",
            ENDPOINT_TEST,
            "/admin/v1/tenants/acme/endpoints/crm/test",
        ),
        (
            "POST",
            ENDPOINT_SECRET,
            "/admin/v1/tenants/acme/endpoints/crm/secret",
        ),
        ("GET", KEYS, KEYS),
        ("POST", KEYS, KEYS),
        ("GET", MAINTENANCE, MAINTENANCE),
        ("PUT", MAINTENANCE, MAINTENANCE),
        ("DELETE", KEY, "/admin/v1/keys/key_0123456789abcdef"),
    ];
    // The delivery search reads the outcomes topic, with tenants from a file too: not in
    // `every_call`, whose routes a file-fed daemon answers 409.
    let deliveries = ("GET", DELIVERIES, DELIVERIES);
    assert_eq!(api.call(&a, deliveries, None, "").await.status, 401);
    for call in every_call {
        assert_eq!(api.call(&a, call, None, "{}").await.status, 401, "{call:?}");
        let wrong = api.call(&a, call, Some("not-the-admin-token"), "{}");
        assert_eq!(wrong.await.status, 401, "{call:?}");
    }

    // Create: with an id, without one (a UUID), twice (409), and refused bodies.
    let created = api
        .admin(
            &a,
            ("POST", TENANTS, TENANTS),
            r#"{"id":"acme","inactivity_window_ms":1800000}"#,
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.headers["location"], "/admin/v1/tenants/acme");
    let mut view = created.json();
    let publishable_key = view["publishable_key"].take();
    let publishable_key = publishable_key.as_str().unwrap();
    assert!(
        publishable_key.starts_with("pk_") && publishable_key.len() == 35,
        "{publishable_key}"
    );
    assert_eq!(
        view,
        json!({"id":"acme","inactivity_window_ms":1800000,"allow_plain_http":false,"publishable_key":null,
               "allowed_origins":[],"enabled":true,"integrations":[],"endpoints":[]})
    );
    let unnamed = api.admin(&a, ("POST", TENANTS, TENANTS), "{}").await;
    assert_eq!(unnamed.status, 201);
    let uuid = unnamed.json()["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&uuid).is_ok(), "{uuid}");
    let again = api
        .admin(&a, ("POST", TENANTS, TENANTS), r#"{"id":"acme"}"#)
        .await;
    assert_eq!(again.status, 409);
    assert!(again.json()["error"].as_str().unwrap().contains("acme"));
    let invalid = api
        .admin(&a, ("POST", TENANTS, TENANTS), r#"{"id":"not an id!"}"#)
        .await;
    assert_eq!(invalid.status, 422);
    assert!(!invalid.json()["problems"].as_array().unwrap().is_empty());
    for body in [
        r#"{"name":"acme"}"#,
        r#"{"inactivity_window_ms":0}"#,
        "not json",
    ] {
        let refused = api.admin(&a, ("POST", TENANTS, TENANTS), body).await;
        assert_eq!(refused.status, 400, "{body}");
    }
    let large = api
        .admin(&a, ("POST", TENANTS, TENANTS), vec![b' '; 17 * 1024])
        .await;
    assert_eq!(large.status, 413);

    // In force on the other instance, which lists both.
    let on_b = api
        .until(&b, ("GET", TENANT, "/admin/v1/tenants/acme"), 200)
        .await;
    assert_eq!(on_b.json(), created.json());
    // Written after acme: b may not have read it yet.
    api.until(
        &b,
        ("GET", TENANT, &format!("/admin/v1/tenants/{uuid}")),
        200,
    )
    .await;
    let all = api.admin(&b, list(TENANTS), Bytes::new()).await.json();
    let ids: Vec<&str> = all["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    let mut expected = vec!["acme", uuid.as_str()];
    expected.sort();
    assert!(ids == expected || ids.len() > 2, "{ids:?}");
    let first = api
        .admin(&b, list("/admin/v1/tenants?limit=1"), Bytes::new())
        .await
        .json();
    assert_eq!(first["tenants"][0]["id"], expected[0]);
    assert_eq!(first["next"], expected[0]);
    let second = api
        .admin(
            &b,
            (
                "GET",
                TENANTS,
                &format!("/admin/v1/tenants?after={}", expected[0]),
            ),
            Bytes::new(),
        )
        .await
        .json();
    assert_eq!(second["tenants"][0]["id"], expected[1]);
    assert_eq!(second["next"], Value::Null);
    for bad in ["/admin/v1/tenants?limit=0", "/admin/v1/tenants?page=2"] {
        assert_eq!(api.admin(&b, list(bad), Bytes::new()).await.status, 400);
    }

    // Change: a null window is the default again; 404 for no such tenant.
    let acme = ("PATCH", TENANT, "/admin/v1/tenants/acme");
    let changed = api
        .admin(
            &b,
            acme,
            r#"{"inactivity_window_ms":null,"allow_plain_http":true}"#,
        )
        .await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.json()["inactivity_window_ms"], Value::Null);
    assert_eq!(changed.json()["allow_plain_http"], true);
    assert_eq!(
        api.admin(&b, acme, r#"{"inactivity_window_ms":"soon"}"#)
            .await
            .status,
        400
    );
    assert_eq!(api.admin(&b, acme, vec![b' '; 17 * 1024]).await.status, 413);
    let nobody = ("PATCH", TENANT, "/admin/v1/tenants/nobody");
    assert_eq!(api.admin(&b, nobody, "{}").await.status, 404);

    // Storefront signals: the origins allowed (as browsers send them), a bad one refused,
    // and a new publishable key in place of the old.
    let origins = api
        .admin(
            &b,
            acme,
            r#"{"allowed_origins":["https://Acme.example/","http://localhost:3000"]}"#,
        )
        .await;
    assert_eq!(origins.status, 200, "{:?}", origins.body);
    assert_eq!(
        origins.json()["allowed_origins"],
        json!(["https://acme.example", "http://localhost:3000"])
    );
    let bad_origin = api
        .admin(
            &b,
            acme,
            r#"{"allowed_origins":["https://acme.example/cart"]}"#,
        )
        .await;
    assert_eq!(bad_origin.status, 422, "{:?}", bad_origin.body);
    assert!(bad_origin.json()["problems"]
        .to_string()
        .contains("allowed_origins"));
    assert_eq!(
        api.admin(&b, acme, r#"{"allowed_origins":null}"#)
            .await
            .status,
        400
    );
    let renewed = api
        .admin(
            &b,
            (
                "POST",
                PUBLISHABLE_KEY,
                "/admin/v1/tenants/acme/publishable_key",
            ),
            Bytes::new(),
        )
        .await;
    assert_eq!(renewed.status, 200, "{:?}", renewed.body);
    let renewed_key = renewed.json()["publishable_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(renewed_key.starts_with("pk_") && renewed_key != publishable_key);
    assert_eq!(
        renewed.json()["allowed_origins"],
        origins.json()["allowed_origins"]
    );
    let nobody_key = (
        "POST",
        PUBLISHABLE_KEY,
        "/admin/v1/tenants/nobody/publishable_key",
    );
    assert_eq!(api.admin(&b, nobody_key, Bytes::new()).await.status, 404);
    assert_eq!(
        api.admin(
            &b,
            ("GET", TENANT, "/admin/v1/tenants/nobody"),
            Bytes::new()
        )
        .await
        .status,
        404
    );

    // Integrations: connect, find it accepted on the other instance, rotate, disconnect.
    let acme_integrations = ("POST", INTEGRATIONS, "/admin/v1/tenants/acme/integrations");
    let shop = ("acme-shopify-secret-0001", "acme.myshopify.com");
    let body = format!(
        r#"{{"provider":"shopify","shop_domain":"{}","secret":"{}"}}"#,
        shop.1, shop.0
    );
    let connected = api.admin(&a, acme_integrations, body.clone()).await;
    assert_eq!(connected.status, 201, "{:?}", connected.body);
    assert_eq!(
        connected.json(),
        json!({"id":"shopify:shop_domain=acme.myshopify.com","provider":"shopify","integration_key":null,
               "webhook_path":"/api/webhooks/shopify","webhook_url":"https://hooks.example.com/api/webhooks/shopify",
               "signed_by_app":false})
    );
    until_status("acme's shop on b", 200, || shopify_webhook(&http, &b, shop)).await;

    // Disabled through a: b refuses acme's webhooks as an unknown tenant's, then takes them
    // again once it is enabled.
    let disabled = api.admin(&a, acme, r#"{"enabled":false}"#).await;
    assert_eq!(disabled.status, 200, "{:?}", disabled.body);
    assert_eq!(disabled.json()["enabled"], false);
    until_status("acme disabled on b", 401, || {
        shopify_webhook(&http, &b, shop)
    })
    .await;
    assert_eq!(api.admin(&a, acme, r#"{"enabled":null}"#).await.status, 400);
    let enabled = api.admin(&a, acme, r#"{"enabled":true}"#).await;
    assert_eq!(enabled.json()["enabled"], true);
    until_status("acme enabled on b", 200, || {
        shopify_webhook(&http, &b, shop)
    })
    .await;
    assert_eq!(
        api.admin(&a, acme_integrations, body.clone()).await.status,
        409
    );
    let same_shop = (
        "POST",
        INTEGRATIONS,
        &*format!("/admin/v1/tenants/{uuid}/integrations"),
    );
    let taken = api.admin(&a, same_shop, body).await;
    assert_eq!(taken.status, 409, "the shop is another tenant's");
    let standard = api
        .admin(&a, acme_integrations, r#"{"provider":"standard"}"#)
        .await;
    assert_eq!(standard.status, 201);
    let standard = standard.json();
    let (path, secret) = (
        standard["webhook_path"].as_str().unwrap().to_string(),
        standard["secret"].as_str().unwrap().to_string(),
    );
    assert!(path.starts_with("/api/webhooks/standard/int_"), "{path}");
    assert_eq!(standard["webhook_url"], format!("{PUBLIC_URL}{path}"));
    until_status("the generated secret on b", 200, || {
        standard_webhook(&http, &b, &path, &secret)
    })
    .await;
    for body in [
        r#"{"provider":"nope","secret":"0123456789abcdef"}"#,
        r#"{"provider":"salla","merchant_id":"1234509876"}"#,
        r#"{"provider":"zid","store_id":"","secret":"0123456789abcdef"}"#,
    ] {
        assert_eq!(
            api.admin(&a, acme_integrations, body).await.status,
            400,
            "{body}"
        );
    }
    let other_clue = r#"{"provider":"shopify","merchant_id":"123","secret":"0123456789abcdef0"}"#;
    let refused = api.admin(&a, acme_integrations, other_clue).await;
    assert_eq!(refused.status, 422);
    assert!(refused.json()["problems"]
        .to_string()
        .contains("does not apply"));
    // OAuth connect: a link to the store's consent screen, through the ingress.
    let acme_connect = ("POST", CONNECT, "/admin/v1/tenants/acme/connect");
    let link = api
        .admin(
            &a,
            acme_connect,
            r#"{"provider":"shopify","shop":"acme-oauth.myshopify.com"}"#,
        )
        .await;
    assert_eq!(link.status, 200, "{:?}", link.body);
    let install_url = link.json()["install_url"].as_str().unwrap().to_string();
    assert!(
        install_url.starts_with(&format!("{PUBLIC_URL}/api/oauth/shopify/install?link=")),
        "{install_url}"
    );
    for body in [
        r#"{"provider":"shopify","shop":"acme.example.com"}"#,
        r#"{"provider":"salla","shop":"acme-oauth.myshopify.com"}"#,
        r#"{"provider":"shopify"}"#,
    ] {
        assert_eq!(
            api.admin(&a, acme_connect, body).await.status,
            400,
            "{body}"
        );
    }
    let nobody_connect = ("POST", CONNECT, "/admin/v1/tenants/nobody/connect");
    let nobodys = r#"{"provider":"shopify","shop":"nobody.myshopify.com"}"#;
    assert_eq!(api.admin(&a, nobody_connect, nobodys).await.status, 404);
    assert_eq!(
        api.admin(&a, acme_connect, vec![b' '; 17 * 1024])
            .await
            .status,
        413
    );
    let short = r#"{"provider":"shopify","shop_domain":"short.myshopify.com","secret":"short"}"#;
    assert_eq!(api.admin(&a, acme_integrations, short).await.status, 400);
    assert_eq!(
        api.admin(&a, acme_integrations, vec![b' '; 17 * 1024])
            .await
            .status,
        413
    );
    let nobody = (
        "POST",
        INTEGRATIONS,
        "/admin/v1/tenants/nobody/integrations",
    );
    let for_nobody =
        r#"{"provider":"shopify","shop_domain":"n.myshopify.com","secret":"0123456789abcdef"}"#;
    assert_eq!(api.admin(&a, nobody, for_nobody).await.status, 404);

    let rotate = ("POST", SECRET, &*format!("{ACME_SHOPIFY}/secret"));
    let new_shop = ("acme-shopify-secret-0002", shop.1);
    let rotated = api
        .admin(&a, rotate, r#"{"secret":"acme-shopify-secret-0002"}"#)
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    assert!(
        rotated.json().get("secret").is_none(),
        "a given secret is not repeated"
    );
    until_status("the new secret on b", 200, || {
        shopify_webhook(&http, &b, new_shop)
    })
    .await;
    assert_eq!(
        shopify_webhook(&http, &b, shop).await,
        200,
        "the previous secret verifies"
    );
    assert_eq!(
        api.admin(&a, rotate, "{}").await.status,
        400,
        "shopify's secret is given"
    );
    assert_eq!(
        api.admin(&a, rotate, r#"{"secret":"short"}"#).await.status,
        400
    );
    assert_eq!(
        api.admin(&a, rotate, vec![b' '; 17 * 1024]).await.status,
        413
    );
    let standard_rotate = format!(
        "/admin/v1/tenants/acme/integrations/{}/secret",
        standard["id"].as_str().unwrap()
    );
    let regenerated = api
        .admin(&a, ("POST", SECRET, &standard_rotate), "{}")
        .await;
    assert_eq!(regenerated.status, 200);
    let new_secret = regenerated.json()["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let not_base64 = r#"{"secret":"not-base64-at-all!!"}"#;
    let standard_refused = api
        .admin(&a, ("POST", SECRET, &standard_rotate), not_base64)
        .await;
    assert_eq!(standard_refused.status, 422, "a standard secret is base64");
    until_status("the regenerated secret on b", 200, || {
        standard_webhook(&http, &b, &path, &new_secret)
    })
    .await;
    let unknown = (
        "POST",
        SECRET,
        "/admin/v1/tenants/acme/integrations/zid:store_id=1/secret",
    );
    assert_eq!(api.admin(&a, unknown, "{}").await.status, 404);

    // The credentials test: a sample judged, nothing produced.
    let inbound = format!("{prefix}.inbound.v1");
    let produced = read_topic(&brokers, &inbound).len();
    let verify = ("POST", VERIFY, &*format!("{ACME_SHOPIFY}/verify"));
    let sample = |secret: &str, shop: &str| {
        let body = r#"{"id":1,"token":"c-1"}"#;
        let signature = cartstream::providers::shopify::sign(secret.as_bytes(), body.as_bytes());
        json!({
            "headers": {
                "X-Shopify-Hmac-Sha256": signature,
                "X-Shopify-Shop-Domain": shop,
                "X-Shopify-Topic": "checkouts/create",
                "X-Shopify-Webhook-Id": "sample-1",
            },
            "body": body,
        })
        .to_string()
    };
    let good = api.admin(&a, verify, sample(new_shop.0, shop.1)).await;
    assert_eq!(good.status, 200);
    assert_eq!(
        good.json(),
        json!({"verified": true, "reason": null, "names": shop.1, "names_this_integration": true})
    );
    let previous = api.admin(&a, verify, sample(shop.0, shop.1)).await.json();
    assert_eq!(
        previous["verified"], true,
        "the previous secret still verifies: {previous}"
    );
    let forged = api
        .admin(&a, verify, sample("not-the-secret-at-all", shop.1))
        .await
        .json();
    assert_eq!(forged["verified"], false);
    assert_eq!(
        forged["reason"],
        "with this integration's secrets: invalid X-Shopify-Hmac-Sha256"
    );
    let elsewhere = api
        .admin(&a, verify, sample(new_shop.0, "elsewhere.myshopify.com"))
        .await
        .json();
    assert_eq!(elsewhere["names_this_integration"], false, "{elsewhere}");
    assert!(elsewhere["reason"]
        .as_str()
        .unwrap()
        .contains("does not lead to this integration"));
    let unsigned = api
        .admin(&a, verify, r#"{"headers":{},"body":"{}"}"#)
        .await
        .json();
    assert_eq!(
        unsigned["reason"],
        "with this integration's secrets: missing X-Shopify-Hmac-Sha256"
    );
    let bad_header = r#"{"headers":{"a b":"x"},"body":""}"#;
    assert_eq!(api.admin(&a, verify, bad_header).await.status, 400);
    assert_eq!(
        api.admin(&a, verify, vec![b' '; 17 * 1024]).await.status,
        413
    );
    let unknown = (
        "POST",
        VERIFY,
        "/admin/v1/tenants/acme/integrations/zid:store_id=1/verify",
    );
    assert_eq!(
        api.admin(&a, unknown, sample(shop.0, shop.1)).await.status,
        404
    );
    assert_eq!(
        read_topic(&brokers, &inbound).len(),
        produced,
        "a credentials test produced"
    );

    // Its status, as every instance's ingress saw it: b took acme's deliveries, and now one
    // forged; a took none, and answers the same once b has written what it saw.
    let status = ("GET", STATUS, &*format!("{ACME_SHOPIFY}/status"));
    assert_eq!(
        shopify_webhook(&http, &b, ("not-the-secret-at-all", shop.1)).await,
        401
    );
    let on_b = api.admin(&b, status, Bytes::new()).await;
    assert_eq!(on_b.status, 200, "{:?}", on_b.body);
    let on_b = on_b.json();
    assert!(on_b["last_authentic_delivery_at"].is_string(), "{on_b}");
    assert_eq!(
        on_b["last_signature_failure_reason"], "invalid X-Shopify-Hmac-Sha256",
        "{on_b}"
    );
    assert!(on_b["last_signature_failure_at"].is_string(), "{on_b}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let on_a = api.admin(&a, status, Bytes::new()).await;
        assert_eq!(on_a.status, 200, "{:?}", on_a.body);
        if on_a.json() == on_b {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a never showed b's view: {} vs {on_b}",
            on_a.json()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unknown = (
        "GET",
        STATUS,
        "/admin/v1/tenants/acme/integrations/zid:store_id=1/status",
    );
    assert_eq!(api.admin(&a, unknown, Bytes::new()).await.status, 404);
    let disconnect = ("DELETE", INTEGRATION, ACME_SHOPIFY);
    assert_eq!(api.admin(&a, disconnect, Bytes::new()).await.status, 204);
    assert_eq!(api.admin(&a, disconnect, Bytes::new()).await.status, 404);
    until_status("the disconnected shop on b", 401, || {
        shopify_webhook(&http, &b, new_shop)
    })
    .await;

    // Endpoints: created with a generated secret, rotated, deleted.
    let acme_endpoints = ("POST", ENDPOINTS, "/admin/v1/tenants/acme/endpoints");
    let crm =
        r#"{"id":"crm","url":"https://crm.example.com/hooks","events":["abandoned_candidate"]}"#;
    let created = api.admin(&a, acme_endpoints, crm).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let first_secret = created.json()["secret"].as_str().unwrap().to_string();
    assert!(first_secret.starts_with("whsec_"), "{first_secret}");
    assert_eq!(created.json()["id"], "crm");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let acme = api
            .admin(&b, ("GET", TENANT, "/admin/v1/tenants/acme"), Bytes::new())
            .await
            .json();
        if acme["endpoints"]
            == json!([{"id":"crm","url":"https://crm.example.com/hooks","events":["abandoned_candidate"],
                       "retry_schedule_ms":null,"enabled":true}])
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the endpoint never showed on b: {acme}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(api.admin(&a, acme_endpoints, crm).await.status, 409);
    for body in [
        "{}",
        r#"{"url":"https://127.1/x"}"#,
        r#"{"url":"https://crm.example.com","events":[]}"#,
        r#"{"url":"https://crm.example.com","retry_schedule_ms":[-1]}"#,
    ] {
        assert_eq!(
            api.admin(&a, acme_endpoints, body).await.status,
            400,
            "{body}"
        );
    }
    let unconsented = (
        "POST",
        ENDPOINTS,
        &*format!("/admin/v1/tenants/{uuid}/endpoints"),
    );
    let plain = api
        .admin(&a, unconsented, r#"{"url":"http://crm.example.com/h"}"#)
        .await;
    assert_eq!(plain.status, 422, "plain http without the tenant's consent");
    let consented = r#"{"id":"plain","url":"http://crm.example.com/h","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#;
    let plain_ok = api.admin(&a, acme_endpoints, consented).await;
    assert_eq!(
        plain_ok.status, 201,
        "acme allows plain http: {:?}",
        plain_ok.body
    );
    assert!(
        plain_ok.json().get("secret").is_none(),
        "a given secret is not repeated"
    );
    let nobody = ("POST", ENDPOINTS, "/admin/v1/tenants/nobody/endpoints");
    assert_eq!(api.admin(&a, nobody, crm).await.status, 404);
    assert_eq!(
        api.admin(&a, acme_endpoints, vec![b' '; 17 * 1024])
            .await
            .status,
        413
    );
    let crm_secret = (
        "POST",
        ENDPOINT_SECRET,
        "/admin/v1/tenants/acme/endpoints/crm/secret",
    );
    let rotated = api.admin(&a, crm_secret, "{}").await;
    assert_eq!(rotated.status, 200);
    let second_secret = rotated.json()["secret"].as_str().unwrap().to_string();
    assert_ne!(second_secret, first_secret);
    assert_eq!(
        api.admin(&a, crm_secret, r#"{"secret":"whsec_not*base64*at*all"}"#)
            .await
            .status,
        422
    );
    assert_eq!(api.admin(&a, crm_secret, "[]").await.status, 400);
    assert_eq!(
        api.admin(&a, crm_secret, vec![b' '; 17 * 1024])
            .await
            .status,
        413
    );
    let nothing = (
        "POST",
        ENDPOINT_SECRET,
        "/admin/v1/tenants/acme/endpoints/none/secret",
    );
    assert_eq!(api.admin(&a, nothing, "{}").await.status, 404);
    // Changed: its events back to all, its own schedule, disabled; each field checked.
    let crm_patch = ("PATCH", ENDPOINT, "/admin/v1/tenants/acme/endpoints/crm");
    let patched = api
        .admin(
            &a,
            crm_patch,
            r#"{"events":null,"retry_schedule_ms":[1000,60000],"enabled":false}"#,
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(
        patched.json(),
        json!({"id":"crm","url":"https://crm.example.com/hooks","events":null,
               "retry_schedule_ms":[1000,60000],"enabled":false})
    );
    for body in [
        r#"{"url":"ftp://crm.example.com"}"#,
        r#"{"events":[]}"#,
        r#"{"retry_schedule_ms":[-1]}"#,
        r#"{"enabled":null}"#,
        r#"{"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#,
    ] {
        assert_eq!(api.admin(&a, crm_patch, body).await.status, 400, "{body}");
    }
    let unknown_event = api
        .admin(&a, crm_patch, r#"{"events":["order_paid"]}"#)
        .await;
    assert_eq!(unknown_event.status, 422, "{:?}", unknown_event.body);
    assert_eq!(
        api.admin(&a, crm_patch, vec![b' '; 17 * 1024]).await.status,
        413
    );
    let no_endpoint = ("PATCH", ENDPOINT, "/admin/v1/tenants/acme/endpoints/none");
    assert_eq!(api.admin(&a, no_endpoint, "{}").await.status, 404);
    let no_test = (
        "POST",
        ENDPOINT_TEST,
        "/admin/v1/tenants/acme/endpoints/none/test",
    );
    assert_eq!(api.admin(&a, no_test, Bytes::new()).await.status, 404);
    let crm_delete = ("DELETE", ENDPOINT, "/admin/v1/tenants/acme/endpoints/crm");
    assert_eq!(api.admin(&a, crm_delete, Bytes::new()).await.status, 204);
    assert_eq!(api.admin(&a, crm_delete, Bytes::new()).await.status, 404);

    // A tenant with an integration and a plain-HTTP endpoint: its endpoint forbids turning
    // plain HTTP off; deleting it removes what it owns, and its webhooks are refused on the
    // other instance.
    seed(&a, GLOBEX).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while globex_webhook(&http, &b, "globex-1").await != 200 {
        assert!(Instant::now() < deadline, "globex never accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let globex = api
        .until(&a, ("GET", TENANT, "/admin/v1/tenants/globex"), 200)
        .await
        .json();
    assert_eq!(globex["integrations"][0]["provider"], "shopify");
    assert_eq!(globex["endpoints"][0]["id"], "crm");
    // A test send to an address the delivery guard does not allow: sent nowhere, and said why.
    let globex_test = (
        "POST",
        ENDPOINT_TEST,
        "/admin/v1/tenants/globex/endpoints/crm/test",
    );
    let tested = api.admin(&a, globex_test, Bytes::new()).await;
    assert_eq!(tested.status, 200, "{:?}", tested.body);
    let tested = tested.json();
    assert_eq!(tested["status_code"], Value::Null, "{tested}");
    assert!(
        tested["error"].as_str().unwrap().contains("127.0.0.1"),
        "{tested}"
    );
    let plain_off = api
        .admin(
            &a,
            ("PATCH", TENANT, "/admin/v1/tenants/globex"),
            r#"{"allow_plain_http":false}"#,
        )
        .await;
    assert_eq!(plain_off.status, 422);
    let problems = plain_off.json()["problems"].to_string();
    assert!(problems.contains("crm"), "{problems}");
    let delete = ("DELETE", TENANT, "/admin/v1/tenants/globex");
    assert_eq!(api.admin(&a, delete, Bytes::new()).await.status, 204);
    assert_eq!(api.admin(&a, delete, Bytes::new()).await.status, 404);
    let deadline = Instant::now() + Duration::from_secs(15);
    while globex_webhook(&http, &b, "globex-2").await != 401 {
        assert!(Instant::now() < deadline, "globex still accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api.until(&b, ("GET", TENANT, "/admin/v1/tenants/globex"), 404)
        .await;
    let topic = read_topic(&brokers, &format!("{prefix}.tenants.v1"));
    let mut latest: HashMap<Vec<u8>, bool> = HashMap::new();
    for record in &topic {
        latest.insert(record.key.clone().unwrap(), record.value.is_empty());
    }
    let globex_keys: Vec<_> = latest
        .iter()
        .filter(|(key, _)| String::from_utf8_lossy(key).contains("\"globex\""))
        .collect();
    assert_eq!(globex_keys.len(), 3, "{globex_keys:?}");
    assert!(globex_keys.iter().all(|(_, &tombstone)| tombstone));

    // API keys: made through one instance, in force on the other within its scopes and
    // tenant, refused once deleted.
    let made = api
        .admin(
            &a,
            ("POST", KEYS, KEYS),
            r#"{"name":"dashboard","scopes":["read"],"tenant":"acme"}"#,
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let made = made.json();
    let (reader, reader_id) = (
        made["key"].as_str().unwrap().to_string(),
        made["id"].as_str().unwrap().to_string(),
    );
    assert!(reader.starts_with(&format!("cs_{reader_id}.")), "{reader}");
    let listed = api.admin(&a, ("GET", KEYS, KEYS), Bytes::new()).await;
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    assert_eq!(
        listed["keys"],
        json!([{"id": reader_id, "name": "dashboard", "scopes": ["read"], "tenant": "acme",
                "created_at": made["created_at"]}]),
        "listed without the key itself"
    );
    let acme_on_b = ("GET", TENANT, "/admin/v1/tenants/acme");
    let deadline = Instant::now() + Duration::from_secs(15);
    while api
        .call(&b, acme_on_b, Some(&reader), Bytes::new())
        .await
        .status
        != 200
    {
        assert!(Instant::now() < deadline, "the key never worked on b");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acme_deliveries = ("GET", DELIVERIES, "/admin/v1/deliveries?tenant=acme");
    let searched = api.call(&b, acme_deliveries, Some(&reader), "").await;
    assert_eq!(searched.status, 200, "{:?}", searched.body);
    assert_eq!(
        searched.json(),
        json!({"deliveries": [], "complete": true}),
        "acme has no endpoint that delivered"
    );
    // Before 1970 (schemathesis found it a 503): read from the first record.
    let ancient = (
        "GET",
        DELIVERIES,
        "/admin/v1/deliveries?since=0241-12-17T01:25:02Z",
    );
    assert_eq!(api.admin(&b, ancient, Bytes::new()).await.status, 200);
    for bad in [
        "/admin/v1/deliveries?outcome=lost",
        "/admin/v1/deliveries?limit=0",
    ] {
        let refused = api.admin(&b, ("GET", DELIVERIES, bad), Bytes::new()).await;
        assert_eq!(refused.status, 400, "{bad}");
    }
    for (call, why) in [
        (deliveries, "every tenant's deliveries"),
        (("PATCH", TENANT, "/admin/v1/tenants/acme"), "write"),
        (
            ("GET", TENANT, &*format!("/admin/v1/tenants/{uuid}")),
            "another tenant",
        ),
        (list(TENANTS), "every tenant"),
        (("GET", KEYS, KEYS), "keys"),
    ] {
        let refused = api.call(&b, call, Some(&reader), "{}").await;
        assert_eq!(refused.status, 403, "{why}: {:?}", refused.body);
    }
    for body in [
        r#"{"scopes":[]}"#,
        r#"{"scopes":["everything"]}"#,
        r#"{"scopes":["keys"],"tenant":"acme"}"#,
        r#"{"name":"no scopes"}"#,
    ] {
        let refused = api.admin(&a, ("POST", KEYS, KEYS), body).await;
        assert_eq!(refused.status, 400, "{body}");
    }
    let for_nobody = r#"{"scopes":["read"],"tenant":"nobody"}"#;
    assert_eq!(
        api.admin(&a, ("POST", KEYS, KEYS), for_nobody).await.status,
        404
    );
    assert_eq!(
        api.admin(&a, ("POST", KEYS, KEYS), vec![b' '; 17 * 1024])
            .await
            .status,
        413
    );
    let reader_path = format!("/admin/v1/keys/{reader_id}");
    let delete_reader = ("DELETE", KEY, reader_path.as_str());
    assert_eq!(api.admin(&a, delete_reader, Bytes::new()).await.status, 204);
    assert_eq!(api.admin(&a, delete_reader, Bytes::new()).await.status, 404);
    let deadline = Instant::now() + Duration::from_secs(15);
    while api
        .call(&b, acme_on_b, Some(&reader), Bytes::new())
        .await
        .status
        != 401
    {
        assert!(
            Instant::now() < deadline,
            "the deleted key still worked on b"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spare = api
        .admin(&a, ("POST", KEYS, KEYS), r#"{"scopes":["keys"]}"#)
        .await;
    assert_eq!(spare.status, 201);
    let spare_path = format!("/admin/v1/keys/{}", spare.json()["id"].as_str().unwrap());

    // Maintenance mode through one instance: the other answers webhooks 503 until it is off.
    let maintenance = ("GET", MAINTENANCE, MAINTENANCE);
    let off = api.admin(&b, maintenance, Bytes::new()).await;
    assert_eq!(off.status, 200);
    assert_eq!(off.json(), json!({"on": false, "changed_at": null}));
    let switch = ("PUT", MAINTENANCE, MAINTENANCE);
    let on = api.admin(&a, switch, r#"{"on":true}"#).await;
    assert_eq!(on.status, 200, "{:?}", on.body);
    assert_eq!(on.json()["on"], true);
    until_status("a webhook on b in maintenance", 503, || {
        standard_webhook(&http, &b, &path, &new_secret)
    })
    .await;
    assert_eq!(
        api.admin(&b, maintenance, Bytes::new()).await.json(),
        on.json()
    );
    for body in ["{}", r#"{"on":"yes"}"#, "[]"] {
        assert_eq!(api.admin(&a, switch, body).await.status, 400, "{body}");
    }
    assert_eq!(
        api.admin(&a, switch, vec![b' '; 17 * 1024]).await.status,
        413
    );
    assert_eq!(api.admin(&a, switch, r#"{"on":false}"#).await.status, 200);
    until_status("a webhook on b after maintenance", 200, || {
        standard_webhook(&http, &b, &path, &new_secret)
    })
    .await;

    // Retry, replay and redrive through an instance without a delivery worker.
    workers::exercise(&api, &a, &b, &prefix).await;

    // A cart's state, from the instance whose processor has it and from any other.
    state::exercise(&api, &a, &brokers, &prefix).await;

    // Kafka away: a write is answered 503 once its time is up (10 s).
    broker.pause();
    let standard_path = format!(
        "/admin/v1/tenants/acme/integrations/{}",
        standard["id"].as_str().unwrap()
    );
    let plain_secret = (
        "POST",
        ENDPOINT_SECRET,
        "/admin/v1/tenants/acme/endpoints/plain/secret",
    );
    let plain_delete = ("DELETE", ENDPOINT, "/admin/v1/tenants/acme/endpoints/plain");
    let (endpoint_away, endpoint_secret_away, endpoint_delete_away, key_away, key_delete_away) = tokio::join!(
        api.admin(
            &a,
            acme_endpoints,
            r#"{"url":"https://away.example.com/h"}"#
        ),
        api.admin(&a, plain_secret, "{}"),
        api.admin(&a, plain_delete, Bytes::new()),
        api.admin(&a, ("POST", KEYS, KEYS), r#"{"scopes":["read"]}"#),
        api.admin(&a, ("DELETE", KEY, &spare_path), Bytes::new()),
    );
    let maintenance_away = api.admin(&a, switch, r#"{"on":true}"#).await;
    let deliveries_away = api.admin(&a, deliveries, Bytes::new()).await;
    let dead_letters_away = api.admin(&a, workers::CALLS[1], Bytes::new()).await;
    let standard_status = format!("{standard_path}/status");
    let status_away = api
        .admin(&a, ("GET", STATUS, &standard_status), Bytes::new())
        .await;
    let endpoint_patch_away = api
        .admin(
            &a,
            ("PATCH", ENDPOINT, "/admin/v1/tenants/acme/endpoints/plain"),
            r#"{"enabled":false}"#,
        )
        .await;
    let (connect, rotate_away, disconnect_away, post, patch, delete, renew_away) = tokio::join!(
        api.admin(&a, acme_integrations, r#"{"provider":"standard"}"#),
        api.admin(&a, ("POST", SECRET, &standard_rotate), "{}"),
        api.admin(&a, ("DELETE", INTEGRATION, &standard_path), Bytes::new()),
        api.admin(&a, ("POST", TENANTS, TENANTS), r#"{"id":"initech"}"#),
        api.admin(
            &a,
            ("PATCH", TENANT, "/admin/v1/tenants/acme"),
            r#"{"inactivity_window_ms":60000}"#
        ),
        api.admin(
            &a,
            ("DELETE", TENANT, "/admin/v1/tenants/acme"),
            Bytes::new()
        ),
        api.admin(
            &a,
            (
                "POST",
                PUBLISHABLE_KEY,
                "/admin/v1/tenants/acme/publishable_key"
            ),
            Bytes::new()
        ),
    );
    broker.resume();
    for answer in [
        post,
        patch,
        delete,
        renew_away,
        connect,
        rotate_away,
        disconnect_away,
        endpoint_away,
        endpoint_secret_away,
        endpoint_delete_away,
        key_away,
        key_delete_away,
        endpoint_patch_away,
        maintenance_away,
        deliveries_away,
        dead_letters_away,
        status_away,
    ] {
        assert_eq!(answer.status, 503, "{:?}", answer.body);
    }

    // A record sealed under a key nobody has: the registry a change would leave is invalid.
    let stranger = Vault::from_base64("c3RyYW5nZXItc2VhbGluZy1rZXktMDEyMzQ1Njc4OWE=").unwrap();
    let records = Records::from_toml(GLOBEX, Path::new("."), &HashMap::new(), &stranger).unwrap();
    let sealed_elsewhere = plan(&Records::default(), &records, &stranger.into()).unwrap();
    cartstream::kafka::registry::write(&a.config.kafka, sealed_elsewhere.messages())
        .await
        .unwrap();
    // Read (the topic says so), not in force (it cannot be opened).
    api.until(&a, ("GET", TENANT, "/admin/v1/tenants/globex"), 200)
        .await;
    let refused = api
        .admin(
            &a,
            ("DELETE", TENANT, &format!("/admin/v1/tenants/{uuid}")),
            Bytes::new(),
        )
        .await;
    let globex_shop = (
        "DELETE",
        INTEGRATION,
        "/admin/v1/tenants/globex/integrations/shopify:shop_domain=globex.myshopify.com",
    );
    assert_eq!(api.admin(&a, globex_shop, Bytes::new()).await.status, 422);
    let globex_key = (
        "POST",
        PUBLISHABLE_KEY,
        "/admin/v1/tenants/globex/publishable_key",
    );
    assert_eq!(api.admin(&a, globex_key, Bytes::new()).await.status, 422);
    let globex_status = (
        "GET",
        STATUS,
        "/admin/v1/tenants/globex/integrations/shopify:shop_domain=globex.myshopify.com/status",
    );
    let not_in_force = api.admin(&a, globex_status, Bytes::new()).await;
    assert_eq!(not_in_force.status, 409, "{:?}", not_in_force.body);
    let globex_crm = ("DELETE", ENDPOINT, "/admin/v1/tenants/globex/endpoints/crm");
    assert_eq!(api.admin(&a, globex_crm, Bytes::new()).await.status, 422);
    // (The change made while Kafka was away may have been written after all: the other way.)
    let was = api.admin(&a, maintenance, Bytes::new()).await.json()["on"] == true;
    let switch_refused = api.admin(&a, switch, format!(r#"{{"on":{}}}"#, !was)).await;
    assert_eq!(switch_refused.status, 422, "{:?}", switch_refused.body);
    let key_refused = api
        .admin(&a, ("POST", KEYS, KEYS), r#"{"scopes":["read"]}"#)
        .await;
    assert_eq!(
        key_refused.status, 422,
        "no change while the registry is invalid"
    );
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert!(refused.json()["problems"]
        .to_string()
        .contains("sealed with key"));
    let tombstones: Vec<_> = sealed_elsewhere
        .messages()
        .map(|(key, _)| (key, None))
        .collect();
    cartstream::kafka::registry::write(&a.config.kafka, tombstones.into_iter().rev())
        .await
        .unwrap();

    a.stop().await;
    b.stop().await;

    // One change a minute: the next, on any route that changes something, is 429.
    let limited = TestDaemon::builder("admin-v1-limited")
        .brokers(&brokers)
        .topic_prefix(&format!("{prefix}-limited"))
        .tenants_from_topic(SEALING_KEY)
        .config(|c| {
            c.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap());
            c.admin.writes_per_minute = 1;
        })
        .start()
        .await;
    let first = api
        .admin(&limited, ("POST", TENANTS, TENANTS), r#"{"id":"acme"}"#)
        .await;
    assert_eq!(first.status, 201);
    let changes = every_call.iter().chain(&workers::CALLS);
    for call in changes.filter(|(method, _, _)| *method != "GET") {
        let refused = api.admin(&limited, *call, "{}").await;
        assert_eq!(refused.status, 429, "{call:?}");
        let wait: u64 = refused.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "Retry-After {wait}");
    }
    let reads = api.admin(&limited, list(TENANTS), Bytes::new()).await;
    assert_eq!(reads.status, 200, "reads are not limited");
    limited.stop().await;

    // Without admin.token the API is off; with tenants from a file it manages nothing.
    let off = daemon("admin-v1-off", &brokers, &prefix, false).await;
    assert_eq!(api.admin(&off, deliveries, Bytes::new()).await.status, 403);
    for call in every_call {
        assert_eq!(api.admin(&off, call, "{}").await.status, 403, "{call:?}");
    }
    off.stop().await;
    let file = TestDaemon::builder("admin-v1-file")
        .brokers(&brokers)
        .config(|c| c.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap()))
        .start()
        .await;
    for call in every_call {
        assert_eq!(api.admin(&file, call, "{}").await.status, 409, "{call:?}");
    }
    file.stop().await;

    let seen = api.seen.into_inner().unwrap();
    let documented = documented();
    let unseen: Vec<_> = documented.difference(&seen).collect();
    let undocumented: Vec<_> = seen.difference(&documented).collect();
    assert!(
        unseen.is_empty() && undocumented.is_empty(),
        "documented but not produced: {unseen:?}; produced but not documented: {undocumented:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_onboarded_through_one_instance_is_served_by_another_at_once() {
    let prefix = crate::support::unique_prefix("admin-v1-propagation");
    let brokers = crate::support::brokers();
    let (a, b) = (
        daemon("admin-v1-propagation-a", &brokers, &prefix, true).await,
        daemon("admin-v1-propagation-b", &brokers, &prefix, true).await,
    );
    let (api, http) = (Api::new(), Http::http1());
    const ROUNDS: usize = 100;
    let mut took = Vec::with_capacity(ROUNDS);
    for n in 0..ROUNDS {
        let tenant = format!("shop-{n}");
        let tenants = ("POST", "/admin/v1/tenants", "/admin/v1/tenants");
        let created = api
            .admin(&a, tenants, format!(r#"{{"id":"{tenant}"}}"#))
            .await;
        assert_eq!(created.status, 201);
        let path = format!("/admin/v1/tenants/{tenant}/integrations");
        let route = ("POST", "/admin/v1/tenants/{id}/integrations", path.as_str());
        let connected = api.admin(&a, route, r#"{"provider":"standard"}"#).await;
        assert_eq!(connected.status, 201);
        // From A's answer to B accepting a delivery signed with the secret A returned.
        let answered = Instant::now();
        let connected = connected.json();
        let (path, secret) = (
            connected["webhook_path"].as_str().unwrap(),
            connected["secret"].as_str().unwrap(),
        );
        loop {
            let status = standard_webhook(&http, &b, path, secret).await;
            if status == 200 {
                break;
            }
            assert_eq!(status, 401, "not yet known is 401, nothing else");
            assert!(
                answered.elapsed() < Duration::from_secs(15),
                "{tenant} never served by b"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        took.push(answered.elapsed());
    }
    took.sort();
    println!(
        "onboarded through a, served by b: p50 {:?}, p99 {:?}, max {:?} over {ROUNDS} tenants",
        took[ROUNDS / 2],
        took[(ROUNDS * 99).div_ceil(100) - 1],
        took[ROUNDS - 1]
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_verifies_on_every_instance_until_its_grace_period_ends_then_only_the_new_one(
) {
    let prefix = crate::support::unique_prefix("admin-v1-grace");
    let brokers = crate::support::brokers();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let clock = Clock::manual(now);
    let (a, b) = (
        daemon_at("admin-v1-grace-a", &brokers, &prefix, &clock).await,
        daemon_at("admin-v1-grace-b", &brokers, &prefix, &clock).await,
    );
    let (api, http) = (Api::new(), Http::http1());
    let tenants = ("POST", "/admin/v1/tenants", "/admin/v1/tenants");
    let created = api.admin(&a, tenants, r#"{"id":"acme"}"#).await;
    assert_eq!(created.status, 201);
    let old = ("acme-shopify-secret-0001", "acme.myshopify.com");
    let new = ("acme-shopify-secret-0002", old.1);
    let connect = (
        "POST",
        "/admin/v1/tenants/{id}/integrations",
        "/admin/v1/tenants/acme/integrations",
    );
    let body = format!(
        r#"{{"provider":"shopify","shop_domain":"{}","secret":"{}"}}"#,
        old.1, old.0
    );
    assert_eq!(api.admin(&a, connect, body).await.status, 201);
    until_status("the first secret on b", 200, || {
        shopify_webhook(&http, &b, old)
    })
    .await;

    // Rotated with ten minutes of grace: both secrets verify on both instances.
    let rotate = (
        "POST",
        "/admin/v1/tenants/{id}/integrations/{integration}/secret",
        "/admin/v1/tenants/acme/integrations/shopify:shop_domain=acme.myshopify.com/secret",
    );
    let grace = Duration::from_secs(600);
    let rotated = api
        .admin(
            &a,
            rotate,
            format!(
                r#"{{"secret":"{}","grace_period_ms":{}}}"#,
                new.0,
                grace.as_millis()
            ),
        )
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let ends = cartstream::clock::rfc3339(clock.now_millis() + grace.as_millis() as i64);
    assert_eq!(rotated.json()["previous_secret_expires_at"], ends);
    for daemon in [&a, &b] {
        until_status("the new secret", 200, || {
            shopify_webhook(&http, daemon, new)
        })
        .await;
        assert_eq!(
            shopify_webhook(&http, daemon, old).await,
            200,
            "the replaced secret verifies during the grace period"
        );
    }

    // The grace period over: only the new secret, on both, with no change written.
    let written = read_topic(&brokers, &format!("{prefix}.tenants.v1")).len();
    clock.advance(grace);
    for daemon in [&a, &b] {
        until_status("the replaced secret after the grace period", 401, || {
            shopify_webhook(&http, daemon, old)
        })
        .await;
        assert_eq!(shopify_webhook(&http, daemon, new).await, 200);
    }
    assert_eq!(
        read_topic(&brokers, &format!("{prefix}.tenants.v1")).len(),
        written,
        "the end of a grace period is read from the record, not written"
    );
    let out_of_range = api
        .admin(
            &a,
            rotate,
            r#"{"secret":"acme-shopify-secret-0003","grace_period_ms":-1}"#,
        )
        .await;
    assert_eq!(out_of_range.status, 400);
    a.stop().await;
    b.stop().await;
}
