//! A local fake of Shopify's OAuth and Admin GraphQL API, served over TLS on loopback, for the
//! tests that connect a shop the way a merchant does: the consent screen redirects to the app's
//! callback with a signed code, the code is exchanged once for an access token, and the token
//! registers and removes webhook subscriptions. Every shop lives under a path prefix, so the
//! daemon reaches `https://{shop}` as `https://localhost:{port}/{shop}`. The certificate is
//! signed by a CA made at start, which a client must trust explicitly.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::{header, HeaderMap, Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use url::Url;

use crate::fake_tls::{answer, query_of, random_hex, read, redirect, Answer, TlsServer};

const SUBSCRIPTION_GID: &str = "gid://shopify/WebhookSubscription/";

/// One visit of the consent screen, as the merchant's browser made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorize {
    pub shop: String,
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    pub state: String,
}

/// The fake platform: one app (`client_id`, `client_secret`) installed on any number of shops.
/// Dropping it stops the server.
pub struct FakeShopify {
    /// `https://localhost:{port}`; a shop's admin is under `{base}/{shop}`.
    pub base: String,
    /// The PEM of the CA that signed the server's certificate.
    pub ca_pem: String,
    shared: Arc<Shared>,
    tls: TlsServer,
}

/// The app's credentials and the platform's state, shared by the server and the inspection.
struct Shared {
    client_id: String,
    client_secret: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    authorize_requests: Vec<Authorize>,
    deny_next: bool,
    failing_topics: HashSet<String>,
    /// Authorization codes, each bound to the shop (and app) it was issued for.
    codes: HashMap<String, Grant>,
    /// Access tokens by shop, oldest first.
    tokens: HashMap<String, Vec<String>>,
    /// Every subscription ever created; the id of each is its index plus one.
    subscriptions: Vec<Subscription>,
}

struct Grant {
    shop: String,
    client_id: String,
    scopes: Vec<String>,
    used: bool,
}

struct Subscription {
    shop: String,
    topic: String,
    uri: String,
    deleted: bool,
}

impl FakeShopify {
    pub async fn start(client_id: &str, client_secret: &str) -> FakeShopify {
        let shared = Arc::new(Shared {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            state: Mutex::default(),
        });
        let served = shared.clone();
        let tls =
            TlsServer::start("Shopify", move |parts, body| handle(&served, parts, body)).await;
        FakeShopify {
            base: tls.base.clone(),
            ca_pem: tls.ca_pem.clone(),
            shared,
            tls,
        }
    }

    /// A file holding `ca_pem`, for a daemon configured with a path; it lives as long as `self`.
    pub fn ca_file(&self) -> PathBuf {
        self.tls.ca_file()
    }

    /// The merchant declines the next consent: the redirect carries an error and no code.
    pub fn deny_next(&self) {
        self.state().deny_next = true;
    }

    /// Every later `webhookSubscriptionCreate` for `topic` (a GraphQL enum, `ORDERS_PAID`)
    /// answers a user error.
    pub fn fail_registration(&self, topic: &str) {
        self.state().failing_topics.insert(topic.to_owned());
    }

    /// The shop's live subscriptions as (topic, uri), sorted.
    pub fn subscriptions(&self, shop: &str) -> Vec<(String, String)> {
        let mut live: Vec<_> = (self.state().subscriptions.iter())
            .filter(|s| s.shop == shop && !s.deleted)
            .map(|s| (s.topic.clone(), s.uri.clone()))
            .collect();
        live.sort();
        live
    }

    pub fn authorize_requests(&self) -> Vec<Authorize> {
        self.state().authorize_requests.clone()
    }

    /// The access tokens issued for the shop, oldest first.
    pub fn tokens(&self, shop: &str) -> Vec<String> {
        self.state().tokens.get(shop).cloned().unwrap_or_default()
    }

    /// Subscriptions ever created for the shop, those deleted since included.
    pub fn created_count(&self, shop: &str) -> usize {
        self.state()
            .subscriptions
            .iter()
            .filter(|s| s.shop == shop)
            .count()
    }

    pub fn deleted_count(&self, shop: &str) -> usize {
        self.state()
            .subscriptions
            .iter()
            .filter(|s| s.shop == shop && s.deleted)
            .count()
    }

    /// Opens an authorize URL as the merchant's browser would, and returns where the consent
    /// screen sends the browser next: the app's callback URL.
    pub async fn follow_authorize(&self, authorize_url: &str) -> String {
        self.tls.follow_authorize(authorize_url).await
    }

    /// An HTTPS client that trusts this fake's CA only and follows no redirect.
    pub fn client(&self) -> reqwest::Client {
        self.tls.client()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }
}

