//! The operator port: Prometheus `/metrics`, `/healthz` and `/readyz`; when `admin.token` is
//! set, the admin API v1 under `/admin/v1/` ([`v1`]) and — when this process runs the delivery
//! role — the delivery actions under `/admin/` (bearer token). It stays up while the ingress
//! drains, so the drain itself can be watched.

mod v1;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

use crate::health::{json, Health};
use crate::problems::Problems;
use crate::telemetry::metrics;
use crate::tenants::Live;
use crate::{delivery, kafka};

/// The `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// Bearer token of the `/admin/` actions; without one they answer 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Token>,
    /// How long a change written through the API waits for Kafka before it is answered 503.
    #[serde(default = "default_write_timeout", with = "humantime_serde")]
    pub write_timeout: std::time::Duration,
    /// Changes (any request but a GET) each key may make through the API a minute; more are
    /// answered 429 with `Retry-After`. 0: no limit.
    #[serde(default = "default_writes_per_minute")]
    pub writes_per_minute: u32,
}

fn default_writes_per_minute() -> u32 {
    120
}

fn default_write_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

/// The admin bearer token. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// Whether `presented` is this token, compared in constant time.
    fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token: None,
            write_timeout: default_write_timeout(),
            writes_per_minute: default_writes_per_minute(),
        }
    }
}

/// Shortest accepted admin token.
const MIN_TOKEN_CHARS: usize = 16;

impl Config {
    pub fn validate(&self, problems: &mut Problems) {
        if self.write_timeout.is_zero() {
            problems.push("admin.write_timeout: must be longer than 0s");
        }
        if let Some(token) = &self.token {
            if token.0.chars().count() < MIN_TOKEN_CHARS {
                problems.push(format!(
                    "admin.token: must be at least {MIN_TOKEN_CHARS} characters"
                ));
            }
        }
    }
}

/// The admin port's request handler.
pub struct Admin {
    metrics: PrometheusHandle,
    health: Health,
    producer: kafka::Producer,
    token: Option<Token>,
    delivery: Option<delivery::Handle>,
    tenants: v1::Tenants,
}

/// What the admin API v1 reads and writes the tenants with.
pub struct Registry {
    /// The registry in force (and with tenants from the topic, what the topic says).
    pub live: Live,
    /// With tenants from the topic: what writes it.
    pub registrar: Option<std::sync::Arc<crate::tenants::Registrar>>,
    /// `ingress.public_url`, which the webhook URLs the API hands out are built from.
    pub public_url: Option<String>,
    /// The keys of the deployment's platform apps, which a credentials test verifies with.
    pub apps: std::sync::Arc<crate::platforms::Apps>,
    /// OAuth connect (with tenants from the topic), which issues install links.
    pub connect: Option<std::sync::Arc<crate::platforms::Connect>>,
    /// `ingress.credentials_key` and a producer: what moves the sealed token of an
    /// installation nobody had claimed to the tenant that claims it.
    pub credentials: Option<crate::tenants::Claims>,
    /// `admin.writes_per_minute`.
    pub writes_per_minute: u32,
    /// The clock a credentials test verifies timestamps against, as the ingress does.
    pub clock: crate::clock::Clock,
    /// Sends an endpoint's test event (`delivery`'s client and signature settings).
    pub tester: delivery::Tester,
    /// What delivery searches read the outcomes topic with, and for how long at most
    /// (`admin.write_timeout`).
    pub kafka: kafka::Config,
    pub kafka_timeout: std::time::Duration,
    /// What retries, redrives and replays are asked of the delivery workers with, on the
    /// commands topic.
    pub producer: kafka::Producer,
    /// `delivery.group_id`: the workers a retry waits for.
    pub delivery_group: String,
    /// What this instance's processor holds, for the state routes, and the processors' group,
    /// which names the instance that holds the rest.
    pub inspector: crate::processor::Inspector,
    pub processor_group: String,
}

