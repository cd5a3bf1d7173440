//! What the operator asks of the delivery workers through any instance, whichever worker it
//! concerns (`crate::delivery::remote`): retry one delivery, redrive dead letters, replay a time
//! range to an endpoint; and the dead letters themselves, read from their topic.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::Response;
use serde::Deserialize;

use super::deliveries::{limit as limit_parameter, since};
use super::{json, parse_body, present, whole, ApiError, Tenants};
use crate::delivery::{self, Asked};
use crate::topics::command::{Message, Redrive, Replay, Retry, Start};
use crate::topics::dead_letter::{self, Reason};

/// The dead letters answered unless `limit` says otherwise.
const LIMIT: usize = 100;

/// How far back a dead-letter listing reads unless `since` says: a week.
const DEFAULT_SINCE_MS: i64 = 7 * 24 * 3600 * 1000;

/// The tenant a retry or redrive names in its body, for a key limited to one.
pub(super) fn tenant_in_body(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("tenant_id")?.as_str().map(str::to_string)
}

/// The body of `POST …/endpoints/{endpoint}/replay`: `null` is refused, and a limit may be
/// written `100.0`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    since: String,
    #[serde(default, deserialize_with = "present")]
    until: Option<String>,
    #[serde(default, deserialize_with = "present")]
    limit: Option<serde_json::Number>,
}

/// The body of `POST /admin/v1/dead-letters/redrive`, read the same way.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveBody {
    #[serde(default, deserialize_with = "present")]
    from: Option<Start>,
    #[serde(default, deserialize_with = "present")]
    tenant_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    endpoint_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    reason: Option<String>,
    #[serde(default, deserialize_with = "present")]
    since: Option<String>,
    #[serde(default, deserialize_with = "present")]
    until: Option<String>,
    #[serde(default, deserialize_with = "present")]
    limit: Option<serde_json::Number>,
}

/// A limit given as a JSON number: a whole one from 1 to 100,000.
fn limit(n: Option<serde_json::Number>) -> Result<Option<usize>, ApiError> {
    n.map(|n| {
        whole(&n, delivery::redrive::MAX_LIMIT as u64)
            .filter(|&n| n >= 1)
            .map(|n| n as usize)
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit: a whole number from 1 to 100000, not {n}"))
            })
    })
    .transpose()
}

/// What a dead-letter listing asks for.
#[derive(Debug, Default, PartialEq)]
struct Listing {
    tenant: Option<String>,
    endpoint: Option<String>,
    reason: Option<Reason>,
    since_ms: Option<i64>,
    limit: usize,
}

impl Listing {
    fn parse(query: Option<&str>) -> Result<Listing, ApiError> {
        let mut listing = Listing {
            limit: LIMIT,
            ..Listing::default()
        };
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let value = value.into_owned();
            match &*name {
                "tenant" => listing.tenant = Some(value),
                "endpoint" => listing.endpoint = Some(value),
                "reason" => {
                    listing.reason = Some(Reason::from_wire(&value).ok_or_else(|| {
                        let words = Reason::ALL.map(Reason::as_str).join(", ");
                        ApiError::BadRequest(format!("reason: one of {words}, not {value:?}"))
                    })?)
                }
                "since" => listing.since_ms = Some(since(&value)?),
                "limit" => listing.limit = limit_parameter(&value)?,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "{other:?}: not a parameter of this route (tenant, endpoint, reason, since, limit)"
                    )))
                }
            }
        }
        Ok(listing)
    }

    fn admits(&self, record: &dead_letter::Record) -> bool {
        let is =
            |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
        is(&self.tenant, &record.tenant_id)
            && is(&self.endpoint, &record.endpoint_id)
            && self.reason.is_none_or(|r| r == record.reason)
    }
}

/// A dead letter as listed: what it was and why it was given up, without its body.
fn listed(record: dead_letter::Record) -> serde_json::Value {
    serde_json::json!({
        "transition_id": record.transition_id,
        "tenant_id": record.tenant_id,
        "endpoint_id": record.endpoint_id,
        "event": record.event,
        "cart": record.cart,
        "reason": record.reason.as_str(),
        "attempts": record.attempts,
        "last_status_code": record.last_status_code,
        "last_error": record.last_error,
        "created_at": record.created_at,
        "dead_lettered_at": record.dead_lettered_at,
    })
}

impl Tenants {
    /// `POST /admin/v1/deliveries/retry`: the delivery attempted once more now, by the worker
    /// that holds it.
    pub(super) async fn retry_delivery(
        &self,
        body: &[u8],
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let retry: Retry = parse_body(body)?;
        for (field, value) in [
            ("tenant_id", &retry.tenant_id),
            ("endpoint_id", &retry.endpoint_id),
            ("transition_id", &retry.transition_id),
        ] {
            if value.is_empty() {
                return Err(ApiError::BadRequest(format!("{field}: must not be empty")));
            }
        }
        let what = format!(
            "pending or dead-lettered delivery of transition {:?} to endpoint {:?} of tenant {:?}",
            retry.transition_id, retry.endpoint_id, retry.tenant_id
        );
        match self.ask(Message::Retry(retry)).await? {
            Asked::Retried { worker } => Ok(json(
                StatusCode::OK,
                serde_json::json!({"retried": true, "worker": worker}).to_string(),
            )),
            Asked::NotHeld { answered } => Err(ApiError::NotFound(format!(
                "{what} on any of the {answered} delivery workers running"
            ))),
            other => Err(unanswered(other)),
        }
    }

