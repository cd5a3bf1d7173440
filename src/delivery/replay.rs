//! Replay: the transitions of a time range read back from `<prefix>.transitions.v1` and sent
//! again to one endpoint, whatever became of them before — for a receiver that lost what it
//! was sent, or an endpoint added after the fact. Each is scheduled on the worker that carries
//! the replay out, due at once with a fresh attempt budget, signed with the endpoint's secrets
//! of now; one still pending is left as it is. Only the transitions the endpoint is subscribed
//! to now are sent.
//!
//! A replay reads the topic up to its end as it was when it began, at most `limit` transitions
//! and [`super::redrive::READ_TIME`]; the report says whether it got to the end.

use serde::Serialize;

use super::records::{job, webhook_body};
use super::redrive::{DEFAULT_LIMIT, MAX_LIMIT, READ_TIME};
use super::store::Job;
use crate::clock::parse_rfc3339;
use crate::kafka;
use crate::tenants::Registry;
use crate::topics::transition::Transition;

/// What to replay: the body of a replay request.
pub use crate::topics::command::Replay as Request;

/// A [`Request`] checked: times parsed, the limit settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    tenant: String,
    endpoint: String,
    since_ms: i64,
    until_ms: i64,
    limit: usize,
}

/// What a replay did: the answer to the operator.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Transitions scheduled again, due now.
    pub replayed: usize,
    /// Transitions whose delivery to the endpoint is pending already (left as they are).
    pub already_pending: usize,
    /// Records read from the topic.
    pub read: usize,
    /// Whether the replay read to the end of the topic (as it was when it began) within its
    /// limit and its time; when false, ask again from the last transition's time.
    pub complete: bool,
}

/// Checks `request` at `now_ms`: its times and its limit. A range that ends before it begins
/// holds nothing.
pub fn check(request: &Request, now_ms: i64) -> Result<Selection, String> {
    let time = |field: &str, text: &str| {
        parse_rfc3339(text).map_err(|e| format!("{field} {text:?} is not an RFC 3339 time: {e}"))
    };
    let since_ms = time("since", &request.since)?;
    let until_ms = match &request.until {
        Some(until) => time("until", until)?,
        None => now_ms,
    };
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(format!("limit must be between 1 and {MAX_LIMIT}"));
    }
    Ok(Selection {
        tenant: request.tenant_id.clone(),
        endpoint: request.endpoint_id.clone(),
        since_ms,
        until_ms,
        limit,
    })
}

impl Selection {
    /// The job `payload` makes for the endpoint, when it is a transition the selection takes
    /// and the endpoint is subscribed to.
    fn job(&self, payload: &[u8], registry: &Registry, now: i64) -> Option<Job> {
        let transition = Transition::decode(payload).ok()?;
        let at = parse_rfc3339(&transition.at).ok()?;
        let wanted = transition.tenant_id == self.tenant
            && (self.since_ms..self.until_ms).contains(&at)
            && registry
                .endpoint(&self.tenant, &self.endpoint)
                .is_some_and(|e| e.events.contains(&transition.bucket));
        wanted.then(|| job(&transition, &self.endpoint, &webhook_body(&transition), now))
    }

