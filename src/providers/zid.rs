//! Zid: when `X-Zid-Signature` is present it must be the hex HMAC-SHA256 of the raw body (the
//! scheme partner guides describe); otherwise `Authorization: Basic …` must carry the
//! credentials given when the webhook was subscribed (Zid's own API: `username`/`password` on
//! `POST /v1/managers/webhooks`).
//!
//! One configured secret serves both: it is the HMAC key, and the expected Basic credentials
//! `username:password` (the decoded header), compared in constant time. The tenant clue is the
//! URL's integration key, else the body's `store_id`; the event name is the body's `event` when
//! there is one. Zid sends no delivery id, so the body hash de-duplicates.

use std::borrow::Cow;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Deserialize;

use super::normalize as n;
use super::payload::{self, Items, Object, Raw, Stamp, Text};
use super::{text, Error, Inspection, Keys, Provider, Request, Scalar};
use crate::topics::event::{Bucket, Customer, Event};

const SIGNATURE: &[&str] = &["x-zid-signature"];
const AUTHORIZATION: &[&str] = &["authorization"];

#[derive(Debug)]
pub struct Zid;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    store_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
}

impl Provider for Zid {
    fn slug(&self) -> &'static str {
        "zid"
    }

    fn clue_field(&self) -> Option<&'static str> {
        Some("store_id")
    }

    fn inspect<'a>(&self, request: &Request<'a>) -> Result<Inspection<'a>, Error> {
        let envelope: Envelope<'a> = serde_json::from_slice(request.body)
            .map_err(|_| Error::Malformed("body is not a JSON object"))?;
        Ok(Inspection {
            clue: text(envelope.store_id),
            event_type: envelope.event,
            delivery_id: None,
            ..Default::default()
        })
    }

    fn verify(&self, request: &Request<'_>, keys: &Keys, _now: SystemTime) -> Result<(), Error> {
        if let Some(signature) = request.header(SIGNATURE) {
            let tag = hex::decode(signature.trim()).ok();
            return keys.require_hmac(&[request.body], tag.as_deref(), "invalid X-Zid-Signature");
        }
        let authorization = request
            .header(AUTHORIZATION)
            .ok_or(Error::Unauthorized(
                "missing X-Zid-Signature or Authorization",
            ))?
            .trim();
        let credentials = basic_credentials(authorization).ok_or(Error::Unauthorized(
            "Authorization is not Basic credentials",
        ))?;
        keys.require_token(&credentials, "invalid Authorization credentials")
    }

    fn normalize_clue(&self, clue: &str) -> String {
        clue.trim().to_string()
    }

    fn normalize(&self, body: &[u8], seen: &Inspection<'_>) -> Event {
        let name = seen.event_type.as_deref();
        let (bucket, resource) = match name {
            Some("order.create") => (Bucket::OrderCompleted, Some("order")),
            Some("abandoned_cart.created") => (Bucket::AbandonedCandidate, Some("cart")),
            Some("abandoned_cart.completed") => (Bucket::OrderCompleted, Some("cart")),
            Some(e) if e.starts_with("order.") => (Bucket::Other, Some("order")),
            Some(e) if e.starts_with("abandoned_cart.") => (Bucket::Other, Some("cart")),
            _ => (Bucket::Other, None),
        };
        let mut event = Event::new(self.slug(), name, bucket);
        event.resource_type = resource.map(str::to_string);
        let Some(json) = payload::parse::<Payload<'_>>(body) else {
            // Not a JSON value: only an amount the body's text still holds.
            let total = match resource {
                Some("cart") => "cart_total",
                _ => "order_total",
            };
            event.cart_value = n::decimal(body, &[total]);
            return event;
        };
        // Order events carry the order schema, possibly under "order" (as the REST API does).
        match json.order.is_object {
            true => map(&mut event, resource, &json.order),
            false => map(&mut event, resource, &json.top),
        }
        event
    }
}

payload::envelope! {
    /// The body: the order schema, at the top or under `order`.
    struct Payload<'a> {
        top: Data<'a, 1>,
        order: Object<Data<'a, 2>>,
    }
}

payload::members! {
    /// An order or abandoned cart, nested in `DEPTH` containers.
    struct Data<'a, const DEPTH: usize> {
        id: Text<'a>,
        cart_id: Text<'a>,
        order_id: Text<'a>,
        url: Text<'a>,
        cart_total: Raw<'a, DEPTH>,
        order_total: Raw<'a, DEPTH>,
        products: Items,
        customer_name: Text<'a>,
        customer_email: Text<'a>,
        customer_mobile: Text<'a>,
        customer: Object<Person<'a>>,
        currency_code: Text<'a>,
        updated_at: Stamp<'a>,
        created_at: Stamp<'a>,
    }
}