/// Every shop lives under a path prefix: `/{shop}/admin/…`.
fn handle(shared: &Shared, parts: &Parts, body: &[u8]) -> Answer {
    let path = parts.uri.path().trim_start_matches('/');
    let (shop, rest) = path.split_once('/').unwrap_or((path, ""));
    let rest: Vec<&str> = rest.split('/').collect();
    match (&parts.method, rest.as_slice()) {
        (&Method::GET, ["admin", "oauth", "authorize"]) => {
            shared.authorize(shop, parts.uri.query().unwrap_or(""))
        }
        (&Method::POST, ["admin", "oauth", "access_token"]) => {
            shared.access_token(shop, &parts.headers, body)
        }
        (&Method::POST, ["admin", "api", _version, "graphql.json"]) => {
            shared.graphql(shop, &parts.headers, body)
        }
        _ => answer(StatusCode::NOT_FOUND, json!({"errors": "Not Found"})),
    }
}

impl Shared {
    /// The consent screen, which consents at once (or declines, once, after `deny_next`).
    fn authorize(&self, shop: &str, query: &str) -> Answer {
        let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let param = |name: &str| params.get(name).map(String::as_str);
        let (Some(client_id), Some(redirect_uri), Some(state)) =
            (param("client_id"), param("redirect_uri"), param("state"))
        else {
            return invalid_request("client_id, redirect_uri and state are required");
        };
        if client_id != self.client_id {
            return invalid_request("The client_id is not that of an installed app");
        }
        let Ok(mut location) = Url::parse(redirect_uri) else {
            return invalid_request("The redirect_uri is not a URL");
        };
        let scopes = param("scope").unwrap_or("").split(',').map(str::trim);
        let scopes: Vec<String> = scopes
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();

        let mut guard = self.state.lock().unwrap();
        guard.authorize_requests.push(Authorize {
            shop: shop.to_owned(),
            scopes: scopes.clone(),
            redirect_uri: redirect_uri.to_owned(),
            state: state.to_owned(),
        });
        if std::mem::take(&mut guard.deny_next) {
            let declined = "The merchant declined to install the app";
            let error = [("error", "access_denied"), ("error_description", declined)];
            location
                .query_pairs_mut()
                .extend_pairs(error)
                .append_pair("state", state);
            return redirect(&location);
        }
        let code = random_hex();
        let grant = Grant {
            shop: shop.to_owned(),
            client_id: client_id.to_owned(),
            scopes,
            used: false,
        };
        guard.codes.insert(code.clone(), grant);
        drop(guard);

        let store = shop.strip_suffix(".myshopify.com").unwrap_or(shop);
        let host = STANDARD_NO_PAD.encode(format!("admin.shopify.com/store/{store}"));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let timestamp = now.as_secs().to_string();
        let mut pairs = vec![
            ("code", code.as_str()),
            ("host", &host),
            ("shop", shop),
            ("state", state),
            ("timestamp", &timestamp),
        ];
        let hmac = callback_hmac(&self.client_secret, &pairs);
        pairs.insert(1, ("hmac", &hmac));
        location.query_pairs_mut().extend_pairs(pairs);
        redirect(&location)
    }

    /// The code exchange: a code is good once, for the shop and app it was issued for.
    fn access_token(&self, shop: &str, headers: &HeaderMap, body: &[u8]) -> Answer {
        let fields = form_or_json(headers, body);
        let field = |name: &str| fields.get(name).map(String::as_str);
        if field("client_id") != Some(&self.client_id)
            || field("client_secret") != Some(&self.client_secret)
        {
            return invalid_request("The client_id or client_secret is wrong");
        }
        let mut state = self.state.lock().unwrap();
        let grant = field("code").and_then(|code| state.codes.get_mut(code));
        let Some(grant) = grant
            .filter(|grant| grant.shop == shop && grant.client_id == self.client_id && !grant.used)
        else {
            return invalid_request("The authorization code was not found or was already used");
        };
        grant.used = true;
        let scope = grant.scopes.join(",");
        let token = format!("shpat_{}", random_hex());
        state
            .tokens
            .entry(shop.to_owned())
            .or_default()
            .push(token.clone());
        answer(
            StatusCode::OK,
            json!({"access_token": token, "scope": scope}),
        )
    }

