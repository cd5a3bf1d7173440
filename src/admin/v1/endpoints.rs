//! `/admin/v1/tenants/{id}/endpoints…`: where a tenant's cart transitions are delivered, signed
//! with a secret cartstream generates (or is given), and replacing that secret.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::Response;
use serde::{Deserialize, Serialize};

use super::{json, not_found, parse_body, present, to_json, ApiError, Tenants};
use crate::tenants::seal_for;
use crate::topics::registry::{self as topic, Entity, Key, Record};

/// The longest delay of an endpoint's own retry schedule: a week.
const MAX_RETRY_DELAY_MS: u64 = 7 * 24 * 3600 * 1000;

/// `POST /admin/v1/tenants/{id}/endpoints`: the fields of a `[[tenant.endpoint]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEndpoint {
    /// A UUID when absent.
    #[serde(default, deserialize_with = "present")]
    id: Option<String>,
    url: String,
    /// Every event when absent.
    #[serde(default, deserialize_with = "present")]
    events: Option<Vec<String>>,
    /// Generated when absent, and then shown once.
    #[serde(default, deserialize_with = "present")]
    secret: Option<String>,
    /// The deployment's schedule when absent.
    #[serde(default, deserialize_with = "present")]
    retry_schedule_ms: Option<Vec<serde_json::Number>>,
}

/// `PATCH …/endpoints/{endpoint}`: absent fields stay as they are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointChange {
    #[serde(default, deserialize_with = "present")]
    url: Option<String>,
    /// `Some(None)`: every event.
    #[serde(default, deserialize_with = "present")]
    events: Option<Option<Vec<String>>>,
    /// `Some(None)`: the deployment's schedule.
    #[serde(default, deserialize_with = "present")]
    retry_schedule_ms: Option<Option<Vec<serde_json::Number>>>,
    #[serde(default, deserialize_with = "present")]
    enabled: Option<bool>,
}

/// `POST …/endpoints/{endpoint}/secret`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSecret {
    #[serde(default, deserialize_with = "present")]
    secret: Option<String>,
    /// How long the replaced secret still signs; 24 hours when absent.
    #[serde(default, deserialize_with = "present")]
    grace_period_ms: Option<serde_json::Number>,
}

/// A created endpoint, or its new secret.
#[derive(Debug, Serialize)]
struct Signed {
    id: String,
    /// A secret cartstream generated, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// After a rotation: when the replaced secret stops signing.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_secret_expires_at: Option<String>,
}

impl Tenants {
    /// `POST /admin/v1/tenants/{id}/endpoints`: 201 `{"id"}` (and the generated secret).
    pub(super) async fn create_endpoint(
        &self,
        tenant: &str,
        body: &[u8],
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let new: NewEndpoint = parse_body(body)?;
        let retry_schedule_ms = new
            .retry_schedule_ms
            .as_deref()
            .map(retry_schedule)
            .transpose()?;
        if !valid_url(&new.url) {
            return Err(bad_url(&new.url));
        }
        if let Some(events) = &new.events {
            check_events(events)?;
        }
        let tenant_key = Key::Tenant {
            tenant: tenant.to_string(),
        };
        if records.get(&tenant_key).is_none() {
            return Err(not_found(tenant));
        }
        let id = new
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().hyphenated().to_string());
        let key = endpoint_key(tenant, &id);
        if records.get(&key).is_some() {
            return Err(ApiError::Conflict(format!(
                "tenant {tenant:?} has the endpoint {id:?}"
            )));
        }
        let (secret, generated) =
            super::chosen_secret(new.secret, || Ok(super::integrations::whsec()))?;
        let keys = self.keys()?;
        let record = Record::new(Entity::Endpoint(topic::Endpoint {
            tenant: tenant.to_string(),
            id: id.clone(),
            url: new.url,
            secret: seal_for(keys, &key, "secret", &secret),
            previous_secret: None,
            previous_secret_expires_at_ms: None,
            events: new.events,
            retry_schedule_ms,
            disabled: false,
        }));
        self.write(&records, vec![(key, Some(record))]).await?;
        let signed = Signed {
            id,
            secret: generated,
            previous_secret_expires_at: None,
        };
        Ok(json(StatusCode::CREATED, to_json(&signed)))
    }

    /// `POST /admin/v1/tenants/{id}/endpoints/{endpoint}/secret`: the secret given, or a
    /// generated one, replaces the endpoint's; deliveries carry a signature with each until the
    /// replaced one's grace period ends (or the next rotation), so the receiver can switch at
    /// any time within it.
    pub(super) async fn rotate_endpoint(
        &self,
        tenant: &str,
        id: &str,
        body: &[u8],
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let new: NewSecret = parse_body(body)?;
        let key = endpoint_key(tenant, id);
        let Some(record) = records.get(&key) else {
            return Err(endpoint_not_found(tenant, id));
        };
        let (secret, generated) =
            super::chosen_secret(new.secret, || Ok(super::integrations::whsec()))?;
        let (rotated, until) = self.rotated(record, &secret, new.grace_period_ms.as_ref())?;
        self.write(&records, vec![(key, Some(rotated))]).await?;
        let signed = Signed {
            id: id.to_string(),
            secret: generated,
            previous_secret_expires_at: Some(until),
        };
        Ok(json(StatusCode::OK, to_json(&signed)))
    }

    /// `PATCH /admin/v1/tenants/{id}/endpoints/{endpoint}`: its URL, events, retry schedule, and
    /// whether it is enabled; 200 with the endpoint as it now is.
    pub(super) async fn update_endpoint(
        &self,
        tenant: &str,
        id: &str,
        body: &[u8],
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let change: EndpointChange = parse_body(body)?;
        let key = endpoint_key(tenant, id);
        let Some(Entity::Endpoint(current)) = records.get(&key).map(|r| &r.entity) else {
            return Err(endpoint_not_found(tenant, id));
        };
        let mut endpoint = current.clone();
        if let Some(url) = change.url {
            if !valid_url(&url) {
                return Err(bad_url(&url));
            }
            endpoint.url = url;
        }
        if let Some(events) = change.events {
            if let Some(events) = &events {
                check_events(events)?;
            }
            endpoint.events = events;
        }
        if let Some(steps) = change.retry_schedule_ms {
            endpoint.retry_schedule_ms = steps.as_deref().map(retry_schedule).transpose()?;
        }
        if let Some(enabled) = change.enabled {
            endpoint.disabled = !enabled;
        }
        let view = super::tenants::EndpointView::of(&endpoint);
        let record = Record::new(Entity::Endpoint(endpoint));
        self.write(&records, vec![(key, Some(record))]).await?;
        Ok(json(StatusCode::OK, to_json(&view)))
    }

    /// `POST /admin/v1/tenants/{id}/endpoints/{endpoint}/test`: a signed `test` event sent to
    /// the endpoint now, from this instance, with its secrets in force here (enabled or not);
    /// 200 with the receiver's answer, or why there was none.
    pub(super) async fn test_endpoint(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        self.records()?;
        let registry = self.live.current();
        let endpoint = registry
            .endpoint(tenant, id)
            .ok_or_else(|| endpoint_not_found(tenant, id))?;
        let tested = self.tester.send(endpoint, self.clock.now_millis()).await;
        Ok(json(
            StatusCode::OK,
            serde_json::json!({
                "id": tested.id,
                "status_code": tested.status_code,
                "status_class": tested.status_class,
                "latency_ms": tested.latency_ms,
                "error": tested.error,
            })
            .to_string(),
        ))
    }

    /// `DELETE /admin/v1/tenants/{id}/endpoints/{endpoint}`: 204; nothing more is delivered to
    /// it (deliveries already scheduled end as the worker finds no endpoint).
    pub(super) async fn delete_endpoint(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        self.delete_record(endpoint_key(tenant, id), endpoint_not_found(tenant, id))
            .await
    }
}

