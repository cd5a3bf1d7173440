//! The record format of `<prefix>.inbound.v1`: key = tenant id, value = the raw request body
//! byte for byte, and the metadata in Kafka headers. These header names are a public contract
//! (docs/topics.md); consumers must not need the body to route a record.

use std::time::SystemTime;

use rdkafka::message::{Header, OwnedHeaders};

pub const SCHEMA: &str = "cartstream.inbound.v1";

pub const HEADER_SCHEMA: &str = "cartstream-schema";
pub const HEADER_PROVIDER: &str = "cartstream-provider";
pub const HEADER_TENANT: &str = "cartstream-tenant";
pub const HEADER_EVENT_TYPE: &str = "cartstream-event-type";
pub const HEADER_DELIVERY_ID: &str = "cartstream-delivery-id";
pub const HEADER_RECEIVED_AT: &str = "cartstream-received-at";
pub const HEADER_PAYLOAD_VERSION: &str = "cartstream-payload-version";
pub const HEADER_CONTENT_TYPE: &str = "content-type";

/// What the ingress knows about one verified delivery.
#[derive(Debug, Clone)]
pub struct Metadata<'a> {
    pub provider: &'a str,
    pub tenant: &'a str,
    pub event_type: Option<&'a str>,
    pub delivery_id: &'a str,
    pub received_at: SystemTime,
    pub content_type: Option<&'a str>,
    /// The platform's payload version, where it sends one (FlexyPe's `X-Webhook-Version`).
    pub payload_version: Option<&'a str>,
}

impl Metadata<'_> {
    /// The Kafka headers of the record. `event_type`, the payload version and `content-type`
    /// are left out when the request had none, rather than sent empty.
    pub fn headers(&self) -> OwnedHeaders {
        let received_at = humantime::format_rfc3339_millis(self.received_at).to_string();
        let mut headers = OwnedHeaders::new_with_capacity(7)
            .insert(Header {
                key: HEADER_SCHEMA,
                value: Some(SCHEMA),
            })
            .insert(Header {
                key: HEADER_PROVIDER,
                value: Some(self.provider),
            })
            .insert(Header {
                key: HEADER_TENANT,
                value: Some(self.tenant),
            })
            .insert(Header {
                key: HEADER_DELIVERY_ID,
                value: Some(self.delivery_id),
            })
            .insert(Header {
                key: HEADER_RECEIVED_AT,
                value: Some(&received_at),
            });
        if let Some(event_type) = self.event_type {
            headers = headers.insert(Header {
                key: HEADER_EVENT_TYPE,
                value: Some(event_type),
            });
        }
        if let Some(version) = self.payload_version {
            headers = headers.insert(Header {
                key: HEADER_PAYLOAD_VERSION,
                value: Some(version),
            });
        }
        if let Some(content_type) = self.content_type {
            headers = headers.insert(Header {
                key: HEADER_CONTENT_TYPE,
                value: Some(content_type),
            });
        }
        headers
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