    fn graphql(&self, shop: &str, headers: &HeaderMap, body: &[u8]) -> Answer {
        let mut state = self.state.lock().unwrap();
        let token = headers
            .get("x-shopify-access-token")
            .and_then(|v| v.to_str().ok());
        let issued = state
            .tokens
            .get(shop)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if !token.is_some_and(|token| issued.iter().any(|issued| issued == token)) {
            let errors =
                "[API] Invalid API key or access token (unrecognized login or wrong password)";
            return answer(StatusCode::UNAUTHORIZED, json!({"errors": errors}));
        }
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"errors": "The body is not JSON"}),
            );
        };
        let query = request["query"].as_str().unwrap_or("");
        let variables = &request["variables"];
        let data = if query.contains("webhookSubscriptionCreate") {
            state.create(shop, variables)
        } else if query.contains("webhookSubscriptionDelete") {
            state.delete(shop, variables)
        } else {
            let known = "The fake knows webhookSubscriptionCreate and webhookSubscriptionDelete";
            return answer(StatusCode::OK, json!({"errors": [{"message": known}]}));
        };
        answer(StatusCode::OK, json!({"data": data}))
    }
}

impl State {
    fn create(&mut self, shop: &str, variables: &Value) -> Value {
        let topic = variables["topic"].as_str().unwrap_or("");
        let input = &variables["webhookSubscription"];
        let uri = input["uri"].as_str().or(input["callbackUrl"].as_str());
        let uri = uri.unwrap_or("");
        let taken = (self.subscriptions.iter())
            .any(|s| s.shop == shop && s.topic == topic && s.uri == uri && !s.deleted);
        let refusal = if self.failing_topics.contains(topic) {
            Some(format!("The fake was told to refuse {topic}"))
        } else if topic.is_empty() || uri.is_empty() {
            Some("A topic and a uri are required".to_owned())
        } else if taken {
            Some("Address for this topic has already been taken".to_owned())
        } else {
            None
        };
        let payload = if let Some(message) = refusal {
            let error = json!({"field": ["webhookSubscription"], "message": message});
            json!({"webhookSubscription": null, "userErrors": [error]})
        } else {
            let id = format!("{SUBSCRIPTION_GID}{}", self.subscriptions.len() + 1);
            self.subscriptions.push(Subscription {
                shop: shop.to_owned(),
                topic: topic.to_owned(),
                uri: uri.to_owned(),
                deleted: false,
            });
            let created = json!({"id": id, "topic": topic, "uri": uri});
            json!({"webhookSubscription": created, "userErrors": []})
        };
        json!({"webhookSubscriptionCreate": payload})
    }

    fn delete(&mut self, shop: &str, variables: &Value) -> Value {
        let id = variables["id"].as_str().unwrap_or("");
        let index = (id.strip_prefix(SUBSCRIPTION_GID))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1));
        let live = index.and_then(|index| self.subscriptions.get_mut(index));
        let payload = match live.filter(|s| s.shop == shop && !s.deleted) {
            Some(subscription) => {
                subscription.deleted = true;
                json!({"deletedWebhookSubscriptionId": id, "userErrors": []})
            }
            None => {
                let error =
                    json!({"field": ["id"], "message": "Webhook subscription does not exist"});
                json!({"deletedWebhookSubscriptionId": null, "userErrors": [error]})
            }
        };
        json!({"webhookSubscriptionDelete": payload})
    }
}

