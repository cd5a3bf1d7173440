//! The record of `<prefix>.inbound.v1`: key = tenant id, value = the raw request body byte for
//! byte, and the metadata in Kafka headers. These header names are a public contract
//! (docs/topics.md); consumers must not need the body to route a record.
//!
//! Both directions live here, as plain `(name, value)` pairs: [`Metadata::encode`] for the
//! ingress, [`Metadata::decode`] for the processor. `kafka::inbound` only turns the pairs into
//! librdkafka's headers and back.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SCHEMA: &str = "cartstream.inbound.v1";

pub const HEADER_SCHEMA: &str = "cartstream-schema";
pub const HEADER_PROVIDER: &str = "cartstream-provider";
pub const HEADER_TENANT: &str = "cartstream-tenant";
pub const HEADER_EVENT_TYPE: &str = "cartstream-event-type";
pub const HEADER_DELIVERY_ID: &str = "cartstream-delivery-id";
pub const HEADER_RECEIVED_AT: &str = "cartstream-received-at";
pub const HEADER_PAYLOAD_VERSION: &str = "cartstream-payload-version";
pub const HEADER_CONTENT_TYPE: &str = "content-type";
/// `true` on a platform's test or sample delivery; absent otherwise.
pub const HEADER_TEST: &str = "cartstream-test";

/// What the ingress knows about one verified delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata<'a> {
    pub provider: &'a str,
    pub tenant: &'a str,
    pub event_type: Option<&'a str>,
    pub delivery_id: &'a str,
    pub received_at: SystemTime,
    pub content_type: Option<&'a str>,
    /// The platform's payload version, where it sends one (FlexyPe's `X-Webhook-Version`).
    pub payload_version: Option<&'a str>,
    /// A platform's test or sample delivery: consumers skip it (the processor tracks no cart).
    pub test: bool,
}

/// Why a record's headers are not the metadata of a delivery (not written by a cartstream
/// ingress). The processor skips such a record and counts it by [`Invalid::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    NoProvider,
    NoTenant,
    NoDeliveryId,
    NoReceivedAt,
}

impl Invalid {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::NoProvider => "no_provider",
            Invalid::NoTenant => "no_tenant",
            Invalid::NoDeliveryId => "no_delivery_id",
            Invalid::NoReceivedAt => "no_received_at",
        }
    }
}

impl<'a> Metadata<'a> {
    /// The headers of the record, in order. `event_type`, the payload version and
    /// `content-type` are left out when the request had none, rather than sent empty.
    pub fn encode(&self) -> Vec<(&'static str, Cow<'a, str>)> {
        let received_at = humantime::format_rfc3339_millis(self.received_at).to_string();
        let mut headers = vec![
            (HEADER_SCHEMA, Cow::Borrowed(SCHEMA)),
            (HEADER_PROVIDER, Cow::Borrowed(self.provider)),
            (HEADER_TENANT, Cow::Borrowed(self.tenant)),
            (HEADER_DELIVERY_ID, Cow::Borrowed(self.delivery_id)),
            (HEADER_RECEIVED_AT, Cow::Owned(received_at)),
        ];
        let optional = [
            (HEADER_EVENT_TYPE, self.event_type),
            (HEADER_PAYLOAD_VERSION, self.payload_version),
            (HEADER_CONTENT_TYPE, self.content_type),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                headers.push((name, Cow::Borrowed(value)));
            }
        }
        if self.test {
            headers.push((HEADER_TEST, Cow::Borrowed("true")));
        }
        headers
    }

    /// The metadata in a record's headers, checked in this order: a provider this daemon
    /// knows, a tenant, a delivery id, an arrival time. Values that are not UTF-8 count as absent, and so
    /// do an empty tenant or delivery id; `timestamp_ms` (the record's own timestamp) stands in
    /// for a missing or unreadable arrival time.
    pub fn decode(
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
        timestamp_ms: Option<i64>,
    ) -> Result<Self, Invalid> {
        let mut provider = None;
        let mut tenant = None;
        let mut delivery_id = None;
        let mut event_type = None;
        let mut payload_version = None;
        let mut content_type = None;
        let mut received_at = None;
        let mut test = false;
        for (name, value) in headers {
            let Some(value) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
                continue;
            };
            match name {
                HEADER_PROVIDER => provider = Some(value),
                HEADER_TENANT => tenant = Some(value),
                HEADER_DELIVERY_ID => delivery_id = Some(value),
                HEADER_EVENT_TYPE => event_type = Some(value),
                HEADER_PAYLOAD_VERSION => payload_version = Some(value),
                HEADER_CONTENT_TYPE => content_type = Some(value),
                HEADER_RECEIVED_AT => received_at = humantime::parse_rfc3339(value).ok(),
                HEADER_TEST => test = value == "true",
                _ => {}
            }
        }
        // Whether this daemon knows the provider is the reader's question (the processor
        // skips a record of an unknown one as `unknown_provider`): a record depends on no
        // module above it.
        let provider = provider
            .filter(|p| !p.is_empty())
            .ok_or(Invalid::NoProvider)?;
        let tenant = tenant.filter(|t| !t.is_empty()).ok_or(Invalid::NoTenant)?;
        let delivery_id = delivery_id
            .filter(|d| !d.is_empty())
            .ok_or(Invalid::NoDeliveryId)?;
        let received_at = received_at
            .or_else(|| timestamp_ms.map(from_unix_millis))
            .ok_or(Invalid::NoReceivedAt)?;
        Ok(Metadata {
            provider,
            tenant,
            event_type,
            delivery_id,
            received_at,
            content_type,
            payload_version,
            test,
        })
    }
}

