//! Platform apps (`[platforms.*]`): shops connected through the deployment's app, whose
//! deliveries are signed with the app's secret.

use cartstream::kafka::Property;
use cartstream::platforms::App;
use cartstream::providers;

use crate::support::{fixture, read_topic, shopify_headers, Http, TestDaemon};

const SHOPIFY_APP_SECRET: &str = "shpss_the-deployments-shopify-app-secret";
const SALLA_WEBHOOK_SECRET: &str = "the-deployments-salla-app-webhook-secret";

/// Two Shopify shops and a Salla store, none with a secret of its own.
const APP_TENANTS: &str = r#"
[[tenant]]
id = "acme"
[[tenant.integration]]
provider = "shopify"
shop_domain = "acme.myshopify.com"

[[tenant]]
id = "globex"
[[tenant.integration]]
provider = "shopify"
shop_domain = "globex.myshopify.com"
[[tenant.integration]]
provider = "salla"
merchant_id = "1305146709"
"#;

fn app(client_secret: &str, webhook_secret: Option<&str>) -> App {
    App {
        client_id: "the-app-client-id".to_string(),
        client_secret: Property::Text(client_secret.to_string()),
        webhook_secret: webhook_secret.map(|s| Property::Text(s.to_string())),
        previous_webhook_secret: None,
        scopes: None,
        api_url: None,
        accounts_url: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shops_of_one_app_are_verified_with_the_apps_secret_and_land_under_their_tenants() {
    let daemon = TestDaemon::builder("platform-apps")
        .tenants(APP_TENANTS)
        .config(|c| {
            c.platforms.shopify = Some(app(SHOPIFY_APP_SECRET, None));
            c.platforms.salla = Some(app("salla-client-secret", Some(SALLA_WEBHOOK_SECRET)));
        })
        .start()
        .await;
    let http = Http::http1();
    let url = daemon.url("/api/webhooks/shopify");
    let body = br#"{"id":1,"token":"cart-1"}"#.to_vec();
    let post = |secret: &str, shop: &str, id: &str| {
        let headers = shopify_headers(secret, shop, &body, id);
        let (http, url, body) = (&http, &url, body.clone());
        async move { http.post(url, &headers, body).await.status }
    };

    assert_eq!(
        post(SHOPIFY_APP_SECRET, "acme.myshopify.com", "a-1").await,
        200
    );
    assert_eq!(
        post(SHOPIFY_APP_SECRET, "globex.myshopify.com", "g-1").await,
        200
    );
    // Another secret, and a shop nobody connected, are refused.
    let other = "shpss_some-other-apps-secret-000";
    assert_eq!(post(other, "acme.myshopify.com", "a-2").await, 401);
    assert_eq!(
        post(SHOPIFY_APP_SECRET, "initech.myshopify.com", "i-1").await,
        401
    );

    let salla = fixture("salla/docs_abandoned_cart.json");
    let salla_headers = |secret: &str| {
        vec![
            ("content-type", "application/json".to_string()),
            ("x-salla-security-strategy", "Signature".to_string()),
            (
                "x-salla-signature",
                providers::salla::sign(secret.as_bytes(), &salla),
            ),
        ]
    };
    let salla_url = daemon.url("/api/webhooks/salla");
    let signed = salla_headers(SALLA_WEBHOOK_SECRET);
    assert_eq!(
        http.post(&salla_url, &signed, salla.clone()).await.status,
        200
    );
    // Salla signs with the app's webhook secret, not its client secret.
    let client = salla_headers("salla-client-secret");
    assert_eq!(
        http.post(&salla_url, &client, salla.clone()).await.status,
        401
    );

    let records = read_topic(&daemon.brokers, &daemon.topics.inbound);
    let mut landed: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r.headers["cartstream-tenant"].clone(),
                r.headers["cartstream-provider"].clone(),
            )
        })
        .collect();
    landed.sort();
    assert_eq!(
        landed,
        [
            ("acme".to_string(), "shopify".to_string()),
            ("globex".to_string(), "salla".to_string()),
            ("globex".to_string(), "shopify".to_string()),
        ]
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_without_the_app_of_its_app_integrations_does_not_start() {
    let refused = TestDaemon::builder("platform-apps-missing")
        .tenants(APP_TENANTS)
        .config(|c| c.platforms.salla = Some(app("salla-client-secret", None)))
        .try_start()
        .await;
    let Err(problems) = refused else {
        panic!("the daemon started without [platforms.shopify]");
    };
    let problems = format!("{problems:#}");
    assert!(
        problems.contains("tenant acme integration acme.myshopify.com signs with the shopify app's secret, and [platforms.shopify] has no client_secret"),
        "{problems}"
    );
    assert!(
        problems.contains("[platforms.salla] has no webhook_secret"),
        "{problems}"
    );
}

const TOKEN: &str = "platform-apps-admin-token-0001";
const SEALING_KEY: &str = "cGxhdGZvcm0tYXBwcy1zZWFsaW5nLWtleS0wMDAwMDA=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_connects_a_shop_through_the_app_and_refuses_to_rotate_the_apps_secret() {
    let daemon = TestDaemon::builder("platform-apps-admin")
        .tenants_from_topic(SEALING_KEY)
        .config(|c| {
            c.admin.token = Some(serde_json::from_value(serde_json::json!(TOKEN)).unwrap());
            c.platforms.shopify = Some(app(SHOPIFY_APP_SECRET, None));
        })
        .start()
        .await;
    let http = Http::http1();
    let admin = |method: &'static str, path: &str, body: &'static str| {
        let url = daemon.admin_url(path);
        let headers = vec![
            ("content-type", "application/json".to_string()),
            ("authorization", format!("Bearer {TOKEN}")),
        ];
        let http = &http;
        async move { http.send(method, &url, &headers, body).await }
    };
    let created = admin("POST", "/admin/v1/tenants", r#"{"id":"acme"}"#).await;
    assert_eq!(created.status, 201, "{:?}", created.body);

    let connected = admin(
        "POST",
        "/admin/v1/tenants/acme/integrations",
        r#"{"provider":"shopify","shop_domain":"acme.myshopify.com"}"#,
    )
    .await;
    assert_eq!(connected.status, 201, "{:?}", connected.body);
    let connected = connected.json();
    assert_eq!(connected["signed_by_app"], true);
    assert!(connected.get("secret").is_none(), "{connected}");
    let tenant = admin("GET", "/admin/v1/tenants/acme", "").await.json();
    assert_eq!(tenant["integrations"][0]["signed_by_app"], true, "{tenant}");

    // The app's secret verifies the shop's deliveries, on every instance within moments.
    let body = br#"{"id":7,"token":"cart-7"}"#.to_vec();
    let url = daemon.url("/api/webhooks/shopify");
    let mut n = 0;
    let status = loop {
        n += 1;
        let headers = shopify_headers(SHOPIFY_APP_SECRET, "acme.myshopify.com", &body, "w-7");
        let status = http.post(&url, &headers, body.clone()).await.status;
        if status == 200 || n == 100 {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status, 200);

    // The app's secrets are the deployment's: they are rotated in [platforms.shopify].
    let rotate = admin(
        "POST",
        "/admin/v1/tenants/acme/integrations/shopify:shop_domain=acme.myshopify.com/secret",
        r#"{"secret":"a-secret-of-its-own-0001"}"#,
    )
    .await;
    assert_eq!(rotate.status, 409);
    let error = rotate.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("[platforms.shopify]"), "{error}");

    // Without a shop, a delivery signed with the app's secret could be anyone's.
    let shopless = admin(
        "POST",
        "/admin/v1/tenants/acme/integrations",
        r#"{"provider":"shopify","integration_key":"int_acme_no_shop_0001"}"#,
    )
    .await;
    assert_eq!(shopless.status, 400);
    // Salla has no app here: its store needs the secret Salla shows.
    let salla = admin(
        "POST",
        "/admin/v1/tenants/acme/integrations",
        r#"{"provider":"salla","merchant_id":"1305146709"}"#,
    )
    .await;
    assert_eq!(salla.status, 400);
    let error = salla.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("[platforms.salla]"), "{error}");
    daemon.stop().await;
}
