//! The worker's side of operator actions (`super::super::handle`): each runs on the loop, so
//! it changes the store like everything else there.

use serde_json::json;
use tokio::sync::oneshot;

use super::Worker;
use crate::clock::rfc3339;
use crate::delivery::client::Client;
use crate::delivery::handle::{Command, Tested};
use crate::delivery::sign;
use crate::delivery::store;
use crate::telemetry::{error_chain, metrics};

impl Worker {
    /// Carries out an operator action; a failure is the operator's answer, not the worker's end.
    pub(super) fn command(&mut self, command: Command) {
        let now = self.clock.now_millis();
        let text = |e: store::Error| error_chain(&e);
        match command {
            Command::List { dead, limit, reply } => {
                let jobs = match dead {
                    true => self.store.dead(limit),
                    false => self.store.failed(limit),
                };
                let _ = reply.send(jobs.map_err(text));
            }
            Command::Retry {
                tenant,
                endpoint,
                transition,
                reply,
            } => {
                let key = store::key(&tenant, &endpoint, &transition);
                let _ = reply.send(self.store.retry_now(&key, now).map_err(text));
            }
            Command::Adopt { letters, reply } => {
                let _ = reply.send(self.store.adopt(letters, now).map_err(text));
            }
            Command::Enable {
                tenant,
                endpoint,
                reply,
            } => {
                let _ = reply.send(self.enable(&tenant, &endpoint).map_err(text));
            }
            Command::Test {
                tenant,
                endpoint,
                reply,
            } => self.test(&tenant, &endpoint, reply, now),
        }
    }

    /// Takes a disabled endpoint back into service; whether it was disabled.
    fn enable(&mut self, tenant: &str, endpoint: &str) -> Result<bool, store::Error> {
        let was = self
            .disabled
            .remove(&(tenant.to_string(), endpoint.to_string()));
        self.store.enable(tenant, endpoint).map(|()| was)
    }

    /// Sends an endpoint a signed `test` event, outside its schedule and its limits; the
    /// answer goes to `reply`.
    fn test(
        &self,
        tenant: &str,
        endpoint: &str,
        reply: oneshot::Sender<Result<Tested, String>>,
        now: i64,
    ) {
        let Some(target) = self.endpoint(tenant, endpoint) else {
            let _ = reply.send(Err(format!(
                "no endpoint {endpoint:?} for tenant {tenant:?}"
            )));
            return;
        };
        let mut random = [0u8; 16];
        let _ = getrandom::fill(&mut random);
        let id = hex::encode(random);
        let body = json!({
            "event": "test",
            "id": id,
            "occurred_at": rfc3339(now),
            "tenant_id": tenant,
            "data": {},
        })
        .to_string();
        let signature = sign(
            &self.config.header_prefix,
            "test",
            &id,
            (now / 1000).max(0) as u64,
            body.as_bytes(),
            &target.secrets,
        );
        let (client, url) = (self.client.clone(), target.url.clone());
        self.tracker.spawn(async move {
            let tested = attempt(&client, &url, &signature.headers, body, id).await;
            let _ = reply.send(Ok(tested));
        });
    }
}

/// One test request, timed.
async fn attempt(
    client: &Client,
    url: &http::Uri,
    headers: &[(String, String)],
    body: String,
    id: String,
) -> Tested {
    let started = tokio::time::Instant::now();
    let result = client.post(url, headers, body.into_bytes()).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(answer) => Tested {
            id,
            status_code: Some(answer.status),
            status_class: metrics::status_class(answer.status),
            latency_ms,
            error: None,
        },
        Err(e) => Tested {
            id,
            status_code: None,
            status_class: e.class(),
            latency_ms,
            error: Some(error_chain(&e)),
        },
    }
}