fn from_unix_millis(ms: i64) -> SystemTime {
    let offset = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + offset
    } else {
        UNIX_EPOCH - offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata() -> Metadata<'static> {
        Metadata {
            provider: "flexype",
            tenant: "acme",
            event_type: Some("cart.updated"),
            delivery_id: "wh-1",
            received_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            content_type: Some("application/json"),
            payload_version: Some("2"),
            test: false,
        }
    }

    fn decode<'a>(
        headers: &'a [(&'static str, Cow<'a, str>)],
        timestamp_ms: Option<i64>,
    ) -> Result<Metadata<'a>, Invalid> {
        Metadata::decode(
            headers
                .iter()
                .map(|(name, value)| (*name, Some(value.as_bytes()))),
            timestamp_ms,
        )
    }

    #[test]
    fn metadata_round_trips_through_its_headers() {
        let meta = metadata();
        let headers = meta.encode();
        assert_eq!(headers[0], (HEADER_SCHEMA, Cow::Borrowed(SCHEMA)));
        assert_eq!(decode(&headers, None), Ok(meta));
        let bare = Metadata {
            event_type: None,
            content_type: None,
            payload_version: None,
            ..metadata()
        };
        let headers = bare.encode();
        assert_eq!(headers.len(), 5, "absent values are left out: {headers:?}");
        assert_eq!(decode(&headers, None), Ok(bare));
    }

    #[test]
    fn a_test_delivery_is_marked_and_read_back_as_one() {
        let test = Metadata {
            test: true,
            ..metadata()
        };
        let headers = test.encode();
        assert!(headers.contains(&(HEADER_TEST, Cow::Borrowed("true"))));
        assert_eq!(decode(&headers, None), Ok(test));
        assert!(!metadata()
            .encode()
            .iter()
            .any(|(name, _)| *name == HEADER_TEST));
    }

    #[test]
    fn the_records_timestamp_stands_in_for_a_missing_arrival_time() {
        let headers: Vec<_> = metadata()
            .encode()
            .into_iter()
            .filter(|(name, _)| *name != HEADER_RECEIVED_AT)
            .collect();
        assert_eq!(
            decode(&headers, Some(1_700_000_000_123)).map(|m| m.received_at),
            Ok(metadata().received_at)
        );
        assert_eq!(decode(&headers, None), Err(Invalid::NoReceivedAt));
    }

    #[test]
    fn headers_without_a_delivery_are_refused_with_their_reason() {
        let without = |dropped: &str, emptied: &str| -> Result<(), Invalid> {
            let headers: Vec<_> = metadata()
                .encode()
                .into_iter()
                .filter(|(name, _)| *name != dropped)
                .map(|(name, value)| match name == emptied {
                    true => (name, Cow::Borrowed("")),
                    false => (name, value),
                })
                .collect();
            decode(&headers, None).map(|_| ())
        };
        assert_eq!(without(HEADER_PROVIDER, ""), Err(Invalid::NoProvider));
        assert_eq!(without("", HEADER_PROVIDER), Err(Invalid::NoProvider));
        assert_eq!(without(HEADER_TENANT, ""), Err(Invalid::NoTenant));
        assert_eq!(without("", HEADER_TENANT), Err(Invalid::NoTenant));
        assert_eq!(without(HEADER_DELIVERY_ID, ""), Err(Invalid::NoDeliveryId));
        assert_eq!(without("", HEADER_DELIVERY_ID), Err(Invalid::NoDeliveryId));
        assert_eq!(without(HEADER_EVENT_TYPE, ""), Ok(()));
        let not_text = Metadata::decode(
            [
                (HEADER_PROVIDER, Some(&b"shopify"[..])),
                (HEADER_TENANT, Some(&[0xff][..])),
            ],
            Some(0),
        );
        assert_eq!(not_text, Err(Invalid::NoTenant));
    }
}
