//! A cart transition on `<prefix>.transitions.v1` (`schemas/transition.v1.json`): written by
//! the cart state machine (`state`, published by the processor), read by delivery. One type
//! for both, so a field added here is a field both sides see.

use serde::{Deserialize, Serialize};

use super::event::{Bucket, Event};

/// The schema name every transition carries.
pub const SCHEMA: &str = "cartstream.transition.v1";

/// Where a cart is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Recent activity; an inactivity timer is armed at `last_activity + window`.
    Active,
    /// The timer fired while active: the follow-up was triggered.
    Abandoned,
    /// An order arrived while active (terminal).
    Completed,
    /// An order arrived after abandonment (terminal).
    Recovered,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::Recovered)
    }

    /// The wire name, also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Active => "active",
            Phase::Abandoned => "abandoned",
            Phase::Completed => "completed",
            Phase::Recovered => "recovered",
        }
    }
}

/// A cart changing phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub schema: String,
    /// Deterministic: the same input replayed yields the same id.
    pub id: String,
    pub tenant_id: String,
    pub cart: String,
    pub from: Phase,
    pub to: Phase,
    /// `abandoned_candidate` or `order_completed`.
    pub bucket: Bucket,
    pub recovered: bool,
    /// Event time of the transition, RFC 3339 UTC.
    pub at: String,
    /// The cart as last described (customer, value, recovery URL, provider, ids).
    #[serde(deserialize_with = "event_as_carried")]
    pub event: Event,
}

/// The event of a transition, read as delivery has always read it: what the event leaves out
/// counts as unknown (`null` fields, no customer details, bucket `other`, this schema) rather
/// than making the whole transition unreadable. Only `provider` is required.
fn event_as_carried<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Event, D::Error> {
    use serde::de::Error as _;
    let mut value = serde_json::Value::deserialize(deserializer)?;
    if let Some(fields) = value.as_object_mut() {
        fields
            .entry("schema")
            .or_insert_with(|| super::event::SCHEMA.into());
        fields
            .entry("event_bucket")
            .or_insert_with(|| Bucket::Other.as_str().into());
        fields
            .entry("customer")
            .or_insert_with(|| serde_json::json!({}));
    }
    serde_json::from_value(value).map_err(D::Error::custom)
}

impl Transition {
    /// The record's JSON value (key = `tenant_id`, id = `id`).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a transition always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(from: Phase, to: Phase, bucket: Bucket) -> Transition {
        Transition {
            schema: SCHEMA.to_string(),
            id: "0123456789abcdef0123456789abcdef".to_string(),
            tenant_id: "acme".to_string(),
            cart: "chk-1".to_string(),
            from,
            to,
            bucket,
            recovered: to == Phase::Recovered,
            at: "2026-11-02T10:15:00.250Z".to_string(),
            event: super::super::event::sample(),
        }
    }

    #[test]
    fn every_kind_of_transition_round_trips_and_matches_its_schema() {
        for record in [
            transition(Phase::Active, Phase::Abandoned, Bucket::AbandonedCandidate),
            transition(Phase::Active, Phase::Completed, Bucket::OrderCompleted),
            transition(Phase::Abandoned, Phase::Recovered, Bucket::OrderCompleted),
        ] {
            let bytes = record.encode();
            super::super::assert_matches_schema("transition.v1.json", &bytes);
            assert_eq!(Transition::decode(&bytes).unwrap(), record);
        }
    }

    #[test]
    fn an_event_that_leaves_fields_out_reads_them_as_unknown() {
        let mut value = serde_json::to_value(transition(
            Phase::Active,
            Phase::Abandoned,
            Bucket::AbandonedCandidate,
        ))
        .unwrap();
        value["event"] = serde_json::json!({
            "provider": "shopify",
            "customer": {"name": null, "email": "bob@example.com", "phone": null},
            "cart_token": "c1",
        });
        let read = Transition::decode(value.to_string().as_bytes()).unwrap();
        let mut expected = Event::new("shopify", None, Bucket::Other);
        expected.customer.email = Some("bob@example.com".into());
        expected.cart_token = Some("c1".into());
        assert_eq!(read.event, expected);
        value["event"] = serde_json::json!({"customer": {}});
        assert!(Transition::decode(value.to_string().as_bytes()).is_err());
    }

    #[test]
    fn phases_are_the_schemas_words() {
        for phase in [
            Phase::Active,
            Phase::Abandoned,
            Phase::Completed,
            Phase::Recovered,
        ] {
            assert_eq!(
                serde_json::to_value(phase).unwrap(),
                serde_json::Value::from(phase.as_str())
            );
        }
    }
}
