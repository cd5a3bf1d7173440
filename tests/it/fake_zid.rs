//! A local fake of Zid's OAuth server (`oauth.zid.sa`) and Merchant API (`api.zid.sa`), served
//! over TLS on loopback (`fake_tls.rs`), for the tests that connect a store the way a merchant
//! does: the consent screen redirects to the app's callback with a code (the app's scopes are
//! set in Zid's Partner Dashboard, so the authorize URL carries none), the code is exchanged
//! once, form-encoded, for a token pair, and the pair — `authorization` as the bearer token,
//! `access_token` as the `X-Manager-Token` — registers, lists and removes webhook
//! subscriptions. One server plays both hosts: a daemon is given `base` as the URL of each.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use http::request::Parts;
use http::{header, HeaderMap, Method, StatusCode};
use serde_json::{json, Value};
use url::Url;

use crate::fake_tls::{answer, bearer, form, json_object, query, query_of, random_hex, read};
use crate::fake_tls::{redirect, Answer, TlsServer};

/// One visit of the consent screen, as the merchant's browser made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZidAuthorize {
    pub redirect_uri: String,
    pub state: String,
}

/// A live subscription with the fields an app sets; they order it by event first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ZidSubscription {
    pub event: String,
    pub target_url: String,
    pub original_id: String,
    /// The basic-auth credentials Zid sends the webhook with, when the app gave them.
    pub username: Option<String>,
    pub password: Option<String>,
}

/// The fake platform: one app (`client_id`, `client_secret`) and the one store that installs
/// it. Dropping it stops the server.
pub struct FakeZid {
    /// `https://localhost:{port}`: both the OAuth server and the API.
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
    authorize_requests: Vec<ZidAuthorize>,
    deny_next: bool,
    failing_events: HashSet<String>,
    codes: HashMap<String, Grant>,
    /// Token pairs as (authorization, access_token), oldest first.
    tokens: Vec<(String, String)>,
    /// Every subscription ever created.
    subscriptions: Vec<Subscription>,
}

/// An authorization code, bound to the redirect_uri it was asked with.
struct Grant {
    redirect_uri: String,
    used: bool,
}

struct Subscription {
    id: String,
    live: ZidSubscription,
    subscriber: String,
    conditions: Value,
    deleted: bool,
}

impl Subscription {
    /// The subscription as the API shows it; the credentials it keeps to itself.
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "event": self.live.event,
            "target_url": self.live.target_url,
            "original_id": self.live.original_id,
            "subscriber": self.subscriber,
            "active": true,
            "conditions": self.conditions,
        })
    }
}

