//! A test send: a signed `test` event posted to an endpoint now, outside its schedule and its
//! limits, and the receiver's answer. The delivery worker sends one on the operator's action
//! (`/admin/endpoints/test`), and the admin API from any instance
//! (`/admin/v1/tenants/{id}/endpoints/{endpoint}/test`).

use serde_json::json;

use super::client::Client;
use super::handle::Tested;
use super::{sign, Config};
use crate::clock::rfc3339;
use crate::telemetry::{error_chain, metrics};
use crate::tenants::Endpoint;

/// What a test send needs: the delivery client, with its guard against private addresses and
/// its timeout, and the signature headers' prefix.
#[derive(Clone)]
pub struct Tester {
    client: Client,
    header_prefix: String,
}

impl Tester {
    pub fn from_config(config: &Config) -> Result<Tester, reqwest::Error> {
        Ok(Tester::new(
            Client::from_config(config)?,
            config.header_prefix.clone(),
        ))
    }

    pub(super) fn new(client: Client, header_prefix: String) -> Tester {
        Tester {
            client,
            header_prefix,
        }
    }

    /// Posts a `test` event for `endpoint`'s tenant, signed with each of its secrets, at
    /// `now_ms`; the answer, timed.
    pub async fn send(&self, endpoint: &Endpoint, now_ms: i64) -> Tested {
        let mut random = [0u8; 16];
        let _ = getrandom::fill(&mut random);
        let id = hex::encode(random);
        let body = json!({
            "event": "test",
            "id": id,
            "occurred_at": rfc3339(now_ms),
            "tenant_id": &*endpoint.tenant.id,
            "data": {},
        })
        .to_string();
        let signature = sign(
            &self.header_prefix,
            "test",
            &id,
            (now_ms / 1000).max(0) as u64,
            body.as_bytes(),
            &endpoint.secrets,
        );
        let started = tokio::time::Instant::now();
        let result = self
            .client
            .post(&endpoint.url, &signature.headers, body.into_bytes())
            .await;
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
}
