//! A normalized event on `<prefix>.events.v1` (`schemas/event.v1.json`): one per distinct
//! delivery, written by the processor. Its shape is [`Event`] (SPEC §4.1): one shape for every
//! platform, so that everything downstream — cart state, data teams' warehouses — handles a
//! single format. Every provider maps its payload into it by the rules of
//! `providers::normalize`; on the topic it also names its tenant and the delivery id that
//! de-duplicates it.

use serde::{Deserialize, Serialize};

/// The schema name and version every normalized event carries.
pub const SCHEMA: &str = "cartstream.event.v1";

/// What an event means for a cart (SPEC §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// A cart or checkout started or changed and is not completed.
    AbandonedCandidate,
    /// Payment confirmed or order placed.
    OrderCompleted,
    /// Stored and counted; no customer action.
    Other,
}

impl Bucket {
    /// The wire name, also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::AbandonedCandidate => "abandoned_candidate",
            Bucket::OrderCompleted => "order_completed",
            Bucket::Other => "other",
        }
    }
}

/// The customer, as far as the payload names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub name: Option<String>,
    pub email: Option<String>,
    /// E.164 (`+15024592181`) when the country is known, else as the platform sent it.
    pub phone: Option<String>,
}

/// One inbound delivery in the common shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub schema: String,
    pub provider: String,
    /// The provider's own event name (`checkouts/create`, `abandoned.cart`, …).
    pub provider_event: Option<String>,
    pub event_bucket: Bucket,
    /// `cart`, `checkout`, `order`, … — the kind of resource the payload describes.
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub cart_token: Option<String>,
    pub checkout_token: Option<String>,
    pub order_id: Option<String>,
    pub customer: Customer,
    /// The cart or order total as a decimal string (`"379.69"`), never a float.
    pub cart_value: Option<String>,
    /// ISO 4217 code of `cart_value`.
    pub currency: Option<String>,
    pub item_count: Option<u64>,
    pub recovery_url: Option<String>,
    /// When the platform says the event happened, RFC 3339 in UTC.
    pub occurred_at: Option<String>,
}

impl Event {
    /// An event with nothing known but its provider, name and bucket.
    pub fn new(provider: &str, provider_event: Option<&str>, bucket: Bucket) -> Self {
        Event {
            schema: SCHEMA.to_string(),
            provider: provider.to_string(),
            provider_event: provider_event.map(str::to_string),
            event_bucket: bucket,
            resource_type: None,
            resource_id: None,
            cart_token: None,
            checkout_token: None,
            order_id: None,
            customer: Customer::default(),
            cart_value: None,
            currency: None,
            item_count: None,
            recovery_url: None,
            occurred_at: None,
        }
    }
}

/// One record of `<prefix>.events.v1`: key = the tenant id, id = the delivery id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub tenant_id: String,
    pub delivery_id: String,
    #[serde(flatten)]
    pub event: Event,
}

impl Record {
    /// The record's JSON value, its keys in alphabetical order as events have always been
    /// written.
    pub fn encode(&self) -> Vec<u8> {
        let value = serde_json::to_value(self).expect("an event always serializes");
        serde_json::to_vec(&value).expect("JSON values serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// An event with every field stated, for the records' tests.
#[cfg(test)]
pub(crate) fn sample() -> Event {
    let mut event = Event::new(
        "shopify",
        Some("checkouts/update"),
        Bucket::AbandonedCandidate,
    );
    event.resource_type = Some("checkout".into());
    event.resource_id = Some("981".into());
    event.checkout_token = Some("chk-1".into());
    event.customer = Customer {
        name: Some("Layla".into()),
        email: Some("layla@example.com".into()),
        phone: Some("+15024592181".into()),
    };
    event.cart_value = Some("379.69".into());
    event.currency = Some("SAR".into());
    event.item_count = Some(3);
    event.recovery_url = Some("https://shop.example/recover/chk-1".into());
    event.occurred_at = Some("2026-11-02T10:00:00.250Z".into());
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_record_round_trips_and_matches_its_schema() {
        for event in [sample(), Event::new("zid", None, Bucket::Other)] {
            let record = Record {
                tenant_id: "acme".into(),
                delivery_id: "wh-1".into(),
                event,
            };
            let bytes = record.encode();
            super::super::assert_matches_schema("event.v1.json", &bytes);
            assert_eq!(Record::decode(&bytes).unwrap(), record);
        }
    }

    #[test]
    fn an_event_record_is_the_event_with_its_tenant_and_delivery_id() {
        let record = Record {
            tenant_id: "acme".into(),
            delivery_id: "wh-1".into(),
            event: sample(),
        };
        let mut expected = serde_json::to_value(sample()).unwrap();
        expected["tenant_id"] = "acme".into();
        expected["delivery_id"] = "wh-1".into();
        assert_eq!(record.encode(), serde_json::to_vec(&expected).unwrap());
    }
}
