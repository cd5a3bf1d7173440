//! A normalized event on `<prefix>.events.v1` (`schemas/event.v1.json`): one per distinct
//! delivery, written by the processor. Its shape is [`Event`], which every provider maps its
//! payload into (`providers::normalize`); on the topic it also names its tenant and the
//! delivery id that de-duplicates it.

use serde::{Deserialize, Serialize};

pub use crate::providers::normalize::{Bucket, Customer, Event, SCHEMA};

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