payload::members! {
    /// An order's customer.
    struct Person<'a> {
        name: Text<'a>,
        email: Text<'a>,
        mobile: Text<'a>,
    }
}

/// The order or cart's fields into `event`.
fn map<const DEPTH: usize>(event: &mut Event, resource: Option<&str>, data: &Data<'_, DEPTH>) {
    event.resource_id = data.id.owned();
    match resource {
        Some("cart") => {
            event.cart_token = payload::first(&[&data.cart_id, &data.id]);
            event.order_id = data.order_id.owned();
            event.recovery_url = n::web_url(data.url.get());
            event.cart_value = data.cart_total.amount();
            event.customer = Customer {
                name: data.customer_name.owned(),
                email: n::email_address(data.customer_email.get()),
                phone: n::phone(data.customer_mobile.owned(), None),
            };
        }
        _ => {
            event.order_id = data.id.owned().filter(|_| resource == Some("order"));
            event.cart_value = data.order_total.amount();
            event.item_count = data.products.0;
            event.customer = Customer {
                name: data.customer.name.owned(),
                email: n::email_address(data.customer.email.get()),
                phone: n::phone(data.customer.mobile.owned(), None),
            };
        }
    }
    event.currency = n::currency_code(data.currency_code.get());
    // Zid's created_at/updated_at carry no zone ("2026-01-30 15:56:02"): left null.
    event.occurred_at = n::utc(&data.updated_at).or_else(|| n::utc(&data.created_at));
}

/// The decoded `username:password` of an `Authorization: Basic …` value.
fn basic_credentials(authorization: &str) -> Option<Vec<u8>> {
    let (scheme, encoded) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    BASE64.decode(encoded.trim()).ok()
}

/// The `X-Zid-Signature` value for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    hex::encode(super::Key::new(secret).sign(&[body]))
}

/// The `Authorization` value Zid sends for credentials `username:password`.
pub fn basic(credentials: &str) -> String {
    format!("Basic {}", BASE64.encode(credentials))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_headers as headers;
    use crate::providers::Key;
    use http::HeaderMap;

    const BODY: &[u8] = br#"{"id":39018491,"store_id":1,"event":"order.create"}"#;

    fn keys() -> Keys {
        Keys::new(Key::new(b"user:pass"), None)
    }

    fn verify(h: &HeaderMap, body: &[u8]) -> Result<(), Error> {
        Zid.verify(&Request::new(h, body), &keys(), std::time::UNIX_EPOCH)
    }

    #[test]
    fn store_id_and_event_come_from_the_body() {
        let h = HeaderMap::new();
        let seen = Zid.inspect(&Request::new(&h, BODY)).unwrap();
        assert_eq!(seen.clue.as_deref(), Some("1"));
        assert_eq!(seen.event_type.as_deref(), Some("order.create"));
        assert_eq!(seen.delivery_id, None);
        let seen = Zid
            .inspect(&Request::new(&h, br#"{"store_id":"s-9"}"#))
            .unwrap();
        assert_eq!(seen.clue.as_deref(), Some("s-9"));
        assert_eq!(seen.event_type, None);
    }

    #[test]
    fn non_json_body_is_malformed() {
        let h = HeaderMap::new();
        assert!(matches!(
            Zid.inspect(&Request::new(&h, b"store_id=1")),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn a_signature_over_the_body_verifies() {
        let h = headers(&[("x-zid-signature", &sign(b"user:pass", BODY))]);
        assert_eq!(verify(&h, BODY), Ok(()));
        assert!(matches!(
            verify(&h, br#"{"id":39018492,"store_id":1}"#),
            Err(Error::Unauthorized(_))
        ));
        let h = headers(&[("x-zid-signature", &sign(b"other", BODY))]);
        assert!(matches!(verify(&h, BODY), Err(Error::Unauthorized(_))));
    }

    #[test]
    fn a_present_signature_is_never_bypassed_by_basic_credentials() {
        let h = headers(&[
            ("x-zid-signature", &sign(b"other", BODY)),
            ("authorization", &basic("user:pass")),
        ]);
        assert!(matches!(verify(&h, BODY), Err(Error::Unauthorized(_))));
    }

    #[test]
    fn basic_credentials_must_equal_the_secret() {
        let h = headers(&[("authorization", &basic("user:pass"))]);
        assert_eq!(verify(&h, BODY), Ok(()));
        for wrong in [
            basic("user:pas"),
            basic("user"),
            "Bearer user:pass".to_string(),
            "Basic ***".to_string(),
        ] {
            let h = headers(&[("authorization", &wrong)]);
            assert!(
                matches!(verify(&h, BODY), Err(Error::Unauthorized(_))),
                "{wrong}"
            );
        }
        assert!(matches!(
            verify(&HeaderMap::new(), BODY),
            Err(Error::Unauthorized(_))
        ));
    }
}
