//! The endpoint every generated tenant subscribes (`tenants --receiver`): a local HTTP server
//! that answers 200 at once and notes, per transition id (`webhook-id`), how many requests
//! arrived and whether their `X-Cartstream-Signature` verified under the tenant's endpoint
//! secret (`cartstream::delivery::verify_signature`, the helper receivers are given).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::tenants::Tenant;

/// The path below which each tenant's endpoint lives: `/hooks/<tenant id>`.
pub const PATH: &str = "/hooks/";

/// What arrived for one transition.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Received {
    pub valid: u32,
    /// Requests whose signature did not verify, or for a tenant the run does not know.
    pub invalid: u32,
}

/// What arrived, by transition id; shared with the check.
pub type Log = Arc<Mutex<HashMap<String, Received>>>;

pub struct Receiver {
    log: Log,
    /// The accept loop and its connections; dropping the receiver stops them.
    _tasks: JoinSet<()>,
}

impl Receiver {
    pub async fn start(listen: SocketAddr) -> anyhow::Result<Receiver> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the receiver to {listen}"))?;
        let log = Log::default();
        let mut tasks = JoinSet::new();
        tasks.spawn(accept(listener, log.clone()));
        Ok(Receiver { log, _tasks: tasks })
    }

    pub fn log(&self) -> Log {
        self.log.clone()
    }
}

/// What arrived so far, by transition id.
pub fn snapshot(log: &Log) -> HashMap<String, Received> {
    lock(log).clone()
}

fn lock(log: &Log) -> std::sync::MutexGuard<'_, HashMap<String, Received>> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept(listener: TcpListener, log: Log) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let log = log.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| note(request, log.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Forget connections that have closed.
        while connections.try_join_next().is_some() {}
    }
}

async fn note(
    request: http::Request<hyper::body::Incoming>,
    log: Log,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let valid = parts
        .uri
        .path()
        .strip_prefix(PATH)
        .and_then(Tenant::parse)
        .is_some_and(|tenant| {
            cartstream::delivery::verify_signature(
                &tenant.endpoint_secret(),
                &body,
                header("x-cartstream-signature"),
            )
        });
    let mut log = lock(&log);
    let entry = log.entry(header("webhook-id").to_string()).or_default();
    match valid {
        true => entry.valid += 1,
        false => entry.invalid += 1,
    }
    Ok(http::Response::new(Full::new(Bytes::new())))
}