impl FakeZid {
    pub async fn start(client_id: &str, client_secret: &str) -> FakeZid {
        let shared = Arc::new(Shared {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            state: Mutex::default(),
        });
        let served = shared.clone();
        let tls = TlsServer::start("Zid", move |parts, body| served.handle(parts, body)).await;
        FakeZid {
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

    /// Every later subscription to `event` (`order.create`) answers 422.
    pub fn fail_registration(&self, event: &str) {
        self.state().failing_events.insert(event.to_owned());
    }

    /// Registrations succeed again.
    pub fn fail_nothing(&self) {
        self.state().failing_events.clear();
    }

    /// The live subscriptions, sorted by event (then target_url, original_id, …).
    pub fn subscriptions(&self) -> Vec<ZidSubscription> {
        let mut live: Vec<_> = (self.state().subscriptions.iter())
            .filter(|s| !s.deleted)
            .map(|s| s.live.clone())
            .collect();
        live.sort();
        live
    }

    pub fn authorize_requests(&self) -> Vec<ZidAuthorize> {
        self.state().authorize_requests.clone()
    }

    /// The token pairs issued as (authorization, access_token), oldest first.
    pub fn tokens(&self) -> Vec<(String, String)> {
        self.state().tokens.clone()
    }

    /// Subscriptions ever created, those deleted since included.
    pub fn created_count(&self) -> usize {
        self.state().subscriptions.len()
    }

    pub fn deleted_count(&self) -> usize {
        let state = self.state();
        state.subscriptions.iter().filter(|s| s.deleted).count()
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

impl Shared {
    fn handle(&self, parts: &Parts, body: &[u8]) -> Answer {
        let headers = &parts.headers;
        let webhooks = "/v1/managers/webhooks";
        match (&parts.method, parts.uri.path()) {
            (&Method::GET, "/oauth/authorize") => self.authorize(&query(parts)),
            (&Method::POST, "/oauth/token") => self.token(headers, body),
            (method, path) if path == webhooks || path == format!("{webhooks}/") => {
                let mut state = self.state.lock().unwrap();
                if !state.authorized(headers) {
                    let body = json!({"status": "error", "message": "unauthorized"});
                    return answer(StatusCode::UNAUTHORIZED, body);
                }
                match *method {
                    Method::POST => state.create(&self.client_id, headers, body),
                    Method::DELETE => state.delete(&query(parts)),
                    Method::GET => state.list(),
                    _ => api_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
                }
            }
            _ => api_error(StatusCode::NOT_FOUND, "Not Found"),
        }
    }

    /// The consent screen, which consents at once (or declines, once, after `deny_next`).
    fn authorize(&self, params: &HashMap<String, String>) -> Answer {
        let param = |name: &str| params.get(name).map(String::as_str);
        let (Some(client_id), Some(redirect_uri), Some(state)) =
            (param("client_id"), param("redirect_uri"), param("state"))
        else {
            return oauth_error(
                "invalid_request",
                "client_id, redirect_uri and state are required",
            );
        };
        if client_id != self.client_id {
            return oauth_error("invalid_client", "Client authentication failed");
        }
        if param("response_type") != Some("code") {
            return oauth_error(
                "unsupported_response_type",
                "The response_type must be code",
            );
        }
        let Ok(mut location) = Url::parse(redirect_uri) else {
            return oauth_error("invalid_request", "The redirect_uri is not a URL");
        };

        let mut guard = self.state.lock().unwrap();
        guard.authorize_requests.push(ZidAuthorize {
            redirect_uri: redirect_uri.to_owned(),
            state: state.to_owned(),
        });
        if std::mem::take(&mut guard.deny_next) {
            location
                .query_pairs_mut()
                .append_pair("error", "access_denied")
                .append_pair("state", state);
            return redirect(&location);
        }
        let code = format!("{}{}", random_hex(), random_hex());
        let grant = Grant {
            redirect_uri: redirect_uri.to_owned(),
            used: false,
        };
        guard.codes.insert(code.clone(), grant);
        location
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", state);
        redirect(&location)
    }

    /// The code exchange, form-encoded: a code is good once, for the redirect_uri it was issued
    /// with.
    fn token(&self, headers: &HeaderMap, body: &[u8]) -> Answer {
        let Some(fields) = form(headers, body) else {
            return oauth_error("invalid_request", "The request body must be form-encoded");
        };
        let field = |name: &str| fields.get(name).map(String::as_str);
        if field("grant_type") != Some("authorization_code") {
            return oauth_error("unsupported_grant_type", "The grant_type is not supported");
        }
        if field("client_id") != Some(&self.client_id)
            || field("client_secret") != Some(&self.client_secret)
        {
            return oauth_error("invalid_client", "Client authentication failed");
        }
        let mut state = self.state.lock().unwrap();
        let grant = field("code").and_then(|code| state.codes.get_mut(code));
        let Some(grant) = grant.filter(|grant| !grant.used) else {
            let message = "The authorization code was not found or was already used";
            return oauth_error("invalid_grant", message);
        };
        if field("redirect_uri") != Some(&grant.redirect_uri) {
            let message = "The redirect_uri does not match the one of the authorization";
            return oauth_error("invalid_grant", message);
        }
        grant.used = true;
        let access_token = random_hex();
        let authorization = format!("{}.{}.{}", random_hex(), random_hex(), random_hex());
        (state.tokens).push((authorization.clone(), access_token.clone()));
        let issued = json!({
            "token_type": "Bearer",
            "expires_in": 31536000,
            "access_token": access_token,
            "authorization": authorization,
            "refresh_token": random_hex(),
        });
        answer(StatusCode::OK, issued)
    }
}

impl State {
    /// Whether the request carries both halves of one issued token pair.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let manager = headers.get("x-manager-token").and_then(|v| v.to_str().ok());
        let (Some(authorization), Some(manager)) = (bearer(headers), manager) else {
            return false;
        };
        (self.tokens.iter()).any(|(a, m)| a == authorization && m == manager)
    }

    fn create(&mut self, client_id: &str, headers: &HeaderMap, body: &[u8]) -> Answer {
        let request = json_object(headers, body).unwrap_or_default();
        let text = |name: &str| match request.get(name) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Number(number)) => Some(number.to_string()),
            _ => None,
        };
        let required = ["event", "target_url", "original_id"];
        if let Some(missing) = required
            .iter()
            .find(|name| text(name).is_none_or(|v| v.is_empty()))
        {
            let message = format!("The {missing} field is required.");
            return api_error(StatusCode::UNPROCESSABLE_ENTITY, &message);
        }
        let (event, target_url) = (text("event").unwrap(), text("target_url").unwrap());
        if !Url::parse(&target_url).is_ok_and(|u| u.scheme().starts_with("http")) {
            let message = "The target url must be a valid URL.";
            return api_error(StatusCode::UNPROCESSABLE_ENTITY, message);
        }
        if self.failing_events.contains(&event) {
            let message = format!("The fake was told to refuse {event}");
            return api_error(StatusCode::UNPROCESSABLE_ENTITY, &message);
        }
        let subscription = Subscription {
            id: uuid(),
            live: ZidSubscription {
                event,
                target_url,
                original_id: text("original_id").unwrap(),
                username: text("username"),
                password: text("password"),
            },
            subscriber: text("subscriber").unwrap_or_else(|| client_id.to_owned()),
            conditions: request.get("conditions").cloned().unwrap_or(Value::Null),
            deleted: false,
        };
        let created = subscription.json();
        self.subscriptions.push(subscription);
        answer(StatusCode::OK, created)
    }

    /// Deletes every live subscription with the `original_id` given.
    fn delete(&mut self, params: &HashMap<String, String>) -> Answer {
        let Some(original_id) = params.get("original_id") else {
            let message = "The original id field is required.";
            return api_error(StatusCode::UNPROCESSABLE_ENTITY, message);
        };
        let mut deleted = 0;
        for subscription in self.subscriptions.iter_mut().filter(|s| !s.deleted) {
            if subscription.live.original_id == *original_id {
                subscription.deleted = true;
                deleted += 1;
            }
        }
        if deleted == 0 {
            return api_error(StatusCode::NOT_FOUND, "The webhook is not found");
        }
        answer(StatusCode::OK, json!({"status": "success"}))
    }

    fn list(&self) -> Answer {
        let live = self.subscriptions.iter().filter(|s| !s.deleted);
        let data: Vec<Value> = live.map(Subscription::json).collect();
        answer(StatusCode::OK, json!({"data": data}))
    }
}

/// The OAuth server's refusal: always 400, `error` naming the reason.
fn oauth_error(error: &str, message: &str) -> Answer {
    let body = json!({"error": error, "error_description": message, "message": message});
    answer(StatusCode::BAD_REQUEST, body)
}

fn api_error(status: StatusCode, message: &str) -> Answer {
    answer(status, json!({"status": "error", "message": message}))
}

/// A random id shaped as a UUID.
fn uuid() -> String {
    let hex = random_hex();
    let parts = [
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..],
    ];
    parts.join("-")
}

