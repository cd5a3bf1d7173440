//! The librdkafka side of `<prefix>.inbound.v1`, whose record `topics::inbound` defines: its
//! metadata as librdkafka's headers, and back.

use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::Message;

pub use crate::topics::inbound::*;

impl Metadata<'_> {
    /// The Kafka headers of the record ([`Metadata::encode`]).
    pub fn headers(&self) -> OwnedHeaders {
        let pairs = self.encode();
        pairs.iter().fold(
            OwnedHeaders::new_with_capacity(pairs.len()),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value.as_ref()),
                })
            },
        )
    }
}

impl<'m> Metadata<'m> {
    /// The metadata of a consumed record ([`Metadata::decode`] of its headers, its timestamp
    /// standing in for a missing arrival time).
    pub fn read(message: &'m BorrowedMessage<'_>) -> Result<Self, Invalid> {
        let headers = message.headers();
        let pairs = headers
            .into_iter()
            .flat_map(|headers| headers.iter())
            .map(|header| (header.key, header.value));
        Metadata::decode(pairs, message.timestamp().to_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn headers_carry_the_metadata() {
        let meta = Metadata {
            provider: "shopify",
            tenant: "acme",
            event_type: Some("checkouts/create"),
            delivery_id: "wh-1",
            received_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            content_type: None,
            payload_version: None,
            test: false,
        };
        let headers = meta.headers();
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8(h.value.unwrap().to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("cartstream-schema", "cartstream.inbound.v1"),
                ("cartstream-provider", "shopify"),
                ("cartstream-tenant", "acme"),
                ("cartstream-delivery-id", "wh-1"),
                ("cartstream-received-at", "2023-11-14T22:13:20.123Z"),
                ("cartstream-event-type", "checkouts/create"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
