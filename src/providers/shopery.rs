//! Shopery: every delivery carries the endpoint secret configured in Shopery's back office in
//! `X-Shopery-Secret` (compared in constant time; there is no signature over the body).
//! Deliveries carry no store clue, so the URL's integration key names the integration. The event
//! name (`order-created`, …) is the body's `event`, the delivery id its `id`.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::normalize as n;
use super::payload::{self, Items, Object, Raw, Stamp, Text};
use super::{Error, Inspection, Keys, Provider, Request, TestFlags};
use crate::topics::event::{Bucket, Customer, Event};

const SECRET: &[&str] = &["x-shopery-secret"];

#[derive(Debug)]
pub struct Shopery;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    test: Option<&'a RawValue>,
    #[serde(borrow, default)]
    is_test: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sample: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    fn test_flags(&self) -> TestFlags<'a> {
        TestFlags {
            test: self.test,
            is_test: self.is_test,
            sample: self.sample,
        }
    }
}

impl Provider for Shopery {
    fn slug(&self) -> &'static str {
        "shopery"
    }

    /// "a five-second timeout for the entire request" (Shopery's webhooks overview).
    fn answer_deadline(&self) -> Option<Duration> {
        Some(Duration::from_secs(5))
    }

    fn clue_field(&self) -> Option<&'static str> {
        None
    }

    fn inspect<'a>(&self, request: &Request<'a>) -> Result<Inspection<'a>, Error> {
        // The back office's Test URL "will try to connect to your endpoint and will expect a
        // HTTP 200": a request without a body is that connection test.
        if request.body.trim_ascii().is_empty() {
            return Ok(Inspection {
                test: true,
                ..Default::default()
            });
        }
        let envelope: Envelope<'a> = serde_json::from_slice(request.body)
            .map_err(|_| Error::Malformed("body is not a JSON object"))?;
        Ok(Inspection {
            clue: None,
            test: super::test_marks(envelope.event.as_deref(), &envelope.test_flags()),
            event_type: envelope.event,
            // The body's `id` is the resource's (an order receives `orders-created`, then
            // `orders-updated` with the same id). Shopery's guide: "detect duplicate webhook
            // events by comparing the payload". The body's digest is the delivery's identity.
            delivery_id: None,
            ..Default::default()
        })
    }

    fn verify(&self, request: &Request<'_>, keys: &Keys, _now: SystemTime) -> Result<(), Error> {
        let secret = request
            .header(SECRET)
            .ok_or(Error::Unauthorized("missing X-Shopery-Secret"))?;
        keys.require_token(secret.as_bytes(), "invalid X-Shopery-Secret")
    }

    fn normalize(&self, body: &[u8], seen: &Inspection<'_>) -> Event {
        let name = seen.event_type.as_deref();
        let (bucket, resource) = match name {
            // Shopery's guide spells its events both ways: `orders-created` in its overview,
            // `order-created` in its API's example.
            Some("order-created" | "orders-created") => (Bucket::OrderCompleted, Some("order")),
            Some(e) if e.starts_with("order-") || e.starts_with("orders-") => {
                (Bucket::Other, Some("order"))
            }
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
        // Shopery's payload is "the order"; its fields are not published, so only what the
        // common names give is read.
        match json.data.is_object {
            true => map(&mut event, resource, &json.data, &json.top),
            false => map(&mut event, resource, &json.top, &json.top),
        }
        event
    }
}

payload::envelope! {
    /// The body: the order, at the top or under `data`.
    struct Payload<'a> {
        top: Data<'a, 1>,
        data: Object<Data<'a, 2>>,
    }
}

payload::members! {
    /// The order's members read by their common names, nested in `DEPTH` containers.
    struct Data<'a, const DEPTH: usize> {
        id: Text<'a>,
        total: Raw<'a, DEPTH>,
        currency: Text<'a>,
        customer: Object<Person<'a>>,
        items: Items,
        created_at: Stamp<'a>,
    }
}

payload::members! {
    /// The order's customer.
    struct Person<'a> {
        name: Text<'a>,
        email: Text<'a>,
        phone: Text<'a>,
    }
}

/// The order's fields (`data`, within the body `top`) into `event`.
fn map<const DEPTH: usize>(
    event: &mut Event,
    resource: Option<&str>,
    data: &Data<'_, DEPTH>,
    top: &Data<'_, 1>,
) {
    event.resource_id = data.id.owned().or_else(|| top.id.owned());
    if resource == Some("order") {
        event.order_id = event.resource_id.clone();
        event.cart_value = data.total.amount();
        event.currency = n::currency_code(data.currency.get());
        event.customer = Customer {
            name: data.customer.name.owned(),
            email: n::email_address(data.customer.email.get()),
            phone: n::phone(data.customer.phone.owned(), None),
        };
        event.item_count = data.items.0;
    }
    event.occurred_at = n::utc(&data.created_at).or_else(|| n::utc(&top.created_at));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_headers as headers;
    use crate::providers::Key;
    use http::HeaderMap;

    const BODY: &[u8] =
        br#"{"id":"ord_01HA4XCG60","event":"order-created","data":{"total":"10.00"}}"#;

    #[test]
    fn an_empty_body_is_the_test_urls_connection_check_and_marked_bodies_are_tests() {
        let h = HeaderMap::new();
        assert!(Shopery.inspect(&Request::new(&h, b"")).unwrap().test);
        assert!(Shopery.inspect(&Request::new(&h, b" \n")).unwrap().test);
        assert!(!Shopery.inspect(&Request::new(&h, BODY)).unwrap().test);
        let marked = br#"{"id":"ord_1","event":"order-created","test":true}"#;
        assert!(Shopery.inspect(&Request::new(&h, marked)).unwrap().test);
        // A flag of another type neither marks a test nor makes the body unreadable.
        let odd = br#"{"id":"ord_1","event":"order-created","test":"no","sample":{"a":1}}"#;
        assert!(!Shopery.inspect(&Request::new(&h, odd)).unwrap().test);
    }

    #[test]
    fn the_event_comes_from_the_body_and_there_is_no_clue_or_delivery_id() {
        let h = HeaderMap::new();
        let seen = Shopery.inspect(&Request::new(&h, BODY)).unwrap();
        assert_eq!(seen.clue, None);
        assert_eq!(seen.event_type.as_deref(), Some("order-created"));
        assert_eq!(
            seen.delivery_id, None,
            "the body id is the order's: the body identifies"
        );
        assert!(matches!(
            Shopery.inspect(&Request::new(&HeaderMap::new(), b"[")),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn only_the_exact_secret_verifies() {
        let keys = Keys::new(Key::new(b"shopery-secret"), None);
        let now = std::time::UNIX_EPOCH;
        let ok = headers(&[("x-shopery-secret", "shopery-secret")]);
        assert_eq!(Shopery.verify(&Request::new(&ok, BODY), &keys, now), Ok(()));
        let wrong = headers(&[("x-shopery-secret", "Shopery-secret")]);
        assert!(matches!(
            Shopery.verify(&Request::new(&wrong, BODY), &keys, now),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(
            Shopery.verify(&Request::new(&HeaderMap::new(), BODY), &keys, now),
            Err(Error::Unauthorized(_))
        ));
    }
}
