//! A local fake of Salla's OAuth server (Custom Mode, `accounts.salla.sa`) and Merchant API
//! (`api.salla.dev`), served over TLS on loopback (`fake_tls.rs`), for the tests that connect a
//! store the way a merchant does: the consent screen redirects to the app's callback with a code
//! (Salla signs no callback), the code is exchanged once, form-encoded, for an access token, and
//! the token reads the merchant and registers and removes webhook subscriptions. One server
//! plays both hosts: a daemon is given `base` as the URL of each.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use http::request::Parts;
use http::{header, HeaderMap, Method, StatusCode};
use serde_json::{json, Map, Value};
use url::Url;

use crate::fake_tls::{answer, bearer, form, json_object, query, query_of, random_hex, read};
use crate::fake_tls::{redirect, Answer, TlsServer};

/// The id of the merchant's owner, as `/oauth2/user/info` gives it.
pub const SALLA_USER_ID: u64 = 1_027_364_519;

/// Subscription ids count up from here, as large as Salla's.
const FIRST_SUBSCRIPTION_ID: u64 = 1_933_707_001;

/// One visit of the consent screen, as the merchant's browser made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SallaAuthorize {
    /// The `scope` parameter split on spaces.
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    pub state: String,
}

/// A live subscription with everything the app registered it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SallaSubscription {
    pub id: u64,
    pub name: String,
    pub event: String,
    pub url: String,
    pub version: u64,
    /// `signature` or `token`, when the app chose one.
    pub security_strategy: Option<String>,
    pub secret: Option<String>,
    /// The `headers` sent along, as (key, value).
    pub headers: Vec<(String, String)>,
}

/// The fake platform: one app (`client_id`, `client_secret`) and the one merchant who installs
/// it. Dropping it stops the server.
pub struct FakeSalla {
    /// `https://localhost:{port}`: both the OAuth server and the API.
    pub base: String,
    /// The PEM of the CA that signed the server's certificate.
    pub ca_pem: String,
    shared: Arc<Shared>,
    tls: TlsServer,
}

/// The app's credentials, the merchant, and the platform's state, shared by the server and the
/// inspection.
struct Shared {
    client_id: String,
    client_secret: String,
    merchant_id: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    authorize_requests: Vec<SallaAuthorize>,
    deny_next: bool,
    failing_events: HashSet<String>,
    codes: HashMap<String, Grant>,
    /// Access tokens, oldest first.
    tokens: Vec<String>,
    /// Every subscription ever created; the id of each is `FIRST_SUBSCRIPTION_ID` plus its index.
    subscriptions: Vec<Subscription>,
}

/// An authorization code, bound to the redirect_uri it was asked with.
struct Grant {
    redirect_uri: String,
    scope: String,
    used: bool,
}

struct Subscription {
    live: SallaSubscription,
    rule: Value,
    deleted: bool,
}