    /// `POST /admin/v1/dead-letters/redrive`: dead letters delivered again, by one worker.
    pub(super) async fn redrive(&self, body: &[u8]) -> Result<Response<Full<Bytes>>, ApiError> {
        let body: RedriveBody = match body.iter().all(u8::is_ascii_whitespace) {
            true => RedriveBody::default(),
            false => parse_body(body)?,
        };
        let request = Redrive {
            from: body.from.unwrap_or_default(),
            tenant_id: body.tenant_id,
            endpoint_id: body.endpoint_id,
            reason: body.reason,
            since: body.since,
            until: body.until,
            limit: limit(body.limit)?,
        };
        delivery::redrive::check(&request).map_err(ApiError::BadRequest)?;
        self.reported(Message::Redrive(request)).await
    }

    /// `POST /admin/v1/tenants/{id}/endpoints/{endpoint}/replay`: a time range's transitions
    /// sent to the endpoint again, by one worker.
    pub(super) async fn replay(
        &self,
        tenant: &str,
        endpoint: &str,
        body: &[u8],
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let ReplayBody {
            since,
            until,
            limit: wanted,
        } = parse_body(body)?;
        let request = Replay {
            tenant_id: tenant.to_string(),
            endpoint_id: endpoint.to_string(),
            since,
            until,
            limit: limit(wanted)?,
        };
        delivery::replay::check(&request, self.clock.now_millis()).map_err(ApiError::BadRequest)?;
        if self.live.current().endpoint(tenant, endpoint).is_none() {
            return Err(ApiError::NotFound(format!(
                "endpoint {endpoint:?} of tenant {tenant:?}"
            )));
        }
        self.reported(Message::Replay(request)).await
    }

    /// `GET /admin/v1/dead-letters[?tenant][&endpoint][&reason][&since][&limit]`: the latest
    /// `limit` dead letters that match, oldest first, read from the dead-letter topic.
    pub(super) async fn list_dead_letters(
        &self,
        query: Option<&str>,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let listing = Listing::parse(query)?;
        let since = listing
            .since_ms
            .unwrap_or_else(|| self.clock.now_millis() - DEFAULT_SINCE_MS);
        let topic = self.kafka.topics().dead_letters;
        let (complete, found) = self
            .latest(topic, since, listing.limit, move |bytes| {
                dead_letter::Record::decode(bytes)
                    .ok()
                    .filter(|r| listing.admits(r))
            })
            .await?;
        let letters: Vec<_> = found.into_iter().map(listed).collect();
        let body = serde_json::json!({ "dead_letters": letters, "complete": complete });
        Ok(json(StatusCode::OK, body.to_string()))
    }

    /// A redrive's or replay's report, with the worker that carried it out.
    async fn reported(&self, message: Message) -> Result<Response<Full<Bytes>>, ApiError> {
        match self.ask(message).await? {
            Asked::Reported { worker, report } => {
                let mut body = report;
                if let Some(fields) = body.as_object_mut() {
                    fields.insert("worker".to_string(), worker.into());
                }
                Ok(json(StatusCode::OK, body.to_string()))
            }
            other => Err(unanswered(other)),
        }
    }

    async fn ask(&self, message: Message) -> Result<Asked, ApiError> {
        delivery::ask(
            &self.kafka,
            &self.producer,
            &self.delivery_group,
            message,
            self.clock.now_millis(),
        )
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))
    }
}

/// The 503 of a command no worker settled.
fn unanswered(asked: Asked) -> ApiError {
    ApiError::Unavailable(match asked {
        Asked::Failed { worker, error } => format!("the delivery worker {worker} could not: {error}"),
        Asked::Unclaimed | Asked::Unanswered { members: Some(0), .. } => "no delivery worker took it in time: none is running, or none reads the delivery commands topic".to_string(),
        Asked::Unanswered { answered, members } => format!(
            "only {answered} of {} delivery workers answered in time; ask again",
            members.map_or("the".to_string(), |n| n.to_string())
        ),
        Asked::Retried { .. } | Asked::Reported { .. } | Asked::NotHeld { .. } => {
            "the delivery workers' answer does not fit the question".to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_admits_the_dead_letters_that_match_every_filter_given() {
        let listing = Listing::parse(Some("tenant=acme&reason=gone&limit=5")).unwrap();
        assert_eq!(listing.limit, 5);
        let record = |tenant: &str, reason: &str| {
            dead_letter::Record::decode(
                serde_json::json!({
                    "transition_id": "t", "tenant_id": tenant, "endpoint_id": "crm",
                    "event": "abandoned_candidate", "cart": "c", "reason": reason,
                    "last_status_code": 410, "last_error": null,
                    "created_at": "2026-12-07T10:00:00.000Z",
                    "dead_lettered_at": "2026-12-07T10:00:01.000Z", "body": {}
                })
                .to_string()
                .as_bytes(),
            )
            .unwrap()
        };
        assert!(listing.admits(&record("acme", "gone")));
        assert!(!listing.admits(&record("acme", "exhausted")));
        assert!(!listing.admits(&record("globex", "gone")));
        let shown = listed(record("acme", "gone"));
        assert_eq!(shown["reason"], "gone");
        assert!(shown.get("body").is_none(), "the body stays on the topic");
    }

    #[test]
    fn a_listing_refuses_what_it_cannot_read() {
        for bad in [
            "reason=lost",
            "since=yesterday",
            "limit=0",
            "limit=1001",
            "page=2",
        ] {
            assert!(
                matches!(Listing::parse(Some(bad)), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_body_names_its_tenant_for_the_keys_limited_to_one() {
        assert_eq!(
            tenant_in_body(br#"{"tenant_id":"acme","limit":3}"#).as_deref(),
            Some("acme")
        );
        assert_eq!(tenant_in_body(b"{}"), None);
        assert_eq!(tenant_in_body(b"not json"), None);
    }
}