    /// Reads the transitions topic from `since` (blocking: run it off the runtime): the jobs to
    /// schedule, and the report so far.
    pub(super) fn read(
        &self,
        kafka: &kafka::Config,
        registry: &Registry,
        now: i64,
    ) -> Result<(Vec<Job>, Report), String> {
        if self.since_ms >= self.until_ms {
            return Ok((
                Vec::new(),
                Report {
                    complete: true,
                    ..Report::default()
                },
            ));
        }
        let topic = kafka.topics().transitions;
        let mut jobs = Vec::new();
        // A transition written twice (the processor replaying its input) is replayed once.
        let mut taken = std::collections::HashSet::new();
        let mut over = false;
        let read = kafka::history::read_since(kafka, &topic, self.since_ms, READ_TIME, |bytes| {
            let Some(job) = self.job(bytes, registry, now) else {
                return;
            };
            if taken.insert(job.transition_id.clone()) {
                match jobs.len() < self.limit {
                    true => jobs.push(job),
                    false => over = true,
                }
            }
        })
        .map_err(|e| format!("reading {topic}: {e}"))?;
        let report = Report {
            read: read.records,
            complete: read.complete && !over,
            ..Report::default()
        };
        Ok((jobs, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(since: &str, until: Option<&str>, limit: Option<usize>) -> Request {
        Request {
            tenant_id: "acme".into(),
            endpoint_id: "crm".into(),
            since: since.into(),
            until: until.map(str::to_string),
            limit,
        }
    }

    const NOW: i64 = 1_796_637_600_000; // 2026-12-07T10:00:00Z

    #[test]
    fn a_replay_without_an_end_runs_until_now_with_the_default_limit() {
        let selection = check(&request("2026-12-07T09:00:00Z", None, None), NOW).unwrap();
        assert_eq!(selection.since_ms, NOW - 3_600_000);
        assert_eq!(selection.until_ms, NOW);
        assert_eq!(selection.limit, DEFAULT_LIMIT);
    }

    #[test]
    fn a_replay_refuses_times_it_cannot_read_and_limits_out_of_range() {
        for (since, until, limit) in [
            ("yesterday", None, None),
            ("2026-12-07T09:00:00Z", Some("soon"), None),
            ("2026-12-07T09:00:00Z", None, Some(0)),
            ("2026-12-07T09:00:00Z", None, Some(MAX_LIMIT + 1)),
        ] {
            assert!(
                check(&request(since, until, limit), NOW).is_err(),
                "{since} {until:?} {limit:?}"
            );
        }
    }

    #[test]
    fn a_replay_takes_the_tenants_transitions_of_its_range_that_the_endpoint_is_subscribed_to() {
        let text = r#"
[[tenant]]
id = "acme"
  [[tenant.endpoint]]
  id = "crm"
  url = "https://crm.example.com/hooks"
  secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
  events = ["abandoned_candidate"]
"#;
        let registry = Registry::from_toml(
            text,
            std::path::Path::new("."),
            &std::collections::HashMap::new(),
        )
        .unwrap();
        let selection = check(
            &request("2026-12-07T09:00:00Z", Some("2026-12-07T10:00:00Z"), None),
            NOW,
        )
        .unwrap();
        let transition = |tenant: &str, bucket: &str, at: &str| {
            serde_json::json!({
                "schema": "cartstream.transition.v1",
                "id": "0123456789abcdef0123456789abcdef",
                "tenant_id": tenant,
                "cart": "c-1",
                "from": "active",
                "to": "abandoned",
                "bucket": bucket,
                "recovered": false,
                "at": at,
                "event": {"provider": "shopify"}
            })
            .to_string()
        };
        let taken = transition("acme", "abandoned_candidate", "2026-12-07T09:30:00.000Z");
        let job = selection
            .job(taken.as_bytes(), &registry, NOW)
            .expect("taken");
        assert_eq!((job.endpoint.as_str(), job.next_ms), ("crm", NOW));
        for (left_out, why) in [
            (
                transition("globex", "abandoned_candidate", "2026-12-07T09:30:00.000Z"),
                "another tenant",
            ),
            (
                transition("acme", "order_completed", "2026-12-07T09:30:00.000Z"),
                "not subscribed",
            ),
            (
                transition("acme", "abandoned_candidate", "2026-12-07T10:00:00.000Z"),
                "at the end",
            ),
            (
                transition("acme", "abandoned_candidate", "2026-12-07T08:59:59.999Z"),
                "before",
            ),
            ("not a transition".to_string(), "unreadable"),
        ] {
            assert!(
                selection.job(left_out.as_bytes(), &registry, NOW).is_none(),
                "{why}"
            );
        }
    }
}