impl FakeSalla {
    pub async fn start(client_id: &str, client_secret: &str, merchant_id: u64) -> FakeSalla {
        let shared = Arc::new(Shared {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            merchant_id,
            state: Mutex::default(),
        });
        let served = shared.clone();
        let tls = TlsServer::start("Salla", move |parts, body| served.handle(parts, body)).await;
        FakeSalla {
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

    /// Every later subscription to `event` (`order.created`) answers 422.
    pub fn fail_registration(&self, event: &str) {
        self.state().failing_events.insert(event.to_owned());
    }

    /// Registrations succeed again.
    pub fn fail_nothing(&self) {
        self.state().failing_events.clear();
    }

    /// The live subscriptions as (event, url), sorted.
    pub fn subscriptions(&self) -> Vec<(String, String)> {
        let live = self.subscription_details().into_iter();
        live.map(|s| (s.event, s.url)).collect()
    }

    /// The live subscriptions with all they were registered with, sorted by (event, url).
    pub fn subscription_details(&self) -> Vec<SallaSubscription> {
        let mut live: Vec<_> = (self.state().subscriptions.iter())
            .filter(|s| !s.deleted)
            .map(|s| s.live.clone())
            .collect();
        live.sort_by(|a, b| (&a.event, &a.url).cmp(&(&b.event, &b.url)));
        live
    }

    pub fn authorize_requests(&self) -> Vec<SallaAuthorize> {
        self.state().authorize_requests.clone()
    }

    /// The access tokens issued, oldest first.
    pub fn tokens(&self) -> Vec<String> {
        self.state().tokens.clone()
    }

    /// Subscriptions ever created, those deleted since included; an update is no creation.
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
        match (&parts.method, parts.uri.path()) {
            (&Method::GET, "/oauth2/auth") => self.authorize(&query(parts)),
            (&Method::POST, "/oauth2/token") => self.token(headers, body),
            (&Method::GET, "/oauth2/user/info") => self.user_info(headers),
            (&Method::POST, "/admin/v2/webhooks/subscribe") => self.subscribe(headers, body),
            (&Method::DELETE, "/admin/v2/webhooks/unsubscribe") => {
                self.unsubscribe(headers, &query(parts))
            }
            _ => api_error(StatusCode::NOT_FOUND, "Not Found", "The route is not found"),
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
            return oauth_error("invalid_client", "The client_id is not that of a known app");
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
        let scope = param("scope").unwrap_or("");
        let scopes = scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned);

        let mut guard = self.state.lock().unwrap();
        guard.authorize_requests.push(SallaAuthorize {
            scopes: scopes.collect(),
            redirect_uri: redirect_uri.to_owned(),
            state: state.to_owned(),
        });
        if std::mem::take(&mut guard.deny_next) {
            let declined = "The resource owner denied the request";
            let error = [("error", "access_denied"), ("error_description", declined)];
            location
                .query_pairs_mut()
                .extend_pairs(error)
                .append_pair("state", state);
            return redirect(&location);
        }
        let code = format!("ory_ac_{}", random_hex());
        let grant = Grant {
            redirect_uri: redirect_uri.to_owned(),
            scope: scope.to_owned(),
            used: false,
        };
        guard.codes.insert(code.clone(), grant);
        let pairs = [("code", code.as_str()), ("scope", scope), ("state", state)];
        location.query_pairs_mut().extend_pairs(pairs);
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
            let description = "The authorization code was not found or was already used";
            return oauth_error("invalid_grant", description);
        };
        if field("redirect_uri") != Some(&grant.redirect_uri) {
            let description = "The redirect_uri does not match the one of the authorization";
            return oauth_error("invalid_grant", description);
        }
        grant.used = true;
        let scope = grant.scope.clone();
        let token = format!("ory_at_{}", random_hex());
        state.tokens.push(token.clone());
        let refresh = format!("ory_rt_{}", random_hex());
        let issued = json!({
            "access_token": token,
            "expires": 1209599,
            "refresh_token": refresh,
            "scope": scope,
            "token_type": "bearer",
        });
        answer(StatusCode::OK, issued)
    }

    fn user_info(&self, headers: &HeaderMap) -> Answer {
        if let Some(refused) = self.unauthorized(headers) {
            return refused;
        }
        let merchant = self.merchant_id;
        let user = json!({
            "id": SALLA_USER_ID,
            "name": "Fake Owner",
            "email": format!("owner@store-{merchant}.example"),
            "mobile": "+966500000000",
            "role": "user",
            "merchant": {
                "id": merchant,
                "username": format!("store-{merchant}"),
                "name": format!("Fake Store {merchant}"),
                "domain": format!("https://salla.sa/store-{merchant}"),
            },
        });
        answer(
            StatusCode::OK,
            json!({"status": 200, "success": true, "data": user}),
        )
    }

