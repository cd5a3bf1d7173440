//! A delivery outcome on `<prefix>.deliveries.v1` (`schemas/delivery.v1.json`), written by
//! the delivery worker: one per attempt, and one that ends every (transition, endpoint) pair.

use serde::{Deserialize, Serialize};

/// The schema name every outcome record carries.
pub const SCHEMA: &str = "cartstream.delivery.v1";

/// What became of a delivery, or of one attempt at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The endpoint answered 2xx.
    Delivered,
    /// The attempt failed; another follows at `next_attempt_at`.
    Failed,
    /// Given up: the dead-letter topic has the delivery and its reason.
    DeadLettered,
    /// An order for the cart ended a pending abandonment.
    Superseded,
    /// Older than its event's deadline (also dead-lettered).
    Expired,
    /// Its endpoint is disabled (by the operator, or it answered 410).
    SkippedDisabled,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Delivered,
        Outcome::Failed,
        Outcome::DeadLettered,
        Outcome::Superseded,
        Outcome::Expired,
        Outcome::SkippedDisabled,
    ];

    /// The wire name, also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Superseded => "superseded",
            Outcome::Expired => "expired",
            Outcome::SkippedDisabled => "skipped_disabled",
        }
    }

    /// Whether the delivery went to the dead-letter topic with this outcome.
    pub fn is_dead_lettered(self) -> bool {
        matches!(self, Outcome::DeadLettered | Outcome::Expired)
    }
}

/// An outcome equals its wire name.
impl PartialEq<&str> for Outcome {
    fn eq(&self, word: &&str) -> bool {
        self.as_str() == *word
    }
}

/// One record of `<prefix>.deliveries.v1`: key = the tenant id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub schema: String,
    pub transition_id: String,
    pub tenant_id: String,
    pub endpoint_id: String,
    /// The transition's bucket: `abandoned_candidate` or `order_completed`.
    pub event: String,
    pub cart: String,
    /// 1 for the first HTTP attempt; 0 when the record ends the delivery without one.
    pub attempt: u32,
    pub outcome: Outcome,
    /// The endpoint's HTTP status; `None` without an answer.
    pub status_code: Option<u16>,
    /// `2xx` … `5xx`, `other`, `timeout`, `connection` or `refused`; `None` without an attempt.
    pub status_class: Option<String>,
    pub latency_ms: Option<f64>,
    /// Why no answer arrived (timeout, connection error, refused destination).
    pub error: Option<String>,
    /// When the next attempt is due (outcome `failed` only), RFC 3339 UTC.
    pub next_attempt_at: Option<String>,
    /// RFC 3339 UTC.
    pub at: String,
}

impl Record {
    /// The record's JSON value, its keys in alphabetical order as outcomes have always been
    /// written.
    pub fn encode(&self) -> String {
        let alphabetical = Alphabetical {
            at: &self.at,
            attempt: self.attempt,
            cart: &self.cart,
            endpoint_id: &self.endpoint_id,
            error: self.error.as_deref(),
            event: &self.event,
            latency_ms: self.latency_ms,
            next_attempt_at: self.next_attempt_at.as_deref(),
            outcome: self.outcome,
            schema: &self.schema,
            status_class: self.status_class.as_deref(),
            status_code: self.status_code,
            tenant_id: &self.tenant_id,
            transition_id: &self.transition_id,
        };
        serde_json::to_string(&alphabetical).expect("an outcome always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A [`Record`]'s members in alphabetical order, borrowed: serialized directly, it gives the
/// bytes a sorted JSON map of the record gives, without building one.
#[derive(Serialize)]
struct Alphabetical<'a> {
    at: &'a str,
    attempt: u32,
    cart: &'a str,
    endpoint_id: &'a str,
    error: Option<&'a str>,
    event: &'a str,
    latency_ms: Option<f64>,
    next_attempt_at: Option<&'a str>,
    outcome: Outcome,
    schema: &'a str,
    status_class: Option<&'a str>,
    status_code: Option<u16>,
    tenant_id: &'a str,
    transition_id: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: Outcome) -> Record {
        let attempted = !matches!(
            outcome,
            Outcome::Superseded | Outcome::Expired | Outcome::SkippedDisabled
        );
        Record {
            schema: SCHEMA.to_string(),
            transition_id: "0123456789abcdef0123456789abcdef".to_string(),
            tenant_id: "acme".to_string(),
            endpoint_id: "crm".to_string(),
            event: "abandoned_candidate".to_string(),
            cart: "chk-1".to_string(),
            attempt: u32::from(attempted),
            outcome,
            status_code: attempted.then_some(503),
            status_class: attempted.then(|| "5xx".to_string()),
            latency_ms: attempted.then_some(12.5),
            error: None,
            next_attempt_at: (outcome == Outcome::Failed)
                .then(|| "2026-11-02T10:16:00.000Z".to_string()),
            at: "2026-11-02T10:15:00.250Z".to_string(),
        }
    }

    #[test]
    fn every_outcome_round_trips_and_matches_its_schema() {
        for outcome in Outcome::ALL {
            let record = record(outcome);
            let text = record.encode();
            super::super::assert_matches_schema("delivery.v1.json", text.as_bytes());
            assert_eq!(Record::decode(text.as_bytes()).unwrap(), record);
        }
    }

    #[test]
    fn records_are_written_with_their_keys_in_alphabetical_order() {
        let mut records: Vec<Record> = Outcome::ALL.into_iter().map(record).collect();
        let mut odd = record(Outcome::Failed);
        odd.error = Some("timeout \"after\" 10 s\n".to_string());
        odd.latency_ms = Some(0.1 + 0.2);
        odd.cart = "caf\u{e9} \u{1f6d2}".to_string();
        records.push(odd);
        for record in records {
            let sorted = serde_json::to_value(&record).unwrap().to_string();
            assert_eq!(record.encode(), sorted);
        }
    }

    #[test]
    fn outcomes_are_the_schemas_words() {
        let words: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            words,
            [
                "delivered",
                "failed",
                "dead_lettered",
                "superseded",
                "expired",
                "skipped_disabled"
            ]
        );
        for outcome in Outcome::ALL {
            assert_eq!(
                serde_json::to_value(outcome).unwrap(),
                serde_json::Value::from(outcome.as_str())
            );
            assert_eq!(outcome, outcome.as_str());
        }
    }
}
