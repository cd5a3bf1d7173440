//! What the delivery worker makes of the records it reads and writes on Kafka: the webhook
//! body it sends for a transition, and its outcome and dead-letter records.

use std::time::Duration;

use serde_json::json;

use super::store::{Job, OutboxRecord};
use crate::clock::rfc3339;
use crate::telemetry::metrics;
use crate::tenants::Endpoint;
use crate::topics::dead_letter::{self, Reason};
use crate::topics::outcome::{self, Outcome};
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

/// A new job: `transition` to `endpoint`, with its webhook `body`, due at `now`.
pub(super) fn job(transition: &Transition, endpoint: &str, body: &str, now: i64) -> Job {
    Job {
        transition_id: transition.id.clone(),
        tenant: transition.tenant_id.clone(),
        endpoint: endpoint.to_string(),
        event: transition.bucket.as_str().to_string(),
        cart: transition.cart.clone(),
        body: body.to_string(),
        occurred_ms: crate::clock::parse_rfc3339(&transition.at).unwrap_or(now),
        created_ms: now,
        attempts: 0,
        next_ms: now,
        last_status: None,
        last_error: None,
        superseded: false,
    }
}

/// An outcome about to be recorded.
pub(super) struct Recorded<'a> {
    pub(super) job: &'a Job,
    pub(super) outcome: Outcome,
    pub(super) status: Option<u16>,
    pub(super) class: Option<&'static str>,
    pub(super) took: Option<Duration>,
    pub(super) error: Option<String>,
    pub(super) next_ms: Option<i64>,
}

impl<'a> Recorded<'a> {
    pub(super) fn of(job: &'a Job, outcome: Outcome) -> Self {
        Recorded {
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

/// An outcome record for `<prefix>.deliveries.v1`.
pub(super) fn outcome_record(recorded: Recorded<'_>, now: i64) -> OutboxRecord {
    let job = recorded.job;
    let outcome = recorded.outcome;
    metrics::delivery_outcome(outcome.as_str(), outcome.is_dead_lettered());
    let record = outcome::Record {
        schema: outcome::SCHEMA.to_string(),
        transition_id: job.transition_id.clone(),
        tenant_id: job.tenant.clone(),
        endpoint_id: job.endpoint.clone(),
        event: job.event.clone(),
        cart: job.cart.clone(),
        attempt: if recorded.class.is_some() {
            job.attempts
        } else {
            0
        },
        outcome,
        status_code: recorded.status,
        status_class: recorded.class.map(str::to_string),
        latency_ms: recorded.took.map(|d| d.as_secs_f64() * 1000.0),
        error: recorded.error,
        next_attempt_at: recorded.next_ms.map(rfc3339),
        at: rfc3339(now),
    };
    OutboxRecord {
        dead_letter: false,
        key: job.tenant.clone(),
        id: format!(
            "{}/{}/{}/{}",
            job.transition_id,
            job.endpoint,
            job.attempts,
            outcome.as_str()
        ),
        value: record.encode(),
    }
}

/// A record for `<prefix>.deliveries.dlq.v1`: everything needed to deliver it again by hand,
/// tagged with the current secret of `endpoint` (the job's, if it is still configured) so that
/// redrive can tell it from one written by anyone else.
pub(super) fn dead_letter(
    job: &Job,
    reason: Reason,
    now: i64,
    endpoint: Option<&Endpoint>,
) -> OutboxRecord {
    let mut record = dead_letter::Record {
        schema: dead_letter::SCHEMA.to_string(),
        transition_id: job.transition_id.clone(),
        tenant_id: job.tenant.clone(),
        endpoint_id: job.endpoint.clone(),
        event: job.event.clone(),
        cart: job.cart.clone(),
        reason,
        attempts: job.attempts,
        last_status_code: job.last_status,
        last_error: job.last_error.clone(),
        created_at: rfc3339(job.created_ms),
        dead_lettered_at: rfc3339(now),
        body: dead_letter::Record::body(&job.body),
        tag: None,
    };
    // Without an endpoint there is nothing to tag with, nor anywhere a redrive could send it.
    if let Some(secret) = endpoint.and_then(|e| e.secrets.first()) {
        record.seal(&tag_key(secret.plain()));
    }
    OutboxRecord {
        dead_letter: true,
        key: job.tenant.clone(),
        id: format!("{}/{}", job.transition_id, job.endpoint),
        value: record.encode(),
    }
}

/// The key a dead letter is tagged with under an endpoint's signing `secret`
/// ([`dead_letter::TAG_KEY`]): what the worker seals with and redrive checks with.
pub(crate) fn tag_key(secret: &crate::providers::Key) -> [u8; 32] {
    secret.sign(&[dead_letter::TAG_KEY])
}