impl Admin {
    pub fn new(
        metrics: PrometheusHandle,
        health: Health,
        producer: kafka::Producer,
        token: Option<Token>,
        delivery: Option<delivery::Handle>,
        registry: Registry,
    ) -> Arc<Self> {
        Arc::new(Admin {
            metrics,
            health,
            producer,
            token,
            delivery,
            tenants: v1::Tenants::new(registry),
        })
    }

    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path().starts_with("/admin/v1/") {
            return self.v1(request).await;
        }
        if request.uri().path().starts_with("/admin/") {
            return self.action(request).await;
        }
        if request.method() != Method::GET {
            return json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"method not allowed"}"#,
            );
        }
        match request.uri().path() {
            "/metrics" => {
                // Sampled at scrape time, so the gauge is exact when read.
                metrics::kafka_producer_queue(self.producer.queue_len());
                metrics::runtime_tasks(
                    tokio::runtime::Handle::current()
                        .metrics()
                        .num_alive_tasks(),
                );
                self.metrics.run_upkeep();
                Response::builder()
                    .header(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )
                    .body(Full::new(Bytes::from(self.metrics.render())))
                    .expect("static response parts are valid")
            }
            "/healthz" => crate::health::healthz(),
            // The stores' detail (partitions, offsets, lag) only to a caller with the token:
            // probes need the verdict alone.
            "/readyz" => {
                let detailed = self.bearer_matches(request.headers());
                crate::health::readyz(&self.health, detailed).await
            }
            _ => json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
        }
    }
}

/// The body of actions that name an endpoint or a delivery.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    tenant_id: String,
    endpoint_id: String,
    #[serde(default)]
    transition_id: Option<String>,
}

/// Largest accepted action body.
const MAX_ACTION_BODY_BYTES: usize = 16 * 1024;

/// An answer to an admin action: its JSON, or why the delivery role could not act.
type Answer = Result<serde_json::Value, delivery::HandleError>;

/// An action refused before the delivery role acts: the status and message to answer.
struct Refused(StatusCode, String);

impl Refused {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refused(status, message.into())
    }

    fn response(&self) -> Response<Full<Bytes>> {
        error(self.0, &self.1)
    }
}

impl Admin {
    /// `/admin/v1/…`: the API, behind the bearer token; its OpenAPI document to anyone.
    async fn v1(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (method, path) = (request.method().clone(), request.uri().path().to_string());
        let mut caller = None;
        if path != "/admin/v1/openapi.json" {
            let Some(token) = &self.token else {
                return error(
                    StatusCode::FORBIDDEN,
                    "the admin API is off: set admin.token",
                );
            };
            let presented = bearer(request.headers()).unwrap_or_default();
            caller = if token.matches(presented) {
                Some(v1::Caller::Token)
            } else {
                self.tenants.authenticate(presented)
            };
            if caller.is_none() {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "a valid bearer token or API key is required",
                );
            }
        }
        let query = request.uri().query().map(str::to_string);
        let headers = request.headers().clone();
        let body = match http_body_util::Limited::new(request.into_body(), MAX_ACTION_BODY_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the body cannot be read, or is larger than 16 KiB",
                )
            }
        };
        if method != Method::GET {
            if let Err(refused) = self.tenants.admit(request_key(&headers)) {
                return refused.response();
            }
        }
        self.tenants
            .handle(caller.as_ref(), &method, &path, query.as_deref(), &body)
            .await
    }

    /// `/admin/…`: delivery actions, behind the bearer token.
    async fn action(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let delivery = match self.authorize(&request) {
            Ok(delivery) => delivery,
            Err(refused) => return refused.response(),
        };
        let (method, path) = (request.method().clone(), request.uri().path().to_string());
        let query = request.uri().query().unwrap_or_default().to_string();
        let body = match http_body_util::Limited::new(request.into_body(), MAX_ACTION_BODY_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => return error(StatusCode::BAD_REQUEST, "the body cannot be read"),
        };
        let answer = match (method, path.as_str()) {
            (Method::GET, "/admin/deliveries") => list(delivery, &query).await,
            (Method::POST, "/admin/deliveries/retry") => match retry(delivery, &body).await {
                Ok(answer) => answer,
                Err(refused) => return refused.response(),
            },
            (Method::POST, "/admin/dead-letters/redrive") => match redrive(delivery, &body).await {
                Ok(answer) => answer,
                Err(refused) => return refused.response(),
            },
            (Method::POST, "/admin/endpoints/enable") => match target(&body) {
                Ok(target) => delivery
                    .enable(target.tenant_id, target.endpoint_id)
                    .await
                    .map(|was| serde_json::json!({ "was_disabled": was })),
                Err(refused) => return refused.response(),
            },
            (Method::POST, "/admin/endpoints/test") => match target(&body) {
                Ok(target) => delivery
                    .test(target.tenant_id, target.endpoint_id)
                    .await
                    .map(|tested| serde_json::json!({ "test": tested })),
                Err(refused) => return refused.response(),
            },
            _ => return error(StatusCode::NOT_FOUND, "no such action"),
        };
        match answer {
            Ok(value) => json(StatusCode::OK, value.to_string()),
            Err(delivery::HandleError::Failed(reason)) => error(StatusCode::BAD_REQUEST, &reason),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    }

    /// Whether `headers` carry the admin token (false when none is configured).
    fn bearer_matches(&self, headers: &http::HeaderMap) -> bool {
        self.token
            .as_ref()
            .is_some_and(|token| token_matches(token, headers))
    }

    /// The delivery role to act on, once the request shows the admin token; else the refusal.
    fn authorize(&self, request: &Request<Incoming>) -> Result<&delivery::Handle, Refused> {
        let Some(token) = &self.token else {
            return Err(Refused::new(
                StatusCode::FORBIDDEN,
                "admin actions are off: set admin.token",
            ));
        };
        if !token_matches(token, request.headers()) {
            return Err(Refused::new(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required",
            ));
        }
        self.delivery.as_ref().ok_or_else(|| {
            Refused::new(
                StatusCode::NOT_FOUND,
                "this process does not run the delivery role",
            )
        })
    }
}