    fn subscribe(&self, headers: &HeaderMap, body: &[u8]) -> Answer {
        if let Some(refused) = self.unauthorized(headers) {
            return refused;
        }
        let request = json_object(headers, body).unwrap_or_default();
        let text = |name: &str| request.get(name).and_then(Value::as_str).map(str::to_owned);
        let mut invalid = Map::new();
        let mut require = |name: &str| {
            let value = text(name).filter(|v| !v.is_empty());
            if value.is_none() {
                invalid.insert(name.to_owned(), json!([format!("The {name} is required")]));
            }
            value.unwrap_or_default()
        };
        let (name, event, url) = (require("name"), require("event"), require("url"));
        if !url.is_empty() && !Url::parse(&url).is_ok_and(|u| u.scheme().starts_with("http")) {
            invalid.insert("url".to_owned(), json!(["The url is not a valid URL"]));
        }
        let version = request.get("version").map_or(Some(2), Value::as_u64);
        let Some(version @ (1 | 2)) = version else {
            invalid.insert("version".to_owned(), json!(["The version must be 1 or 2"]));
            return invalid_fields(invalid);
        };
        let security_strategy = text("security_strategy");
        if !matches!(
            security_strategy.as_deref(),
            None | Some("signature" | "token")
        ) {
            let message = "The security_strategy must be signature or token";
            invalid.insert("security_strategy".to_owned(), json!([message]));
        }
        let mut state = self.state.lock().unwrap();
        if state.failing_events.contains(&event) {
            let message = format!("The fake was told to refuse {event}");
            invalid.insert("event".to_owned(), json!([message]));
        }
        if !invalid.is_empty() {
            return invalid_fields(invalid);
        }
        let headers = (request.get("headers").and_then(Value::as_array))
            .into_iter()
            .flatten()
            .filter_map(|h| {
                Some((
                    h["key"].as_str()?.to_owned(),
                    h["value"].as_str()?.to_owned(),
                ))
            });
        let mut live = SallaSubscription {
            id: 0,
            name,
            event,
            url,
            version,
            security_strategy,
            secret: text("secret"),
            headers: headers.collect(),
        };
        let rule = request.get("rule").cloned().unwrap_or(Value::Null);
        // Subscribing an event to a URL again updates the subscription there is.
        let known = (state.subscriptions.iter_mut())
            .find(|s| !s.deleted && s.live.event == live.event && s.live.url == live.url);
        let subscription = match known {
            Some(known) => {
                live.id = known.live.id;
                known.live = live;
                known.rule = rule;
                known
            }
            None => {
                live.id = FIRST_SUBSCRIPTION_ID + state.subscriptions.len() as u64;
                state.subscriptions.push(Subscription {
                    live,
                    rule,
                    deleted: false,
                });
                state.subscriptions.last_mut().unwrap()
            }
        };
        let live = &subscription.live;
        let headers: Vec<Value> = (live.headers.iter())
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        let data = json!({
            "id": live.id,
            "name": live.name,
            "event": live.event,
            "type": "manual",
            "url": live.url,
            "version": live.version,
            "rule": subscription.rule,
            "headers": headers,
        });
        answer(
            StatusCode::CREATED,
            json!({"status": 201, "success": true, "data": data}),
        )
    }

    /// Deletes the subscription `id`, or every one to `url`.
    fn unsubscribe(&self, headers: &HeaderMap, params: &HashMap<String, String>) -> Answer {
        if let Some(refused) = self.unauthorized(headers) {
            return refused;
        }
        let id = params.get("id").map(|id| id.parse::<u64>().ok());
        let url = params.get("url");
        if id.is_none() && url.is_none() {
            let fields = json!({"id": ["The id or the url is required"]});
            return invalid_fields(fields.as_object().unwrap().clone());
        }
        let mut state = self.state.lock().unwrap();
        let mut deleted = 0;
        for subscription in state.subscriptions.iter_mut().filter(|s| !s.deleted) {
            let by_id = id.is_some_and(|id| id == Some(subscription.live.id));
            if by_id || url.is_some_and(|url| *url == subscription.live.url) {
                subscription.deleted = true;
                deleted += 1;
            }
        }
        if deleted == 0 {
            let message = "The webhook is not found";
            return api_error(StatusCode::NOT_FOUND, "error", message);
        }
        let body = json!({"status": 202, "success": true, "data": "The webhook is unsubscribed"});
        answer(StatusCode::ACCEPTED, body)
    }

    /// The API's answer to a request without an issued token, if it is one.
    fn unauthorized(&self, headers: &HeaderMap) -> Option<Answer> {
        let state = self.state.lock().unwrap();
        let token = bearer(headers);
        if token.is_some_and(|token| state.tokens.iter().any(|issued| issued == token)) {
            return None;
        }
        let message = "The access token is invalid or has expired";
        Some(api_error(StatusCode::UNAUTHORIZED, "Unauthorized", message))
    }
}

