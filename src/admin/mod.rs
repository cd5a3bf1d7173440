//! The operator port: Prometheus `/metrics`, `/healthz` and `/readyz`. It stays up while the
//! ingress drains, so the drain itself can be watched.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

use crate::config::Problems;
use crate::health::Health;
use crate::kafka;
use crate::telemetry::metrics;

/// The `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

impl Config {
    pub fn validate(&self, _problems: &mut Problems) {}
}

/// The admin port's request handler.
pub struct Admin {
    metrics: PrometheusHandle,
    health: Health,
    producer: kafka::Producer,
}

impl Admin {
    pub fn new(metrics: PrometheusHandle, health: Health, producer: kafka::Producer) -> Arc<Self> {
        Arc::new(Admin {
            metrics,
            health,
            producer,
        })
    }

    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
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
            "/healthz" => healthz(),
            "/readyz" => readyz(&self.health).await,
            _ => json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
        }
    }
}

/// `200 {"status":"ok"}`: the process is alive.
pub fn healthz() -> Response<Full<Bytes>> {
    json(StatusCode::OK, r#"{"status":"ok"}"#)
}

/// `200 {"status":"ready"}`, or `503` with the reason.
pub async fn readyz(health: &Health) -> Response<Full<Bytes>> {
    match health.ready().await {
        Ok(()) => json(StatusCode::OK, r#"{"status":"ready"}"#),
        Err(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "not ready", "error": reason }).to_string(),
        ),
    }
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}