/// `GET /admin/deliveries[?state=dead][&limit=N]`: failed (or dead) deliveries.
async fn list(delivery: &delivery::Handle, query: &str) -> Answer {
    let dead = query.split('&').any(|p| p == "state=dead");
    let limit = query
        .split('&')
        .find_map(|p| p.strip_prefix("limit=")?.parse().ok())
        .unwrap_or(100usize);
    delivery
        .list(dead, limit)
        .await
        .map(|list| serde_json::json!({ "deliveries": list }))
}

/// `POST /admin/deliveries/retry`: one pending or dead-lettered delivery, due at once.
async fn retry(delivery: &delivery::Handle, body: &[u8]) -> Result<Answer, Refused> {
    let target = target(body)?;
    let Some(transition) = target.transition_id else {
        return Err(Refused::new(
            StatusCode::BAD_REQUEST,
            "transition_id is required",
        ));
    };
    match delivery
        .retry(target.tenant_id, target.endpoint_id, transition)
        .await
    {
        Ok(false) => Err(Refused::new(
            StatusCode::NOT_FOUND,
            "no such pending or dead-lettered delivery",
        )),
        other => Ok(other.map(|_| serde_json::json!({ "retried": true }))),
    }
}

/// `POST /admin/dead-letters/redrive`: dead letters read back from their topic.
async fn redrive(delivery: &delivery::Handle, body: &[u8]) -> Result<Answer, Refused> {
    // No body, or `{}`: every dead letter no redrive has read yet.
    let request = match body.iter().all(u8::is_ascii_whitespace) {
        true => Ok(delivery::RedriveRequest::default()),
        false => serde_json::from_slice::<delivery::RedriveRequest>(body),
    };
    match request {
        Ok(request) => Ok(delivery.redrive(request).await.and_then(|report| {
            serde_json::to_value(report).map_err(|e| delivery::HandleError::Failed(e.to_string()))
        })),
        Err(e) => Err(Refused::new(
            StatusCode::BAD_REQUEST,
            format!("expected a redrive request (docs/operations.md): {e}"),
        )),
    }
}

/// The endpoint (and delivery) an action names; a bad body is answered 400.
fn target(body: &[u8]) -> Result<Target, Refused> {
    serde_json::from_slice(body).map_err(|e| {
        Refused::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"tenant_id\", \"endpoint_id\"[, \"transition_id\"]}}: {e}"),
        )
    })
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, serde_json::json!({ "error": message }).to_string())
}

/// Which key a request presents, for its rate limit: a digest of its bearer token (the token is
/// never kept).
fn request_key(headers: &http::HeaderMap) -> [u8; 32] {
    use sha2::Digest;
    let presented = headers
        .get(header::AUTHORIZATION)
        .map(http::HeaderValue::as_bytes)
        .unwrap_or_default();
    sha2::Sha256::digest(presented).into()
}

/// What `headers` present as `Authorization: Bearer …`.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether `headers` present `token` as `Authorization: Bearer …`.
fn token_matches(token: &Token, headers: &http::HeaderMap) -> bool {
    bearer(headers).is_some_and(|presented| token.matches(presented))
}