/// The OAuth server's refusal: always 400, `error` naming the reason.
fn oauth_error(error: &str, description: &str) -> Answer {
    let body = json!({"error": error, "error_description": description});
    answer(StatusCode::BAD_REQUEST, body)
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Answer {
    let error = json!({"code": code, "message": message});
    let body = json!({"status": status.as_u16(), "success": false, "error": error});
    answer(status, body)
}

/// The API's refusal of a request's fields: 422, a list of messages under each field's name.
fn invalid_fields(fields: Map<String, Value>) -> Answer {
    let error = json!({"code": "error", "message": "alert.invalid_fields", "fields": fields});
    let body = json!({"status": 422, "success": false, "error": error});
    answer(StatusCode::UNPROCESSABLE_ENTITY, body)
}

const CALLBACK: &str = "https://daemon.example/oauth/salla/callback";
const SCOPE: &str = "webhooks.read_write offline_access";
const MERCHANT: u64 = 473_829_106;

/// The URL an app sends the merchant to, asking for two scopes.
fn authorize_url(salla: &FakeSalla, client_id: &str, response_type: &str, state: &str) -> String {
    let mut url = Url::parse(&format!("{}/oauth2/auth", salla.base)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("response_type", response_type)
        .append_pair("redirect_uri", CALLBACK)
        .append_pair("scope", SCOPE)
        .append_pair("state", state);
    url.into()
}

/// The form of a code exchange.
fn exchange_form(code: &str, secret: &str, redirect_uri: &str) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("client_id", "app-id")
        .append_pair("client_secret", secret)
        .append_pair("redirect_uri", redirect_uri);
    form.finish()
}

/// The Merchant API as an app holding a token calls it.
struct Api<'a> {
    salla: &'a FakeSalla,
    client: reqwest::Client,
    token: &'a str,
}

