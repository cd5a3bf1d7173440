//! Sprusify: `X-Spru-Signature` is the HMAC-SHA256 of the raw body under the app secret; its
//! guide does not say how it is encoded, so both lowercase/uppercase hex and base64 are
//! accepted. The tenant clue is the body's `store_id`, the event name its `event` (or `type`),
//! and the body's `id` the delivery id (its guide asks for idempotency by that id).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Deserialize;

use super::normalize as n;
use super::payload::{self, Raw, Stamp, Text};
use super::{text, Error, Inspection, Keys, Provider, Request, Scalar};
use crate::topics::event::{Bucket, Event};

const SIGNATURE: &[&str] = &["x-spru-signature"];

#[derive(Debug)]
pub struct Sprusify;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    store_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
}

impl Provider for Sprusify {
    fn slug(&self) -> &'static str {
        "sprusify"
    }

    /// "returns HTTP 200 quickly (within 10s)" (Sprusify's webhooks guide).
    fn answer_deadline(&self) -> Option<Duration> {
        Some(Duration::from_secs(10))
    }

    fn clue_field(&self) -> Option<&'static str> {
        Some("store_id")
    }

    fn inspect<'a>(&self, request: &Request<'a>) -> Result<Inspection<'a>, Error> {
        let envelope: Envelope<'a> = serde_json::from_slice(request.body)
            .map_err(|_| Error::Malformed("body is not a JSON object"))?;
        Ok(Inspection {
            clue: text(envelope.store_id),
            event_type: envelope.event.or(envelope.kind),
            // The body's `id` names the conversion or referral, not the delivery: a later event
            // on the same one carries it too. A retry re-sends the same body, so the body's
            // digest is the delivery's identity.
            delivery_id: None,
            ..Default::default()
        })
    }

    fn verify(&self, request: &Request<'_>, keys: &Keys, _now: SystemTime) -> Result<(), Error> {
        let signature = request
            .header(SIGNATURE)
            .ok_or(Error::Unauthorized("missing X-Spru-Signature"))?
            .trim();
        keys.require_hmac(
            &[request.body],
            decode(signature).as_deref(),
            "invalid X-Spru-Signature",
        )
    }

    fn normalize_clue(&self, clue: &str) -> String {
        clue.trim().to_string()
    }

    fn normalize(&self, body: &[u8], seen: &Inspection<'_>) -> Event {
        let name = seen.event_type.as_deref();
        // A conversion is an order attributed to an affiliate; Sprusify's order.created sample
        // describes the same order.
        let (bucket, resource) = match name {
            Some("conversion.created" | "order.created") => (Bucket::OrderCompleted, Some("order")),
            _ => (Bucket::Other, None),
        };
        let mut event = Event::new(self.slug(), name, bucket);
        event.resource_type = resource.map(str::to_string);
        let Some(json) = payload::parse::<Payload<'_>>(body) else {
            // Not a JSON value: only an amount the body's text still holds.
            if resource == Some("order") {
                event.cart_value = n::decimal(body, &["total"]);
            }
            return event;
        };
        event.resource_id = json.id.owned();
        if resource == Some("order") {
            event.order_id = payload::first(&[&json.order_id, &json.id]);
            event.cart_value = json.total.amount();
            event.currency = n::currency_code(json.currency.get());
            event.customer.email = n::email_address(json.customer_email.get());
        }
        event.occurred_at = n::utc(&json.created_at);
        event
    }
}

payload::members! {
    /// What the mapping reads of a conversion or an order.
    struct Payload<'a> {
        id: Text<'a>,
        order_id: Text<'a>,
        total: Raw<'a, 1>,
        currency: Text<'a>,
        customer_email: Text<'a>,
        created_at: Stamp<'a>,
    }
}

/// The tag of a hex or base64 signature. A 64-character value is hex: base64 of 32 bytes is
/// 44 characters, so the two never collide.
fn decode(signature: &str) -> Option<Vec<u8>> {
    if signature.len() == 64 {
        hex::decode(signature).ok()
    } else {
        BASE64.decode(signature).ok()
    }
}

/// The `X-Spru-Signature` value (hex) for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    hex::encode(super::Key::new(secret).sign(&[body]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_headers as headers;
    use crate::providers::Key;
    use http::HeaderMap;

    const BODY: &[u8] = br#"{"id":"12345","store_id":"store_abc","event":"conversion.created","total":99.95,"affiliate_id":"aff_678","coupons":["AFF10"]}"#;

    fn verify(signature: &str, body: &[u8]) -> Result<(), Error> {
        let keys = Keys::new(Key::new(b"spru"), None);
        let h = headers(&[("x-spru-signature", signature)]);
        Sprusify.verify(&Request::new(&h, body), &keys, std::time::UNIX_EPOCH)
    }

    #[test]
    fn store_id_and_event_come_from_the_body() {
        let h = HeaderMap::new();
        let seen = Sprusify.inspect(&Request::new(&h, BODY)).unwrap();
        assert_eq!(seen.clue.as_deref(), Some("store_abc"));
        assert_eq!(seen.event_type.as_deref(), Some("conversion.created"));
        assert_eq!(seen.delivery_id, None, "the body id is the conversion's");
        let typed = br#"{"id":7,"store_id":9,"type":"click.created"}"#;
        let seen = Sprusify.inspect(&Request::new(&h, typed)).unwrap();
        assert_eq!(seen.event_type.as_deref(), Some("click.created"));
        assert_eq!(seen.clue.as_deref(), Some("9"));
        assert!(matches!(
            Sprusify.inspect(&Request::new(&h, b"")),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn hex_and_base64_signatures_both_verify() {
        let tag = Key::new(b"spru").sign(&[BODY]);
        assert_eq!(verify(&hex::encode(tag), BODY), Ok(()));
        assert_eq!(verify(&hex::encode_upper(tag), BODY), Ok(()));
        assert_eq!(verify(&BASE64.encode(tag), BODY), Ok(()));
    }

    #[test]
    fn tampered_bodies_wrong_secrets_and_missing_signatures_are_unauthorized() {
        let tag = Key::new(b"spru").sign(&[BODY]);
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        assert!(matches!(
            verify(&hex::encode(tag), &tampered),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(
            verify(&sign(b"other", BODY), BODY),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(verify("!!", BODY), Err(Error::Unauthorized(_))));
        let keys = Keys::new(Key::new(b"spru"), None);
        assert!(matches!(
            Sprusify.verify(
                &Request::new(&HeaderMap::new(), BODY),
                &keys,
                std::time::UNIX_EPOCH
            ),
            Err(Error::Unauthorized(_))
        ));
    }
}
