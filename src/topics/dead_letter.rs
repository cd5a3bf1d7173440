//! A given-up delivery on `<prefix>.deliveries.dlq.v1` (`schemas/delivery_dlq.v1.json`),
//! written by the delivery worker and read back by redrive: everything needed to deliver it
//! again, the request body byte for byte.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The schema name every dead-letter record carries.
pub const SCHEMA: &str = "cartstream.delivery_dlq.v1";

/// Why a delivery was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Every attempt of the schedule failed.
    Exhausted,
    /// The destination's address is private and not allow-listed: no retry can change that
    /// (a change of configuration and a redrive can).
    Refused,
    /// Older than its event's deadline.
    Expired,
    /// The endpoint answered 410 and is disabled.
    Gone,
    /// The endpoint left the registry.
    EndpointRemoved,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::Exhausted,
        Reason::Refused,
        Reason::Expired,
        Reason::Gone,
        Reason::EndpointRemoved,
    ];

    /// The wire name, also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Exhausted => "exhausted",
            Reason::Refused => "refused",
            Reason::Expired => "expired",
            Reason::Gone => "gone",
            Reason::EndpointRemoved => "endpoint_removed",
        }
    }

    /// The reason with this wire name.
    pub fn from_wire(word: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == word)
    }
}

/// A reason equals its wire name.
impl PartialEq<&str> for Reason {
    fn eq(&self, word: &&str) -> bool {
        self.as_str() == *word
    }
}

/// One record of `<prefix>.deliveries.dlq.v1`: key = the tenant id. Redrive needs neither the
/// schema name nor the attempt count, so a record without them is still read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    #[serde(default)]
    pub schema: String,
    pub transition_id: String,
    pub tenant_id: String,
    pub endpoint_id: String,
    /// The transition's bucket: `abandoned_candidate` or `order_completed`.
    pub event: String,
    pub cart: String,
    pub reason: Reason,
    #[serde(default)]
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    /// When the delivery was first stored, RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub dead_lettered_at: String,
    /// The webhook body (`schemas/webhook.v1.json`), exactly as it was sent.
    pub body: Box<RawValue>,
}

impl Record {
    /// A webhook body as a record carries it: the JSON of `text`, written compactly (`null`
    /// when `text` is not JSON).
    pub fn body(text: &str) -> Box<RawValue> {
        let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        serde_json::value::to_raw_value(&value).expect("JSON values serialize")
    }

    /// The record's JSON value, its keys in alphabetical order as dead letters have always been
    /// written.
    pub fn encode(&self) -> String {
        serde_json::to_value(self)
            .expect("a dead letter always serializes")
            .to_string()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"data":{"cart":"chk-1","cart_token":null,"cart_value":"379.69","checkout_token":"chk-1","currency":"SAR","customer":{"email":null,"name":null,"phone":null},"from":"active","item_count":3,"order_id":null,"provider":"shopify","recovered":false,"recovery_url":null,"to":"abandoned"},"event":"abandoned_candidate","id":"0123456789abcdef0123456789abcdef","occurred_at":"2026-11-02T10:00:00.000Z","tenant_id":"acme"}"#;

    fn record(reason: Reason) -> Record {
        Record {
            schema: SCHEMA.to_string(),
            transition_id: "0123456789abcdef0123456789abcdef".to_string(),
            tenant_id: "acme".to_string(),
            endpoint_id: "crm".to_string(),
            event: "abandoned_candidate".to_string(),
            cart: "chk-1".to_string(),
            reason,
            attempts: 7,
            last_status_code: Some(500),
            last_error: None,
            created_at: "2026-11-01T10:00:00.000Z".to_string(),
            dead_lettered_at: "2026-11-02T10:00:00.250Z".to_string(),
            body: Record::body(BODY),
        }
    }

    #[test]
    fn every_reason_round_trips_and_matches_its_schema() {
        for reason in Reason::ALL {
            let text = record(reason).encode();
            super::super::assert_matches_schema("delivery_dlq.v1.json", text.as_bytes());
            let read = Record::decode(text.as_bytes()).unwrap();
            assert_eq!(read.reason, reason);
            assert_eq!(read.body.get(), BODY, "the body keeps its bytes");
            assert_eq!(read.encode(), text);
        }
    }

    #[test]
    fn reasons_are_the_schemas_words() {
        for reason in Reason::ALL {
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                serde_json::Value::from(reason.as_str())
            );
            assert_eq!(Reason::from_wire(reason.as_str()), Some(reason));
            assert_eq!(reason, reason.as_str());
        }
        assert_eq!(Reason::from_wire("tired"), None);
    }
}
