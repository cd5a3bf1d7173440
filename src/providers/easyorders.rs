//! EasyOrders: every delivery carries the integration's generated secret in a `secret` header;
//! there is no signature and no store clue, so the secret itself names the integration. The
//! ingress finds it by [`secret_clue`] (a keyed digest: the look-up leaks nothing about the
//! secret), then the secret is compared in constant time with the integration's keys.
//!
//! An order-created delivery is the bare order object (no event field: it is `order.created`);
//! a status change is `{"event_type":"order-status-update","order_id":…,"new_status":…}`. The
//! delivery id is the order id, plus the new status for status changes.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Deserialize;

use super::normalize as n;
use super::payload::{self, Items, Raw, Stamp, Text};
use super::{secret_clue, Error, Inspection, Keys, Provider, Request, SECRET_CLUE};
use crate::topics::event::{Bucket, Customer, Event};

const SECRET: &[&str] = &["secret"];

/// The event name of a bare order body.
pub const ORDER_CREATED: &str = "order.created";

#[derive(Debug)]
pub struct EasyOrders;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
}

impl Provider for EasyOrders {
    fn slug(&self) -> &'static str {
        "easyorders"
    }

    fn clue_field(&self) -> Option<&'static str> {
        Some(SECRET_CLUE)
    }

    fn inspect<'a>(&self, request: &Request<'a>) -> Result<Inspection<'a>, Error> {
        // Without the secret nothing names the integration; that is an authentication failure
        // (401), not a malformed request.
        let secret = request
            .header(SECRET)
            .ok_or(Error::Unauthorized("missing secret header"))?;
        let envelope: Envelope<'a> = serde_json::from_slice(request.body)
            .map_err(|_| Error::Malformed("body is not a JSON object"))?;
        let event_type = envelope.event_type.unwrap_or(Cow::Borrowed(ORDER_CREATED));
        Ok(Inspection {
            clue: Some(Cow::Owned(secret_clue(secret.trim().as_bytes()))),
            event_type: Some(event_type),
            // EasyOrders sends no delivery id, and the order id names the order, not the
            // change (a status update, then another, carry the same one): a retry re-sends the
            // same body, so the body's digest is the delivery's identity.
            delivery_id: None,
            ..Default::default()
        })
    }

    fn verify(&self, request: &Request<'_>, keys: &Keys, _now: SystemTime) -> Result<(), Error> {
        let secret = request
            .header(SECRET)
            .ok_or(Error::Unauthorized("missing secret header"))?;
        keys.require_token(secret.trim().as_bytes(), "invalid secret")
    }

    fn normalize(&self, body: &[u8], seen: &Inspection<'_>) -> Event {
        let name = seen.event_type.as_deref();
        let bucket = match name {
            Some(ORDER_CREATED) => Bucket::OrderCompleted,
            _ => Bucket::Other,
        };
        let mut event = Event::new(self.slug(), name, bucket);
        event.resource_type = Some("order".to_string());
        let Some(json) = payload::parse::<Payload<'_>>(body) else {
            // Not a JSON value: only an amount the body's text still holds.
            event.cart_value = n::decimal(body, &["total_cost"]);
            return event;
        };
        event.order_id = payload::first(&[&json.order_id, &json.id]);
        event.resource_id = event.order_id.clone();
        // EasyOrders states no currency and no phone country: both stay as sent or null.
        event.cart_value = json.total_cost.amount();
        event.item_count = json.cart_items.0;
        event.customer = Customer {
            name: json.full_name.owned(),
            email: n::email_address(json.email.get()),
            phone: n::phone(json.phone.owned(), None),
        };
        event.occurred_at = n::utc(&json.updated_at).or_else(|| n::utc(&json.created_at));
        event
    }
}

payload::members! {
    /// What the mapping reads of an order or a status change.
    struct Payload<'a> {
        order_id: Text<'a>,
        id: Text<'a>,
        total_cost: Raw<'a, 1>,
        cart_items: Items,
        full_name: Text<'a>,
        email: Text<'a>,
        phone: Text<'a>,
        updated_at: Stamp<'a>,
        created_at: Stamp<'a>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_headers as headers;
    use crate::providers::Key;
    use http::HeaderMap;

    const ORDER: &[u8] = br#"{"id":"2692e31f","store_id":"29bafd4f","status":"pending"}"#;
    const STATUS: &[u8] = br#"{"event_type":"order-status-update","order_id":"2692e31f","old_status":"pending","new_status":"paid"}"#;

    #[test]
    fn a_bare_order_is_order_created_identified_by_its_body() {
        let h = headers(&[("secret", "s3cret")]);
        let seen = EasyOrders.inspect(&Request::new(&h, ORDER)).unwrap();
        assert_eq!(seen.event_type.as_deref(), Some("order.created"));
        assert_eq!(
            seen.delivery_id, None,
            "the order id names the order, not the delivery"
        );
        assert_eq!(seen.clue.as_deref(), Some(&*secret_clue(b"s3cret")));
    }

    #[test]
    fn a_status_change_is_identified_by_its_body() {
        let h = headers(&[("secret", "s3cret")]);
        let seen = EasyOrders.inspect(&Request::new(&h, STATUS)).unwrap();
        assert_eq!(seen.event_type.as_deref(), Some("order-status-update"));
        assert_eq!(seen.delivery_id, None);
    }

    #[test]
    fn the_secret_is_the_clue_and_never_appears_in_it() {
        let h = headers(&[("secret", "s3cret")]);
        let seen = EasyOrders.inspect(&Request::new(&h, ORDER)).unwrap();
        assert!(!seen.clue.unwrap().contains("s3cret"));
    }

    #[test]
    fn a_missing_secret_is_unauthorized_and_a_non_json_body_malformed() {
        let none = HeaderMap::new();
        assert!(matches!(
            EasyOrders.inspect(&Request::new(&none, ORDER)),
            Err(Error::Unauthorized(_))
        ));
        let h = headers(&[("secret", "s3cret")]);
        assert!(matches!(
            EasyOrders.inspect(&Request::new(&h, b"id=1")),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn only_the_exact_secret_verifies() {
        let keys = Keys::new(Key::new(b"s3cret"), Some(Key::new(b"old")));
        let now = std::time::UNIX_EPOCH;
        for (secret, ok) in [
            ("s3cret", true),
            ("old", true),
            ("s3cre", false),
            ("x", false),
        ] {
            let h = headers(&[("secret", secret)]);
            assert_eq!(
                EasyOrders
                    .verify(&Request::new(&h, ORDER), &keys, now)
                    .is_ok(),
                ok,
                "{secret}"
            );
        }
        assert!(matches!(
            EasyOrders.verify(&Request::new(&HeaderMap::new(), ORDER), &keys, now),
            Err(Error::Unauthorized(_))
        ));
    }
}
