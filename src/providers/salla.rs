//! Salla: with `X-Salla-Security-Strategy: Signature`, `X-Salla-Signature` is the lowercase hex
//! HMAC-SHA256 of the raw body; with `Token`, `Authorization` carries the secret itself (with or
//! without `Bearer `). The tenant clue is the body's top-level `merchant`, the event name its
//! `event`. Salla sends no delivery id, so the body hash de-duplicates.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Deserialize;

use super::normalize as n;
use super::payload::{self, Items, Object, Raw, Stamp, Text};
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
    fn app_signs_its_stores(&self) -> bool {
        true
    }

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
        event.resource_type = resource.map(str::to_string);
        let Some(json) = payload::parse::<Payload<'_>>(body) else {
            // Not a JSON value: only an amount the body's text still holds.
            event.cart_value = n::decimal(body, &["data", "amounts", "total", "amount"]);
            return event;
        };
        let data = &json.data;
        event.resource_id = data.id.owned();
        match resource {
            // Salla's cart id is what its order events and its purchased event refer back to.
            Some("cart") => event.cart_token = data.id.owned(),
            Some("order") => {
                event.order_id = data.id.owned();
                event.cart_token = data.cart.id.owned();
                event.checkout_token = data.checkout_id.owned();
            }
            _ => {}
        }
        let (value, currency) = total(data);
        event.cart_value = value;
        event.currency = currency.or_else(|| n::currency_code(data.currency.get()));
        event.customer = customer(&data.customer);
        event.item_count = data.items.0;
        event.recovery_url = match resource {
            Some("cart") => n::web_url(data.checkout_url.get()),
            _ => None,
        };
        event.occurred_at = n::utc(&json.created_at);
        event
    }
}

payload::members! {
    /// What the mapping reads of a delivery.
    struct Payload<'a> {
        data: Object<Data<'a>>,
        created_at: Stamp<'a>,
    }
}

payload::members! {
    /// The cart or order.
    struct Data<'a> {
        id: Text<'a>,
        cart: Object<Cart<'a>>,
        checkout_id: Text<'a>,
        total: Raw<'a, 2>,
        amounts: Object<Amounts<'a>>,
        currency: Text<'a>,
        customer: Object<Person<'a>>,
        items: Items,
        checkout_url: Text<'a>,
    }
}

payload::members! {
    /// The cart an order refers to.
    struct Cart<'a> {
        id: Text<'a>,
    }
}

payload::members! {
    /// An order's amounts.
    struct Amounts<'a> {
        total: Raw<'a, 3>,
    }
}

payload::members! {
    /// `{"amount": 100, "currency": "SAR"}`, read from its own text.
    struct Money<'a> {
        amount: Raw<'a, 1>,
        currency: Text<'a>,
    }
}

payload::members! {
    /// The customer.
    struct Person<'a> {
        name: Text<'a>,
        first_name: Text<'a>,
        last_name: Text<'a>,
        email: Text<'a>,
        mobile: Text<'a>,
        mobile_code: Text<'a>,
        country_code: Text<'a>,
    }
}

/// The total and its currency. Totals come as `{"amount": 100, "currency": "SAR"}` or, in the
/// purchased event, flat.
fn total(data: &Data<'_>) -> (Option<String>, Option<String>) {
    match data.total.0 {
        Some(total) if total.get().starts_with('{') => {
            let total = money(total);
            (
                total.amount.amount(),
                n::currency_code(total.currency.get()),
            )
        }
        Some(_) => (data.total.amount(), n::currency_code(data.currency.get())),
        None => match data.amounts.total.0 {
            Some(total) => {
                let total = money(total);
                (
                    total.amount.amount(),
                    n::currency_code(total.currency.get()),
                )
            }
            None => (None, None),
        },
    }
}

/// An amount object, from its text (checked already, where it was found).
fn money(raw: &serde_json::value::RawValue) -> Object<Money<'_>> {
    serde_json::from_str(raw.get()).unwrap_or_default()
}

/// The customer; order customers carry the dialling code apart from the number.
fn customer(person: &Person<'_>) -> Customer {
    let mobile = match (person.mobile_code.owned(), person.mobile.owned()) {
        (Some(code), Some(number)) if !number.starts_with('+') => Some(format!("{code}{number}")),
        (_, number) => number,
    };
    Customer {
        name: person
            .name
            .owned()
            .or_else(|| n::full_name(person.first_name.owned(), person.last_name.owned())),
        email: n::email_address(person.email.get()),
        phone: n::phone(mobile, person.country_code.get()),
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
