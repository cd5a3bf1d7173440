//! `GET /admin/v1/deliveries`: deliveries across every delivery worker, read from the outcomes
//! topic (`<prefix>.deliveries.v1`) rather than one worker's disk — by tenant, endpoint,
//! transition and outcome, from a moment on. One delivery's attempts are its records for one
//! transition and endpoint.

use std::collections::VecDeque;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::Response;

use super::{json, ApiError, Tenants};
use crate::topics::outcome::{Outcome, Record};

/// The records answered unless `limit` says otherwise, and the most it may say.
const LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// How far back a search reads unless `since` says: a day.
const DEFAULT_SINCE_MS: i64 = 24 * 3600 * 1000;

/// What a search asks for.
#[derive(Debug, Default, PartialEq)]
struct Search {
    tenant: Option<String>,
    endpoint: Option<String>,
    transition: Option<String>,
    outcome: Option<Outcome>,
    since_ms: Option<i64>,
    limit: usize,
}

impl Search {
    fn parse(query: Option<&str>) -> Result<Search, ApiError> {
        let mut search = Search {
            limit: LIMIT,
            ..Search::default()
        };
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let value = value.into_owned();
            match &*name {
                "tenant" => search.tenant = Some(value),
                "endpoint" => search.endpoint = Some(value),
                "transition" => search.transition = Some(value),
                "outcome" => {
                    let outcome = Outcome::ALL.into_iter().find(|o| o.as_str() == value);
                    search.outcome = Some(outcome.ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "outcome: one of delivered, failed, dead_lettered, superseded, expired, skipped_disabled, not {value:?}"
                        ))
                    })?);
                }
                "since" => search.since_ms = Some(since(&value)?),
                "limit" => search.limit = limit(&value)?,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "{other:?}: not a parameter of this route (tenant, endpoint, transition, outcome, since, limit)"
                    )))
                }
            }
        }
        Ok(search)
    }

    fn admits(&self, record: &Record) -> bool {
        let is =
            |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
        is(&self.tenant, &record.tenant_id)
            && is(&self.endpoint, &record.endpoint_id)
            && is(&self.transition, &record.transition_id)
            && self.outcome.is_none_or(|o| o == record.outcome)
    }
}

/// The tenant a search is limited to, for a key limited to one.
pub(super) fn tenant_of(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "tenant")
        .map(|(_, value)| value.into_owned())
}

/// A `since` parameter: an RFC 3339 time, as Unix milliseconds.
pub(super) fn since(value: &str) -> Result<i64, ApiError> {
    crate::clock::parse_rfc3339(value).map_err(|_| {
        ApiError::BadRequest(format!(
            "since: an RFC 3339 time (2026-12-07T10:00:00Z), not {value:?}"
        ))
    })
}

/// A `limit` parameter: a number from 1 to [`MAX_LIMIT`].
pub(super) fn limit(value: &str) -> Result<usize, ApiError> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "limit: a number from 1 to {MAX_LIMIT}, not {value:?}"
            ))
        })
}

impl Tenants {
    /// `GET /admin/v1/deliveries[?tenant][&endpoint][&transition][&outcome][&since][&limit]`:
    /// the latest `limit` outcome records that match, oldest first, and whether the whole range
    /// was read within `admin.write_timeout`.
    pub(super) async fn search_deliveries(
        &self,
        query: Option<&str>,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let search = Search::parse(query)?;
        let since = search
            .since_ms
            .unwrap_or_else(|| self.clock.now_millis() - DEFAULT_SINCE_MS);
        let topic = self.kafka.topics().deliveries;
        let (complete, found) = self
            .latest(topic, since, search.limit, move |bytes| {
                Record::decode(bytes).ok().filter(|r| search.admits(r))
            })
            .await?;
        let body = serde_json::json!({
            "deliveries": found,
            "complete": complete,
        });
        Ok(json(StatusCode::OK, body.to_string()))
    }
}

impl Tenants {
    /// The last `limit` records of `topic` written from `since_ms` on that `keep` keeps (read
    /// to the end the topic had, within `admin.write_timeout`), oldest first per partition; and
    /// whether the whole range was read.
    pub(super) async fn latest<T: Send + 'static>(
        &self,
        topic: String,
        since_ms: i64,
        limit: usize,
        keep: impl Fn(&[u8]) -> Option<T> + Send + 'static,
    ) -> Result<(bool, Vec<T>), ApiError> {
        let (kafka, budget) = (self.kafka.clone(), self.kafka_timeout);
        let read = tokio::task::spawn_blocking(move || {
            let mut found = VecDeque::new();
            let read =
                crate::kafka::history::read_since(&kafka, &topic, since_ms, budget, |bytes| {
                    if let Some(record) = keep(bytes) {
                        if found.len() == limit {
                            found.pop_front();
                        }
                        found.push_back(record);
                    }
                })
                .map_err(|e| ApiError::Unavailable(format!("reading {topic}: {e}")))?;
            Ok((read.complete, found.into()))
        })
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tenant: &str, endpoint: &str, outcome: Outcome) -> Record {
        Record {
            schema: crate::topics::outcome::SCHEMA.to_string(),
            transition_id: "t-1".to_string(),
            tenant_id: tenant.to_string(),
            endpoint_id: endpoint.to_string(),
            event: "abandoned_candidate".to_string(),
            cart: "c-1".to_string(),
            attempt: 1,
            outcome,
            status_code: Some(200),
            status_class: Some("2xx".to_string()),
            latency_ms: Some(1.0),
            error: None,
            next_attempt_at: None,
            at: "2026-12-07T10:00:00.000Z".to_string(),
        }
    }

    #[test]
    fn a_search_admits_the_records_that_match_every_filter_given() {
        let search = Search::parse(Some("tenant=acme&outcome=delivered&limit=5")).unwrap();
        assert_eq!(search.limit, 5);
        assert!(search.admits(&record("acme", "crm", Outcome::Delivered)));
        assert!(!search.admits(&record("acme", "crm", Outcome::Failed)));
        assert!(!search.admits(&record("globex", "crm", Outcome::Delivered)));
        let everything = Search::parse(None).unwrap();
        assert_eq!(everything.limit, LIMIT);
        assert!(everything.admits(&record("globex", "erp", Outcome::Expired)));
        let since = Search::parse(Some("since=2026-12-07T10:00:00Z")).unwrap();
        assert_eq!(since.since_ms, Some(1_796_637_600_000));
    }

    #[test]
    fn a_search_refuses_what_it_cannot_read() {
        for bad in [
            "outcome=lost",
            "since=yesterday",
            "limit=0",
            "limit=1001",
            "page=2",
        ] {
            assert!(
                matches!(Search::parse(Some(bad)), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
