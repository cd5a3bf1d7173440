//! A given-up delivery on `<prefix>.deliveries.dlq.v1` (`schemas/delivery_dlq.v1.json`),
//! written by the delivery worker and read back by redrive: everything needed to deliver it
//! again, the request body byte for byte.
//!
//! Redrive signs what it reads with the endpoint's secret and sends it, so a record must prove
//! that a delivery worker of this deployment wrote it, not whoever can write to the topic: its
//! `tag` ([`Record::seal`], [`Record::verify`]).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use hmac::{Hmac, Mac};
use sha2::Sha256;

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

/// What the key of a tag is derived from an endpoint's signing secret with (the tag key is the
/// HMAC-SHA256 of this under the secret), so that a tag is no signature a receiver accepts and
/// no request signature is a tag.
pub const TAG_KEY: &[u8] = b"cartstream.delivery_dlq.v1 tag";

/// One record of `<prefix>.deliveries.dlq.v1`: key = the tenant id. Redrive needs neither the
/// schema name nor the attempt count, so a record without them is still read; a record without
/// a `tag` (written before tags were) is read, but not sent.
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
    /// Lowercase hex HMAC-SHA256, under a key derived from the endpoint's current signing secret,
    /// of what redrive would send and to whom ([`Record::seal`]); absent when the endpoint had
    /// left the registry (nothing can be sent to it) and from records written before tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
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

    /// Tags the record with `tag_key`, derived from the endpoint's current signing secret
    /// ([`TAG_KEY`]). The tag covers the tenant, endpoint, transition id, event and cart, and the
    /// body's bytes as the record carries them: everything redrive sends, and to whom.
    pub fn seal(&mut self, tag_key: &[u8]) {
        let tag = mac(tag_key, &self.tagged()).finalize().into_bytes();
        self.tag = Some(hex::encode(tag));
    }

    /// Whether the record's tag was made by [`Record::seal`] with one of `tag_keys` (derived from
    /// the endpoint's secrets, current and previous) over what the record carries now; compared
    /// in constant time.
    pub fn verify<K: AsRef<[u8]>>(&self, tag_keys: impl IntoIterator<Item = K>) -> bool {
        let Some(tag) = self.tag.as_deref().and_then(|t| hex::decode(t).ok()) else {
            return false;
        };
        let tagged = self.tagged();
        tag_keys
            .into_iter()
            .any(|key| mac(key.as_ref(), &tagged).verify_slice(&tag).is_ok())
    }

    fn tagged(&self) -> Tagged<'_> {
        // A JSON array: no choice of ids can make two different records read the same.
        let ids = serde_json::to_string(&[
            &self.tenant_id,
            &self.endpoint_id,
            &self.transition_id,
            &self.event,
            &self.cart,
        ])
        .expect("strings always serialize");
        Tagged {
            ids,
            body: self.body.get(),
        }
    }
}

/// What a tag is the HMAC of: the ids, a line feed, the body.
struct Tagged<'a> {
    ids: String,
    body: &'a str,
}

impl Tagged<'_> {
    fn each(&self) -> [&[u8]; 3] {
        [self.ids.as_bytes(), b"\n", self.body.as_bytes()]
    }
}

/// The HMAC-SHA256 of what a tag covers, under `key`, ready to finish or compare.
fn mac(key: &[u8], tagged: &Tagged<'_>) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in tagged.each() {
        mac.update(part);
    }
    mac
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
            tag: None,
        }
    }

    /// The tag key of an endpoint whose signing secret is `text`, derived here with the hmac
    /// crate as the delivery worker derives it.
    fn secret(text: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(text.as_bytes()).unwrap();
        mac.update(TAG_KEY);
        mac.finalize().into_bytes().to_vec()
    }

    #[test]
    fn every_reason_round_trips_and_matches_its_schema() {
        for reason in Reason::ALL {
            let mut record = record(reason);
            record.seal(&secret("crm-secret"));
            let text = record.encode();
            super::super::assert_matches_schema("delivery_dlq.v1.json", text.as_bytes());
            let read = Record::decode(text.as_bytes()).unwrap();
            assert_eq!(read.reason, reason);
            assert_eq!(read.body.get(), BODY, "the body keeps its bytes");
            assert_eq!(read.encode(), text);
            assert!(read.verify([&secret("crm-secret")]), "{text}");
        }
    }

    #[test]
    fn a_record_written_before_tags_is_still_read_but_proves_nothing() {
        let text = record(Reason::Exhausted).encode();
        assert!(!text.contains("\"tag\""), "{text}");
        super::super::assert_matches_schema("delivery_dlq.v1.json", text.as_bytes());
        let read = Record::decode(text.as_bytes()).unwrap();
        assert_eq!(read.tag, None);
        assert!(!read.verify([&secret("crm-secret")]));
    }

    #[test]
    fn a_tag_proves_only_what_it_was_made_for_under_the_endpoints_secrets() {
        let mut sealed = record(Reason::Exhausted);
        sealed.seal(&secret("crm-secret"));
        // The current or the previous secret of a rotation verifies; another does not.
        assert!(sealed.verify([&secret("old-secret"), &secret("crm-secret")]));
        assert!(!sealed.verify([&secret("other-secret")]));
        assert!(!sealed.verify::<Vec<u8>>([]));
        // Not a request signature either: that is the HMAC of the body under the secret.
        let mut request = <Hmac<Sha256> as Mac>::new_from_slice(b"crm-secret").unwrap();
        request.update(BODY.as_bytes());
        let signature = hex::encode(request.finalize().into_bytes());
        assert_ne!(sealed.tag.as_deref(), Some(signature.as_str()));
        let rewrites: [fn(&mut Record); 7] = [
            |r| r.tenant_id = "globex".to_string(),
            |r| r.endpoint_id = "erp".to_string(),
            |r| r.transition_id = "ffffffffffffffffffffffffffffffff".to_string(),
            |r| r.event = "order_completed".to_string(),
            |r| r.cart = "chk-2".to_string(),
            |r| r.body = Record::body(&BODY.replace("379.69", "1.00")),
            |r| r.tag = Some("not hex".to_string()),
        ];
        for rewrite in rewrites {
            let mut altered = sealed.clone();
            rewrite(&mut altered);
            let read = Record::decode(altered.encode().as_bytes()).unwrap();
            assert!(!read.verify([&secret("crm-secret")]), "{}", read.encode());
        }
        // What redrive does not send may change (a later reason, the attempts).
        let mut later = sealed.clone();
        later.reason = Reason::Gone;
        later.attempts = 1;
        assert!(later.verify([&secret("crm-secret")]));
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