const CALLBACK: &str = "https://daemon.example/oauth/zid/callback";

/// The URL an app sends the merchant to.
fn authorize_url(zid: &FakeZid, client_id: &str, response_type: &str, state: &str) -> String {
    let mut url = Url::parse(&format!("{}/oauth/authorize", zid.base)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", CALLBACK)
        .append_pair("response_type", response_type)
        .append_pair("state", state);
    url.into()
}

/// The form of a code exchange.
fn exchange_form(code: &str, secret: &str, redirect_uri: &str) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "authorization_code")
        .append_pair("client_id", "app-id")
        .append_pair("client_secret", secret)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code", code);
    form.finish()
}

/// Consents and exchanges the code: the token pair as (authorization, access_token).
async fn connect(zid: &FakeZid, state: &str) -> (String, String) {
    let callback = zid
        .follow_authorize(&authorize_url(zid, "app-id", "code", state))
        .await;
    let code = &query_of(&callback)["code"];
    let exchange = (zid.client().post(format!("{}/oauth/token", zid.base)))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(exchange_form(code, "app-secret", CALLBACK));
    let (status, issued) = read(exchange).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let token = |name: &str| issued[name].as_str().unwrap().to_owned();
    (token("authorization"), token("access_token"))
}

/// The Merchant API as an app holding a token pair calls it.
struct Api<'a> {
    zid: &'a FakeZid,
    client: reqwest::Client,
    authorization: &'a str,
    manager_token: &'a str,
}