impl Api<'_> {
    async fn subscribe(&self, body: Value) -> (StatusCode, Value) {
        let url = format!("{}/admin/v2/webhooks/subscribe", self.salla.base);
        let request = (self.client.post(url).bearer_auth(self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        read(request).await
    }

    async fn unsubscribe(&self, by: &str, value: &str) -> (StatusCode, Value) {
        let url = format!("{}/admin/v2/webhooks/unsubscribe", self.salla.base);
        let mut url = Url::parse(&url).unwrap();
        url.query_pairs_mut().append_pair(by, value);
        read(self.client.delete(url).bearer_auth(self.token)).await
    }

    async fn user_info(&self) -> (StatusCode, Value) {
        let url = format!("{}/oauth2/user/info", self.salla.base);
        read(self.client.get(url).bearer_auth(self.token)).await
    }
}

fn pair(event: &str, url: &str) -> (String, String) {
    (event.to_owned(), url.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_salla_consents_exchanges_a_code_once_and_keeps_subscriptions() {
    let salla = FakeSalla::start("app-id", "app-secret", MERCHANT).await;
    let authorize = authorize_url(&salla, "app-id", "code", "state-0001");
    let callback = salla.follow_authorize(&authorize).await;
    assert!(callback.starts_with(&format!("{CALLBACK}?")), "{callback}");
    let params = query_of(&callback);
    let names: Vec<&str> = params.keys().map(String::as_str).collect();
    assert_eq!(names, ["code", "scope", "state"], "Salla signs no callback");
    assert_eq!([&params["scope"], &params["state"]], [SCOPE, "state-0001"]);
    let consent = SallaAuthorize {
        scopes: vec![
            "webhooks.read_write".to_owned(),
            "offline_access".to_owned(),
        ],
        redirect_uri: CALLBACK.to_owned(),
        state: "state-0001".to_owned(),
    };
    assert_eq!(salla.authorize_requests(), [consent]);

    let client = salla.client();
    let exchange = (client.post(format!("{}/oauth2/token", salla.base)))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(exchange_form(&params["code"], "app-secret", CALLBACK));
    let (status, issued) = read(exchange.try_clone().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!([&issued["scope"], &issued["token_type"]], [SCOPE, "bearer"]);
    assert_eq!(issued["expires"], 1209599);
    let token = issued["access_token"].as_str().unwrap();
    assert!(token.starts_with("ory_at_"), "{token}");
    let refresh = issued["refresh_token"].as_str().unwrap();
    assert!(refresh.starts_with("ory_rt_"), "{refresh}");
    let (status, again) = read(exchange).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a code is good once");
    assert_eq!(again["error"], "invalid_grant");
    assert_eq!(salla.tokens(), [token]);

    let api = Api {
        salla: &salla,
        client,
        token,
    };
    let (status, user) = api.user_info().await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["data"]["id"], SALLA_USER_ID);
    assert_eq!(user["data"]["merchant"]["id"], MERCHANT);
    let username = user["data"]["merchant"]["username"].as_str().unwrap();
    assert_eq!(username, format!("store-{MERCHANT}"));

    let orders = json!({
        "name": "cartstream order.created",
        "event": "order.created",
        "url": "https://hooks.example/o",
        "version": 2,
        "security_strategy": "signature",
        "secret": "webhook-secret",
    });
    let (status, created) = api.subscribe(orders.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let expected = json!({
        "status": 201,
        "success": true,
        "data": {
            "id": FIRST_SUBSCRIPTION_ID,
            "name": "cartstream order.created",
            "event": "order.created",
            "type": "manual",
            "url": "https://hooks.example/o",
            "version": 2,
            "rule": null,
            "headers": [],
        },
    });
    assert_eq!(created, expected);
    let carts = json!({
        "name": "carts",
        "event": "abandoned.cart",
        "url": "https://hooks.example/c",
        "headers": [{"key": "X-Tenant", "value": "acme"}],
    });
    let (status, carts) = api.subscribe(carts).await;
    assert_eq!(status, StatusCode::CREATED, "{carts}");
    assert_eq!(carts["data"]["version"], 2, "version 2 unless asked");
    assert_eq!(
        carts["data"]["headers"],
        json!([{"key": "X-Tenant", "value": "acme"}])
    );
    let carts_id = carts["data"]["id"].as_u64().unwrap();
    assert_eq!(carts_id, FIRST_SUBSCRIPTION_ID + 1);

    let mut again = orders.clone();
    again["name"] = json!("renamed");
    again["secret"] = json!("rotated");
    let (status, updated) = api.subscribe(again).await;
    assert_eq!(status, StatusCode::CREATED, "{updated}");
    assert_eq!(
        updated["data"]["id"], FIRST_SUBSCRIPTION_ID,
        "the same event and URL update the subscription"
    );
    assert_eq!(salla.created_count(), 2);
    let details = salla.subscription_details();
    let order = &details[1];
    assert_eq!(
        [&order.name, &order.event, order.secret.as_ref().unwrap()],
        ["renamed", "order.created", "rotated"]
    );
    assert_eq!(order.security_strategy.as_deref(), Some("signature"));
    assert_eq!(details[0].headers, [pair("X-Tenant", "acme")]);
    assert_eq!(
        salla.subscriptions(),
        [
            pair("abandoned.cart", "https://hooks.example/c"),
            pair("order.created", "https://hooks.example/o"),
        ]
    );

    let (status, gone) = api.unsubscribe("id", &carts_id.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{gone}");
    assert_eq!(
        [&gone["status"], &gone["success"]],
        [&json!(202), &json!(true)]
    );
    let (status, unknown) = api.unsubscribe("id", &carts_id.to_string()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    assert_eq!(unknown["success"], false);
    let (status, _) = api.unsubscribe("url", "https://hooks.example/o").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(salla.subscriptions(), []);
    assert_eq!(salla.deleted_count(), 2);
    let (status, _) = api.unsubscribe("url", "https://hooks.example/o").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_salla_api_refuses_unknown_tokens_invalid_fields_and_failing_events() {
    let salla = FakeSalla::start("app-id", "app-secret", MERCHANT).await;
    let authorize = authorize_url(&salla, "app-id", "code", "state-0001");
    let code = query_of(&salla.follow_authorize(&authorize).await)["code"].clone();
    let client = salla.client();
    let exchange = (client.post(format!("{}/oauth2/token", salla.base)))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(exchange_form(&code, "app-secret", CALLBACK));
    let (_, issued) = read(exchange).await;
    let token = issued["access_token"].as_str().unwrap();
    let api = Api {
        salla: &salla,
        client,
        token,
    };

    let orders = json!({"name": "o", "event": "order.created", "url": "https://hooks.example/o"});
    salla.fail_registration("order.created");
    let (status, refused) = api.subscribe(orders).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(
        [&refused["status"], &refused["success"]],
        [&json!(422), &json!(false)]
    );
    assert_eq!(refused["error"]["code"], "error");
    assert!(
        refused["error"]["fields"]["event"][0].is_string(),
        "{refused}"
    );
    let carts = json!({"name": "c", "event": "abandoned.cart", "url": "https://hooks.example/c"});
    let (status, _) = api.subscribe(carts.clone()).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "only the event told to fail fails"
    );

    let (status, missing) = api.subscribe(json!({"event": "order.updated"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = missing["error"]["fields"].as_object().unwrap();
    let names: Vec<&str> = fields.keys().map(String::as_str).collect();
    assert_eq!(names, ["name", "url"]);
    let url = format!("{}/admin/v2/webhooks/subscribe", salla.base);
    let unlabelled = (api.client.post(&url).bearer_auth(token)).body(carts.to_string());
    let (status, _) = read(unlabelled).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a body not declared JSON is read as no fields"
    );

    let wrong = Api {
        token: "ory_at_wrong",
        ..api
    };
    for (status, answer) in [
        wrong.subscribe(carts).await,
        wrong
            .unsubscribe("id", &FIRST_SUBSCRIPTION_ID.to_string())
            .await,
        wrong.user_info().await,
    ] {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        let expected = json!({"status": 401, "success": false, "error": {
            "code": "Unauthorized",
            "message": "The access token is invalid or has expired",
        }});
        assert_eq!(answer, expected);
    }
    let (status, _) = read(wrong.client.post(&url).body("{}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a request needs a token");
    assert_eq!(salla.created_count(), 1);
    assert_eq!(salla.deleted_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_salla_consent_carries_no_code_and_a_code_needs_the_app_and_its_redirect_uri() {
    let salla = FakeSalla::start("app-id", "app-secret", MERCHANT).await;
    salla.deny_next();
    let authorize = authorize_url(&salla, "app-id", "code", "state-0001");
    let declined = query_of(&salla.follow_authorize(&authorize).await);
    assert_eq!(
        [&declined["error"], &declined["state"]],
        ["access_denied", "state-0001"]
    );
    assert!(declined.contains_key("error_description"), "{declined:?}");
    assert!(!declined.contains_key("code"), "{declined:?}");

    let client = salla.client();
    for (client_id, response_type) in [("other-app", "code"), ("app-id", "token")] {
        let url = authorize_url(&salla, client_id, response_type, "state-0002");
        let (status, refused) = read(client.get(url)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    }
    let states: Vec<String> = (salla.authorize_requests().into_iter())
        .map(|request| request.state)
        .collect();
    assert_eq!(states, ["state-0001"], "a refused consent is not recorded");

    let authorize = authorize_url(&salla, "app-id", "code", "state-0003");
    let code = query_of(&salla.follow_authorize(&authorize).await)["code"].clone();
    let url = format!("{}/oauth2/token", salla.base);
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
    assert_eq!(salla.tokens(), [issued["access_token"].as_str().unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_salla_is_served_to_a_client_given_its_ca_file_only() {
    let salla = FakeSalla::start("app-id", "app-secret", MERCHANT).await;
    let url = format!("{}/oauth2/user/info", salla.base);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let untrusting = reqwest::Client::builder().build().unwrap();
    let refused = untrusting.get(&url).send().await.unwrap_err();
    assert!(
        format!("{refused:?}").contains("UnknownIssuer"),
        "{refused:?}"
    );

    let pem = std::fs::read(salla.ca_file()).unwrap();
    assert_eq!(pem, salla.ca_pem.as_bytes());
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