/// Shopify's signature of a callback: hex HMAC-SHA256 under the app's secret of the parameters
/// other than `hmac`, sorted by name, as `name=value` joined with `&`, values not URL-encoded.
fn callback_hmac(secret: &str, pairs: &[(&str, &str)]) -> String {
    let mut pairs: Vec<_> = pairs.iter().filter(|(name, _)| *name != "hmac").collect();
    pairs.sort();
    let message: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.join("&").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The string fields of a form-encoded or JSON body.
fn form_or_json(headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type.is_some_and(|t| t.starts_with("application/x-www-form-urlencoded")) {
        return url::form_urlencoded::parse(body).into_owned().collect();
    }
    let Ok(Value::Object(object)) = serde_json::from_slice(body) else {
        return HashMap::new();
    };
    (object.into_iter())
        .filter_map(|(name, value)| Some((name, value.as_str()?.to_owned())))
        .collect()
}

fn invalid_request(description: &str) -> Answer {
    let body = json!({"error": "invalid_request", "error_description": description});
    answer(StatusCode::BAD_REQUEST, body)
}

const CALLBACK: &str = "https://daemon.example/oauth/shopify/callback";
const CREATE: &str = "mutation webhookSubscriptionCreate($topic: WebhookSubscriptionTopic!, \
    $webhookSubscription: WebhookSubscriptionInput!) { webhookSubscriptionCreate(topic: $topic, \
    webhookSubscription: $webhookSubscription) { webhookSubscription { id topic uri } \
    userErrors { field message } } }";
const DELETE: &str = "mutation webhookSubscriptionDelete($id: ID!) { webhookSubscriptionDelete(\
    id: $id) { deletedWebhookSubscriptionId userErrors { field message } } }";

/// The URL an app sends the merchant to, asking for two scopes.
fn authorize_url(shopify: &FakeShopify, shop: &str, client_id: &str, state: &str) -> String {
    let mut url = Url::parse(&format!("{}/{shop}/admin/oauth/authorize", shopify.base)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("scope", "read_orders,read_checkouts")
        .append_pair("redirect_uri", CALLBACK)
        .append_pair("state", state);
    url.into()
}

/// A shop's Admin API as an app holding a token calls it.
struct Admin<'a> {
    client: &'a reqwest::Client,
    api: String,
    token: &'a str,
}

impl Admin<'_> {
    async fn call(&self, query: &str, variables: Value) -> (StatusCode, Value) {
        let body = json!({"query": query, "variables": variables});
        let request = (self.client.post(&self.api))
            .header("x-shopify-access-token", self.token)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        read(request).await
    }

    /// The `webhookSubscriptionCreate` payload; `uri_field` is `uri`, or its synonym.
    async fn create(&self, topic: &str, uri_field: &str, uri: &str) -> Value {
        let variables = json!({"topic": topic, "webhookSubscription": {uri_field: uri}});
        let (_, answer) = self.call(CREATE, variables).await;
        answer["data"]["webhookSubscriptionCreate"].clone()
    }

    async fn delete(&self, id: &Value) -> Value {
        let (_, answer) = self.call(DELETE, json!({"id": id})).await;
        answer["data"]["webhookSubscriptionDelete"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_shopify_consents_exchanges_a_code_once_and_keeps_subscriptions() {
    let shopify = FakeShopify::start("app-id", "app-secret").await;
    let shop = "acme.myshopify.com";
    let authorize = authorize_url(&shopify, shop, "app-id", "n-1");
    let callback = shopify.follow_authorize(&authorize).await;
    assert!(callback.starts_with(&format!("{CALLBACK}?")), "{callback}");
    let params = query_of(&callback);
    assert_eq!([&params["state"], &params["shop"]], ["n-1", shop]);
    let host = STANDARD_NO_PAD.decode(&params["host"]).unwrap();
    assert_eq!(host, b"admin.shopify.com/store/acme");
    // The signature, checked as an app checks it: the other parameters, sorted, decoded.
    let signed = params.iter().filter(|(name, _)| *name != "hmac");
    let signed: Vec<String> = signed
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"app-secret").unwrap();
    mac.update(signed.join("&").as_bytes());
    let hmac = hex::decode(&params["hmac"]).unwrap();
    mac.verify_slice(&hmac)
        .expect("the callback's hmac verifies");
    let consent = Authorize {
        shop: shop.to_owned(),
        scopes: vec!["read_orders".to_owned(), "read_checkouts".to_owned()],
        redirect_uri: CALLBACK.to_owned(),
        state: "n-1".to_owned(),
    };
    assert_eq!(shopify.authorize_requests(), [consent]);

    let client = shopify.client();
    let code = &params["code"];
    let body = json!({"client_id": "app-id", "client_secret": "app-secret", "code": code});
    let exchange = (client.post(format!("{}/{shop}/admin/oauth/access_token", shopify.base)))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    let (status, issued) = read(exchange.try_clone().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(issued["scope"], "read_orders,read_checkouts");
    let token = issued["access_token"].as_str().unwrap();
    assert!(token.starts_with("shpat_"), "{token}");
    let (status, again) = read(exchange).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a code is good once");
    assert_eq!(again["error"], "invalid_request");
    assert_eq!(shopify.tokens(shop), [token]);

    let api = format!("{}/{shop}/admin/api/2025-07/graphql.json", shopify.base);
    let admin = Admin {
        client: &client,
        api,
        token,
    };
    let checkouts = admin
        .create("CHECKOUTS_CREATE", "uri", "https://hooks.example/c")
        .await;
    assert_eq!(checkouts["userErrors"], json!([]), "{checkouts}");
    let created = &checkouts["webhookSubscription"];
    assert_eq!(
        [&created["topic"], &created["uri"]],
        ["CHECKOUTS_CREATE", "https://hooks.example/c"]
    );
    let orders = admin
        .create("ORDERS_CREATE", "callbackUrl", "https://hooks.example/o")
        .await;
    let orders = &orders["webhookSubscription"]["id"];
    assert!(
        orders.as_str().unwrap().starts_with(SUBSCRIPTION_GID),
        "{orders}"
    );
    let taken = admin
        .create("CHECKOUTS_CREATE", "uri", "https://hooks.example/c")
        .await;
    let taken = &taken["userErrors"][0]["message"];
    assert_eq!(taken, "Address for this topic has already been taken");

    let deleted = admin.delete(orders).await;
    let expected = json!({"deletedWebhookSubscriptionId": orders, "userErrors": []});
    assert_eq!(deleted, expected);
    let unknown = admin.delete(orders).await;
    assert_eq!(
        unknown["userErrors"][0]["field"],
        json!(["id"]),
        "{unknown}"
    );
    let live = (
        "CHECKOUTS_CREATE".to_owned(),
        "https://hooks.example/c".to_owned(),
    );
    assert_eq!(shopify.subscriptions(shop), [live]);
    assert_eq!(shopify.created_count(shop), 2);
    assert_eq!(shopify.deleted_count(shop), 1);

    shopify.fail_registration("ORDERS_PAID");
    let refused = admin
        .create("ORDERS_PAID", "uri", "https://hooks.example/p")
        .await;
    assert_eq!(refused["webhookSubscription"], Value::Null);
    assert_eq!(
        refused["userErrors"][0]["field"],
        json!(["webhookSubscription"])
    );

    let wrong = Admin {
        token: "shpat_wrong",
        ..admin
    };
    let (status, answer) = wrong.call(CREATE, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(answer["errors"]
        .as_str()
        .unwrap()
        .starts_with("[API] Invalid API key"));
    let api = format!(
        "{}/other.myshopify.com/admin/api/2025-07/graphql.json",
        shopify.base
    );
    let elsewhere = Admin {
        client: &client,
        api,
        token,
    };
    let (status, _) = elsewhere.call(CREATE, json!({})).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a token is good for its own shop only"
    );
    assert_eq!(shopify.created_count(shop), 2);
    let (status, _) = read(client.get(format!("{}/{shop}/admin/shop.json", shopify.base))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_consent_carries_no_code_and_a_code_is_good_for_its_own_shop_and_app_only() {
    let shopify = FakeShopify::start("app-id", "app-secret").await;
    let shop = "acme.myshopify.com";
    shopify.deny_next();
    let authorize = authorize_url(&shopify, shop, "app-id", "n-1");
    let declined = query_of(&shopify.follow_authorize(&authorize).await);
    assert_eq!(
        [&declined["error"], &declined["state"]],
        ["access_denied", "n-1"]
    );
    assert!(!declined.contains_key("code"), "{declined:?}");

    let client = shopify.client();
    let other_app = authorize_url(&shopify, shop, "other-app", "n-2");
    let (status, _) = read(client.get(other_app)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "only the app's own client_id is known"
    );

    let authorize = authorize_url(&shopify, shop, "app-id", "n-3");
    let code = query_of(&shopify.follow_authorize(&authorize).await)["code"].clone();
    let exchange = |shop: &str, secret: &str| {
        let form = format!("client_id=app-id&client_secret={secret}&code={code}");
        (client.post(format!("{}/{shop}/admin/oauth/access_token", shopify.base)))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
    };
    let (status, _) = read(exchange("other.myshopify.com", "app-secret")).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a code is bound to its shop"
    );
    let (status, _) = read(exchange(shop, "not-the-secret")).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the app authenticates itself"
    );
    let (status, issued) = read(exchange(shop, "app-secret")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a form-encoded exchange is accepted: {issued}"
    );
    assert_eq!(
        shopify.tokens(shop),
        [issued["access_token"].as_str().unwrap()]
    );
    assert!(shopify.tokens("other.myshopify.com").is_empty());
    let requests = shopify.authorize_requests().into_iter();
    let states: Vec<String> = requests.map(|request| request.state).collect();
    assert_eq!(
        states,
        ["n-1", "n-3"],
        "a consent for an unknown app is not recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_fake_ca_is_refused() {
    let shopify = FakeShopify::start("app-id", "app-secret").await;
    let url = authorize_url(&shopify, "acme.myshopify.com", "other-app", "n-1");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let untrusting = reqwest::Client::builder().build().unwrap();
    let refused = untrusting.get(&url).send().await.unwrap_err();
    assert!(
        format!("{refused:?}").contains("UnknownIssuer"),
        "{refused:?}"
    );

    // The CA file is what a daemon is given: with it as an extra root, the same request is served.
    let pem = std::fs::read(shopify.ca_file()).unwrap();
    assert_eq!(pem, shopify.ca_pem.as_bytes());
    let ca = reqwest::Certificate::from_pem(&pem).unwrap();
    let trusting = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .unwrap();
    let answer = trusting.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
}