impl Api<'_> {
    fn webhooks(&self, method: Method, query: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let mut url = Url::parse(&format!("{}/v1/managers/webhooks", self.zid.base)).unwrap();
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        (self.client.request(method, url))
            .bearer_auth(self.authorization)
            .header("x-manager-token", self.manager_token)
    }

    async fn create(&self, body: Value) -> (StatusCode, Value) {
        let request = (self.webhooks(Method::POST, &[]))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        read(request).await
    }

    async fn delete(&self, original_id: &str) -> (StatusCode, Value) {
        read(self.webhooks(Method::DELETE, &[("original_id", original_id)])).await
    }

    async fn list(&self) -> (StatusCode, Value) {
        read(self.webhooks(Method::GET, &[])).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_zid_consents_exchanges_a_code_once_and_keeps_subscriptions() {
    let zid = FakeZid::start("app-id", "app-secret").await;
    let callback = (zid.follow_authorize(&authorize_url(&zid, "app-id", "code", "state-1"))).await;
    assert!(callback.starts_with(&format!("{CALLBACK}?")), "{callback}");
    let params = query_of(&callback);
    let names: Vec<&str> = params.keys().map(String::as_str).collect();
    assert_eq!(names, ["code", "state"]);
    assert_eq!(params["state"], "state-1");
    let consent = ZidAuthorize {
        redirect_uri: CALLBACK.to_owned(),
        state: "state-1".to_owned(),
    };
    assert_eq!(zid.authorize_requests(), [consent]);

    let client = zid.client();
    let exchange = (client.post(format!("{}/oauth/token", zid.base)))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(exchange_form(&params["code"], "app-secret", CALLBACK));
    let (status, issued) = read(exchange.try_clone().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(
        [&issued["token_type"], &issued["expires_in"]],
        [&json!("Bearer"), &json!(31536000)]
    );
    let field = |name: &str| issued[name].as_str().unwrap().to_owned();
    let (authorization, manager_token) = (field("authorization"), field("access_token"));
    assert_ne!(authorization, manager_token);
    assert!(!field("refresh_token").is_empty());
    let (status, again) = read(exchange).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a code is good once");
    assert_eq!(again["error"], "invalid_grant");
    assert!(again["message"].is_string(), "{again}");
    let pair = (authorization.clone(), manager_token.clone());
    assert_eq!(zid.tokens(), [pair]);

    let api = Api {
        zid: &zid,
        client,
        authorization: &authorization,
        manager_token: &manager_token,
    };
    let orders = json!({
        "event": "order.create",
        "target_url": "https://hooks.example/o",
        "original_id": "acme",
        "username": "cartstream",
        "password": "basic-secret",
    });
    let (status, created) = api.create(orders).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "{id}");
    let expected = json!({
        "id": id,
        "event": "order.create",
        "target_url": "https://hooks.example/o",
        "original_id": "acme",
        "subscriber": "app-id",
        "active": true,
        "conditions": null,
    });
    assert_eq!(created, expected, "the credentials are not shown");
    let carts = json!({
        "event": "abandoned_cart.created",
        "target_url": "https://hooks.example/c",
        "original_id": "acme",
        "conditions": {"status": "new"},
    });
    let (status, carts) = api.create(carts).await;
    assert_eq!(status, StatusCode::OK, "{carts}");
    assert_eq!(carts["conditions"], json!({"status": "new"}));
    let other =
        json!({"event": "order.create", "target_url": "https://hooks.example/x", "original_id": 7});
    let (status, other) = api.create(other).await;
    assert_eq!(status, StatusCode::OK, "{other}");
    assert_eq!(other["original_id"], "7");

    let (status, listed) = api.list().await;
    assert_eq!(status, StatusCode::OK);
    let listed = listed["data"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0], created);
    let subscription =
        |event: &str, url: &str, original_id: &str, basic: Option<(&str, &str)>| ZidSubscription {
            event: event.to_owned(),
            target_url: url.to_owned(),
            original_id: original_id.to_owned(),
            username: basic.map(|(username, _)| username.to_owned()),
            password: basic.map(|(_, password)| password.to_owned()),
        };
    let acme_orders = subscription(
        "order.create",
        "https://hooks.example/o",
        "acme",
        Some(("cartstream", "basic-secret")),
    );
    assert_eq!(
        zid.subscriptions(),
        [
            subscription(
                "abandoned_cart.created",
                "https://hooks.example/c",
                "acme",
                None
            ),
            acme_orders,
            subscription("order.create", "https://hooks.example/x", "7", None),
        ]
    );

    let (status, deleted) = api.delete("acme").await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted, json!({"status": "success"}));
    let (status, none) = api.delete("acme").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{none}");
    assert_eq!(none["status"], "error");
    assert_eq!(
        zid.subscriptions(),
        [subscription(
            "order.create",
            "https://hooks.example/x",
            "7",
            None
        )]
    );
    assert_eq!([zid.created_count(), zid.deleted_count()], [3, 2]);
    let (_, listed) = api.list().await;
    assert_eq!(listed["data"], json!([other]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_zid_api_needs_both_halves_of_one_token_pair_and_refuses_failing_events() {
    let zid = FakeZid::start("app-id", "app-secret").await;
    let (authorization, manager_token) = connect(&zid, "state-1").await;
    let (other_authorization, other_manager) = connect(&zid, "state-2").await;
    let api = Api {
        zid: &zid,
        client: zid.client(),
        authorization: &authorization,
        manager_token: &manager_token,
    };
    let orders = json!({
        "event": "order.create",
        "target_url": "https://hooks.example/o",
        "original_id": "acme",
    });

    let mixed = [
        (authorization.as_str(), other_manager.as_str()),
        (other_authorization.as_str(), manager_token.as_str()),
        (manager_token.as_str(), authorization.as_str()),
        ("", manager_token.as_str()),
    ];
    for (authorization, manager_token) in mixed {
        let wrong = Api {
            authorization,
            manager_token,
            client: api.client.clone(),
            ..api
        };
        for (status, refused) in [
            wrong.create(orders.clone()).await,
            wrong.list().await,
            wrong.delete("acme").await,
        ] {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
            assert_eq!(
                refused,
                json!({"status": "error", "message": "unauthorized"})
            );
        }
    }
    let url = format!("{}/v1/managers/webhooks", zid.base);
    let bearer_only = (api.client.get(&url)).bearer_auth(&authorization);
    let (status, _) = read(bearer_only).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the manager token is required"
    );
    let manager_only = (api.client.get(&url)).header("x-manager-token", &manager_token);
    let (status, _) = read(manager_only).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the bearer token is required"
    );
    let (status, listed) = api.list().await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed, json!({"data": []}));

    zid.fail_registration("order.create");
    let (status, refused) = api.create(orders).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["status"], "error");
    assert!(refused["message"].is_string(), "{refused}");
    let carts = json!({
        "event": "abandoned_cart.created",
        "target_url": "https://hooks.example/c",
        "original_id": "acme",
    });
    let (status, _) = api.create(carts.clone()).await;
    assert_eq!(status, StatusCode::OK, "only the event told to fail fails");
    let (status, missing) = api.create(json!({"event": "order.status.update"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{missing}");
    let unlabelled = (api.webhooks(Method::POST, &[])).body(carts.to_string());
    let (status, _) = read(unlabelled).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a body not declared JSON is read as no fields"
    );
    assert_eq!(zid.created_count(), 1);
    let (status, _) = read(api.webhooks(Method::DELETE, &[])).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the original_id is required"
    );
    assert_eq!(zid.deleted_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_zid_consent_carries_no_code_and_a_code_needs_the_app_and_its_redirect_uri() {
    let zid = FakeZid::start("app-id", "app-secret").await;
    zid.deny_next();
    let authorize = authorize_url(&zid, "app-id", "code", "state-1");
    let declined = query_of(&zid.follow_authorize(&authorize).await);
    let names: Vec<&str> = declined.keys().map(String::as_str).collect();
    assert_eq!(names, ["error", "state"]);
    assert_eq!(
        [&declined["error"], &declined["state"]],
        ["access_denied", "state-1"]
    );

    let client = zid.client();
    for (client_id, response_type) in [("other-app", "code"), ("app-id", "token")] {
        let url = authorize_url(&zid, client_id, response_type, "state-2");
        let (status, refused) = read(client.get(url)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    }
    assert_eq!(
        zid.authorize_requests().len(),
        1,
        "a refused consent is not recorded"
    );

    let callback = zid
        .follow_authorize(&authorize_url(&zid, "app-id", "code", "state-3"))
        .await;
    let code = query_of(&callback)["code"].clone();
    let url = format!("{}/oauth/token", zid.base);
    let exchange = |form: String, content_type: &str| {
        (client.post(&url))
            .header(header::CONTENT_TYPE, content_type)
            .body(form)
    };
    let form = "application/x-www-form-urlencoded";
    let (status, refused) = read(exchange(exchange_form(&code, "nope", CALLBACK), form)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the app authenticates itself"
    );
    assert_eq!(refused["error"], "invalid_client");
    let elsewhere = exchange_form(&code, "app-secret", "https://elsewhere.example/cb");
    let (status, refused) = read(exchange(elsewhere, form)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the redirect_uri is the consent's"
    );
    assert_eq!(refused["error"], "invalid_grant");
    let fields = query_of(&format!(
        "https://x/?{}",
        exchange_form(&code, "app-secret", CALLBACK)
    ));
    let as_json = serde_json::to_string(&fields).unwrap();
    let (status, refused) = read(exchange(as_json, "application/json")).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the exchange is form-encoded only"
    );
    assert_eq!(refused["error"], "invalid_request");
    let (status, issued) = read(exchange(exchange_form(&code, "app-secret", CALLBACK), form)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "refusals leave the code good: {issued}"
    );
    let pair = (
        issued["authorization"].as_str().unwrap().to_owned(),
        issued["access_token"].as_str().unwrap().to_owned(),
    );
    assert_eq!(zid.tokens(), [pair]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_zid_is_served_to_a_client_given_its_ca_file_only() {
    let zid = FakeZid::start("app-id", "app-secret").await;
    let url = format!("{}/v1/managers/webhooks", zid.base);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let untrusting = reqwest::Client::builder().build().unwrap();
    let refused = untrusting.get(&url).send().await.unwrap_err();
    assert!(
        format!("{refused:?}").contains("UnknownIssuer"),
        "{refused:?}"
    );

    let pem = std::fs::read(zid.ca_file()).unwrap();
    assert_eq!(pem, zid.ca_pem.as_bytes());
    let ca = reqwest::Certificate::from_pem(&pem).unwrap();
    let trusting = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .unwrap();
    let (status, _) = read(trusting.get(&url)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "served, and refused for want of a token"
    );
}
