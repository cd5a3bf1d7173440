//! Salla: with `X-Salla-Security-Strategy: Signature`, `X-Salla-Signature` is the lowercase hex
//! HMAC-SHA256 of the raw body; with `Token`, `Authorization` carries the secret itself (with or
//! without `Bearer `). The tenant clue is the body's top-level `merchant`, the event name its
//! `event`. Salla sends no delivery id, so the body hash de-duplicates.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Deserialize;

use super::normalize as n;
use super::{Error, Inspection, Keys, Provider, Request};
use crate::topics::event::{Bucket, Customer, Event};

const STRATEGY: &[&str] = &["x-salla-security-strategy"];
const SIGNATURE: &[&str] = &["x-salla-signature"];
const AUTHORIZATION: &[&str] = &["authorization"];

#[derive(Debug)]
pub struct Salla;

/// The two fields the ingress needs; serde skips everything else without building it.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    merchant: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
}

/// Salla's merchant id is a number in its documentation; accept a string too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar<'a> {
    Number(u64),
    Text(#[serde(borrow)] Cow<'a, str>),
}

impl Provider for Salla {
    fn slug(&self) -> &'static str {
        "salla"
    }

    fn clue_field(&self) -> Option<&'static str> {
        Some("merchant_id")
    }

    fn inspect<'a>(&self, request: &Request<'a>) -> Result<Inspection<'a>, Error> {
        let envelope: Envelope<'a> = serde_json::from_slice(request.body).map_err(|_| {
            Error::Malformed("body is not a JSON object with `event` and `merchant`")
        })?;
        let clue = envelope.merchant.map(|m| match m {
            Scalar::Number(n) => Cow::Owned(n.to_string()),
            Scalar::Text(t) => t,
        });
        Ok(Inspection {
            clue,
            event_type: envelope.event,
            delivery_id: None,
            ..Default::default()
        })
    }

    fn verify(&self, request: &Request<'_>, keys: &Keys, _now: SystemTime) -> Result<(), Error> {
        let strategy = request.header(STRATEGY).map(str::trim);
        let signature = request.header(SIGNATURE);
        match (strategy, signature) {
            (Some(s), _) if s.eq_ignore_ascii_case("token") => {
                let token = request
                    .header(AUTHORIZATION)
                    .ok_or(Error::Unauthorized("missing Authorization"))?
                    .trim();
                keys.require_token(
                    strip_bearer(token).as_bytes(),
                    "invalid Authorization token",
                )
            }
            (Some(s), _) if !s.eq_ignore_ascii_case("signature") => {
                Err(Error::Unauthorized("unknown X-Salla-Security-Strategy"))
            }
            (_, None) => Err(Error::Unauthorized("missing X-Salla-Signature")),
            (_, Some(signature)) => {
                let tag = hex::decode(signature.trim()).ok();
                keys.require_hmac(&[request.body], tag.as_deref(), "invalid X-Salla-Signature")
            }
        }
    }

    fn normalize_clue(&self, clue: &str) -> String {
        clue.trim().to_string()
    }

    fn normalize(&self, body: &[u8], seen: &Inspection<'_>) -> Event {
        let name = seen.event_type.as_deref();
        let (bucket, resource) = match name {
            Some("abandoned.cart") => (Bucket::AbandonedCandidate, Some("cart")),
            Some("abandoned.cart.purchased") => (Bucket::OrderCompleted, Some("cart")),
            Some("order.created") => (Bucket::OrderCompleted, Some("order")),
            Some(e) if e.starts_with("abandoned.cart") => (Bucket::Other, Some("cart")),
            Some(e) if e.starts_with("order.") => (Bucket::Other, Some("order")),
            _ => (Bucket::Other, None),
        };
        let mut event = Event::new(self.slug(), name, bucket);
        let json = n::parse(body);
        let data = n::at(&json, &["data"]).cloned().unwrap_or_default();
        event.resource_type = resource.map(str::to_string);
        event.resource_id = n::text(&data, &["id"]);
        match resource {
            // Salla's cart id is what its order events and its purchased event refer back to.
            Some("cart") => event.cart_token = n::text(&data, &["id"]),
            Some("order") => {
                event.order_id = n::text(&data, &["id"]);
                event.cart_token = n::text(&data, &["cart", "id"]);
                event.checkout_token = n::text(&data, &["checkout_id"]);
            }
            _ => {}
        }
        let (value, currency) = total(body, &data);
        event.cart_value = value;
        event.currency = currency.or_else(|| n::currency(&data, &["currency"]));
        event.customer = customer(&data);
        event.item_count = n::item_count(&data, &["items"], "quantity");
        event.recovery_url = match resource {
            Some("cart") => n::url(&data, &["checkout_url"]),
            _ => None,
        };
        event.occurred_at = n::timestamp(&json, &["created_at"]);
        event
    }
}