fn bad_url(url: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "url: https:// (or http:// for a tenant that allows it), a host name of two or more labels, an optional port and a plain path, not {url:?}"
    ))
}

/// One or more event names, each once (which names the registry checks).
fn check_events(events: &[String]) -> Result<(), ApiError> {
    let distinct: std::collections::BTreeSet<&String> = events.iter().collect();
    if events.is_empty() || distinct.len() < events.len() {
        return Err(ApiError::BadRequest(
            "events: one or more event names, each once".to_string(),
        ));
    }
    Ok(())
}

/// An endpoint's own retry schedule: 1 to 20 delays of whole milliseconds, a week at most each.
fn retry_schedule(steps: &[serde_json::Number]) -> Result<Vec<u64>, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "retry_schedule_ms: 1 to 20 delays of whole milliseconds up to {MAX_RETRY_DELAY_MS}"
        ))
    };
    if steps.is_empty() || steps.len() > 20 {
        return Err(bad());
    }
    steps
        .iter()
        .map(|step| super::whole(step, MAX_RETRY_DELAY_MS).ok_or_else(bad))
        .collect()
}

/// An endpoint URL as the document's pattern has it (and `http://`, which the registry then
/// allows only for a tenant that consents): a host name of two or more labels of lowercase
/// letters, digits and inner hyphens, each starting with a letter, or an IPv4 address written
/// the usual way (whether it may be reached is the delivery guard's to say), a port from 1 to
/// 65535, and a path of unreserved characters. No query, no user: a receiver is named plainly.
fn valid_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.starts_with(|c: char| c.is_ascii_lowercase())
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let port_ok = port.is_none_or(|p| {
        !p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
    });
    let address = host
        .parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.to_string() == host);
    let name = host.split('.').count() >= 2 && host.split('.').all(label);
    (address || name)
        && port_ok
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'~' | b'-'))
}

fn endpoint_key(tenant: &str, id: &str) -> Key {
    Key::Endpoint {
        tenant: tenant.to_string(),
        id: id.to_string(),
    }
}

fn endpoint_not_found(tenant: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("endpoint {id:?} of tenant {tenant:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_url_names_a_host_and_a_plain_path() {
        for good in [
            "https://crm.example.com/hooks",
            "https://a.b",
            "http://receiver.internal.example:8443/x/y_z~.-",
            "http://127.0.0.1:45123/hooks",
            "https://203.0.113.7:65535/",
        ] {
            assert!(valid_url(good), "{good}");
        }
        for bad in [
            "https://a.a.w*",
            "https://localhost/x",
            "https://127.1/x",
            "https://0127.0.0.1/x",
            "https://crm.example.com/hooks?token=1",
            "ftp://crm.example.com",
            "https://crm.example.com:0/",
            "https://crm.example.com:65536/",
            "https://user@crm.example.com/",
            "https://Crm.example.com/",
            "https://crm-.example.com/",
        ] {
            assert!(!valid_url(bad), "{bad}");
        }
    }

    #[test]
    fn a_retry_schedule_is_one_to_twenty_delays_of_a_week_at_most() {
        let numbers = |text: &str| serde_json::from_str::<Vec<serde_json::Number>>(text).unwrap();
        assert_eq!(
            retry_schedule(&numbers("[0, 60000, 3600000.0]")).unwrap(),
            [0, 60_000, 3_600_000]
        );
        for bad in [
            "[]",
            "[604800001]",
            "[-1]",
            "[1.5]",
            &format!("[{}]", ["1"; 21].join(",")),
        ] {
            assert!(
                matches!(retry_schedule(&numbers(bad)), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
