//! The operator port: Prometheus `/metrics`, `/healthz` and `/readyz`, and — when this process
//! runs the delivery role and `admin.token` is set — the delivery actions under `/admin/`
//! (bearer token). It stays up while the ingress drains, so the drain itself can be watched.

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
use crate::{delivery, kafka};

/// The `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// Bearer token of the `/admin/` actions; without one they answer 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Token>,
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
        }
    }
}

/// Shortest accepted admin token.
const MIN_TOKEN_CHARS: usize = 16;

impl Config {
    pub fn validate(&self, problems: &mut Problems) {
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
}

impl Admin {
    pub fn new(
        metrics: PrometheusHandle,
        health: Health,
        producer: kafka::Producer,
        token: Option<Token>,
        delivery: Option<delivery::Handle>,
    ) -> Arc<Self> {
        Arc::new(Admin {
            metrics,
            health,
            producer,
            token,
            delivery,
        })
    }

    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
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
            "/readyz" => crate::health::readyz(&self.health, true).await,
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

impl Admin {
    /// `/admin/…`: delivery actions, behind the bearer token.
    async fn action(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(token) = &self.token else {
            return error(
                StatusCode::FORBIDDEN,
                "admin actions are off: set admin.token",
            );
        };
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| token.matches(p)) {
            return error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        }
        let Some(delivery) = &self.delivery else {
            return error(
                StatusCode::NOT_FOUND,
                "this process does not run the delivery role",
            );
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
        let target = || -> Result<Target, String> {
            serde_json::from_slice(&body).map_err(|e| {
                format!("expected {{\"tenant_id\", \"endpoint_id\"[, \"transition_id\"]}}: {e}")
            })
        };
        let answer = match (method, path.as_str()) {
            (Method::GET, "/admin/deliveries") => {
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
            (Method::POST, "/admin/deliveries/retry") => {
                let target = match target() {
                    Ok(t) => t,
                    Err(message) => return error(StatusCode::BAD_REQUEST, &message),
                };
                let Some(transition) = target.transition_id else {
                    return error(StatusCode::BAD_REQUEST, "transition_id is required");
                };
                match delivery
                    .retry(target.tenant_id, target.endpoint_id, transition)
                    .await
                {
                    Ok(false) => {
                        return error(
                            StatusCode::NOT_FOUND,
                            "no such pending or dead-lettered delivery",
                        )
                    }
                    other => other.map(|_| serde_json::json!({ "retried": true })),
                }
            }
            (Method::POST, "/admin/dead-letters/redrive") => {
                // No body, or `{}`: every dead letter no redrive has read yet.
                let request = match body.iter().all(u8::is_ascii_whitespace) {
                    true => Ok(delivery::RedriveRequest::default()),
                    false => serde_json::from_slice::<delivery::RedriveRequest>(&body),
                };
                match request {
                    Ok(request) => delivery.redrive(request).await.and_then(|report| {
                        serde_json::to_value(report)
                            .map_err(|e| delivery::HandleError::Failed(e.to_string()))
                    }),
                    Err(e) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            &format!("expected a redrive request (docs/operations.md): {e}"),
                        )
                    }
                }
            }
            (Method::POST, "/admin/endpoints/enable") => {
                let target = match target() {
                    Ok(t) => t,
                    Err(message) => return error(StatusCode::BAD_REQUEST, &message),
                };
                delivery
                    .enable(target.tenant_id, target.endpoint_id)
                    .await
                    .map(|was| serde_json::json!({ "was_disabled": was }))
            }
            (Method::POST, "/admin/endpoints/test") => {
                let target = match target() {
                    Ok(t) => t,
                    Err(message) => return error(StatusCode::BAD_REQUEST, &message),
                };
                delivery
                    .test(target.tenant_id, target.endpoint_id)
                    .await
                    .map(|tested| serde_json::json!({ "test": tested }))
            }
            _ => return error(StatusCode::NOT_FOUND, "no such action"),
        };
        match answer {
            Ok(value) => json(StatusCode::OK, value.to_string()),
            Err(delivery::HandleError::Failed(reason)) => error(StatusCode::BAD_REQUEST, &reason),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, serde_json::json!({ "error": message }).to_string())
}
