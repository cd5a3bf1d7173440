//! What the delivery worker makes of the records it reads and writes on Kafka: the webhook
//! body it sends for a transition, and its outcome and dead-letter records.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat};
use serde_json::json;

use super::store::{Job, OutboxRecord};
use super::{DEAD_LETTER_SCHEMA, OUTCOME_SCHEMA};
use crate::telemetry::metrics;
use crate::topics::transition::Transition;

/// The request body (SPEC §6) of `transition`'s webhook, fixed once so every attempt sends the
/// same bytes.
pub(super) fn webhook_body(transition: &Transition) -> String {
    let event = &transition.event;
    json!({
        "event": transition.bucket.as_str(),
        "id": transition.id,
        "occurred_at": transition.at,
        "tenant_id": transition.tenant_id,
        "data": {
            "cart": transition.cart,
            "from": transition.from.as_str(),
            "to": transition.to.as_str(),
            "recovered": transition.recovered,
            "customer": event.customer,
            "cart_value": event.cart_value,
            "currency": event.currency,
            "item_count": event.item_count,
            "recovery_url": event.recovery_url,
            "provider": event.provider,
            "cart_token": event.cart_token,
            "checkout_token": event.checkout_token,
            "order_id": event.order_id,
        }
    })
    .to_string()
}

/// An outcome about to be recorded.
pub(super) struct Outcome<'a> {
    pub(super) job: &'a Job,
    pub(super) outcome: &'static str,
    pub(super) status: Option<u16>,
    pub(super) class: Option<&'static str>,
    pub(super) took: Option<Duration>,
    pub(super) error: Option<String>,
    pub(super) next_ms: Option<i64>,
}

impl<'a> Outcome<'a> {
    pub(super) fn of(job: &'a Job, outcome: &'static str) -> Self {
        Outcome {
            job,
            outcome,
            status: None,
            class: None,
            took: None,
            error: None,
            next_ms: None,
        }
    }
}

/// An outcome record for `<prefix>.deliveries.v1` (`schemas/delivery.v1.json`).
pub(super) fn outcome_record(outcome: Outcome<'_>, now: i64) -> OutboxRecord {
    let job = outcome.job;
    metrics::delivery_outcome(outcome.outcome);
    let value = json!({
        "schema": OUTCOME_SCHEMA,
        "transition_id": job.transition_id,
        "tenant_id": job.tenant,
        "endpoint_id": job.endpoint,
        "event": job.event,
        "cart": job.cart,
        "attempt": if outcome.class.is_some() { job.attempts } else { 0 },
        "outcome": outcome.outcome,
        "status_code": outcome.status,
        "status_class": outcome.class,
        "latency_ms": outcome.took.map(|d| d.as_secs_f64() * 1000.0),
        "error": outcome.error,
        "next_attempt_at": outcome.next_ms.map(rfc3339),
        "at": rfc3339(now),
    });
    OutboxRecord {
        dead_letter: false,
        key: job.tenant.clone(),
        id: format!(
            "{}/{}/{}/{}",
            job.transition_id, job.endpoint, job.attempts, outcome.outcome
        ),
        value: value.to_string(),
    }
}

/// A record for `<prefix>.deliveries.dlq.v1` (`schemas/delivery_dlq.v1.json`): everything
/// needed to deliver it again by hand.
pub(super) fn dead_letter(job: &Job, reason: &'static str, now: i64) -> OutboxRecord {
    let body: serde_json::Value = serde_json::from_str(&job.body).unwrap_or_default();
    let value = json!({
        "schema": DEAD_LETTER_SCHEMA,
        "transition_id": job.transition_id,
        "tenant_id": job.tenant,
        "endpoint_id": job.endpoint,
        "event": job.event,
        "cart": job.cart,
        "reason": reason,
        "attempts": job.attempts,
        "last_status_code": job.last_status,
        "last_error": job.last_error,
        "created_at": rfc3339(job.created_ms),
        "dead_lettered_at": rfc3339(now),
        "body": body,
    });
    OutboxRecord {
        dead_letter: true,
        key: job.tenant.clone(),
        id: format!("{}/{}", job.transition_id, job.endpoint),
        value: value.to_string(),
    }
}

/// Unix ms as RFC 3339 with milliseconds, in UTC.
pub(super) fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}