/// The total and its currency. Totals come as `{"amount": 100, "currency": "SAR"}` or, in the
/// purchased event, flat.
fn total(body: &[u8], data: &serde_json::Value) -> (Option<String>, Option<String>) {
    match n::at(data, &["total"]) {
        Some(serde_json::Value::Object(_)) => (
            n::decimal(body, &["data", "total", "amount"]),
            n::currency(data, &["total", "currency"]),
        ),
        Some(_) => (
            n::decimal(body, &["data", "total"]),
            n::currency(data, &["currency"]),
        ),
        None => (
            n::decimal(body, &["data", "amounts", "total", "amount"]),
            n::currency(data, &["amounts", "total", "currency"]),
        ),
    }
}

/// The customer of `data`; order customers carry the dialling code apart from the number.
fn customer(data: &serde_json::Value) -> Customer {
    let mobile = match (
        n::text(data, &["customer", "mobile_code"]),
        n::text(data, &["customer", "mobile"]),
    ) {
        (Some(code), Some(number)) if !number.starts_with('+') => Some(format!("{code}{number}")),
        (_, number) => number,
    };
    Customer {
        name: n::text(data, &["customer", "name"]).or_else(|| {
            n::full_name(
                n::text(data, &["customer", "first_name"]),
                n::text(data, &["customer", "last_name"]),
            )
        }),
        email: n::email(data, &["customer", "email"]),
        phone: n::phone(
            mobile,
            n::text(data, &["customer", "country_code"]).as_deref(),
        ),
    }
}

fn strip_bearer(token: &str) -> &str {
    match token.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => token[7..].trim_start(),
        _ => token,
    }
}

/// The `X-Salla-Signature` value for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    hex::encode(super::Key::new(secret).sign(&[body]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_headers as headers;
    use crate::providers::Key;
    use http::HeaderMap;

    #[test]
    fn merchant_may_be_a_number_or_a_string() {
        let h = HeaderMap::new();
        let numeric = br#"{"event":"abandoned.cart","merchant":1234509876,"data":{"id":1}}"#;
        let seen = Salla.inspect(&Request::new(&h, numeric)).unwrap();
        assert_eq!(seen.clue.as_deref(), Some("1234509876"));
        assert_eq!(seen.event_type.as_deref(), Some("abandoned.cart"));
        assert_eq!(seen.delivery_id, None);
        let text = br#"{"merchant":"77","event":"order.created"}"#;
        assert_eq!(
            Salla
                .inspect(&Request::new(&h, text))
                .unwrap()
                .clue
                .as_deref(),
            Some("77")
        );
    }

    #[test]
    fn non_json_body_is_malformed() {
        let h = HeaderMap::new();
        assert!(matches!(
            Salla.inspect(&Request::new(&h, b"merchant=1")),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn token_strategy_accepts_bare_and_bearer_tokens() {
        let keys = Keys::new(Key::new(b"tok"), None);
        let now = std::time::UNIX_EPOCH;
        for auth in ["tok", "Bearer tok", "bearer  tok"] {
            let h = headers(&[
                ("x-salla-security-strategy", "Token"),
                ("authorization", auth),
            ]);
            assert!(
                Salla.verify(&Request::new(&h, b"{}"), &keys, now).is_ok(),
                "{auth}"
            );
        }
        let h = headers(&[
            ("x-salla-security-strategy", "Token"),
            ("authorization", "Bearer nope"),
        ]);
        assert!(Salla.verify(&Request::new(&h, b"{}"), &keys, now).is_err());
    }

    #[test]
    fn signature_strategy_is_the_default() {
        let keys = Keys::new(Key::new(b"sec"), None);
        let now = std::time::UNIX_EPOCH;
        let h = headers(&[("x-salla-signature", &sign(b"sec", b"{}"))]);
        assert!(Salla.verify(&Request::new(&h, b"{}"), &keys, now).is_ok());
        // A token where a signature is expected authenticates nothing.
        let h = headers(&[("authorization", "sec")]);
        assert!(Salla.verify(&Request::new(&h, b"{}"), &keys, now).is_err());
    }
}
