//! Shopify: `X-Shopify-Hmac-Sha256` is the base64 HMAC-SHA256 of the raw body under the app's
//! client secret; the previous secret stays valid during a rotation. The shop domain header names
//! the tenant. Shopify's newer event deliveries use the same headers without the `X-` prefix.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::normalize as n;
use super::payload::{self, Items, Object, Raw, Stamp, Text};
use super::{Error, Inspection, Keys, Provider, Request};
use crate::topics::event::{Bucket, Customer, Event};

const HMAC: &[&str] = &["x-shopify-hmac-sha256", "shopify-hmac-sha256"];
const SHOP_DOMAIN: &[&str] = &["x-shopify-shop-domain", "shopify-shop-domain"];
const TOPIC: &[&str] = &["x-shopify-topic", "shopify-topic"];
const DELIVERY_ID: &[&str] = &[
    "x-shopify-webhook-id",
    "shopify-webhook-id",
    "x-shopify-event-id",
    "shopify-event-id",
];

#[derive(Debug)]
pub struct Shopify;

impl Provider for Shopify {
    fn app_signs_its_stores(&self) -> bool {
        true
    }

    fn slug(&self) -> &'static str {
        "shopify"
    }

    /// Shopify cuts a delivery at five seconds (its webhooks documentation).
    fn answer_deadline(&self) -> Option<Duration> {
        Some(Duration::from_secs(5))
    }

    fn clue_field(&self) -> Option<&'static str> {
        Some("shop_domain")
    }

    fn inspect<'a>(&self, request: &Request<'a>) -> Result<Inspection<'a>, Error> {
        let clue = request.header(SHOP_DOMAIN).map(|domain| {
            if domain.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(domain.to_ascii_lowercase())
            } else {
                Cow::Borrowed(domain)
            }
        });
        Ok(Inspection {
            clue,
            event_type: request.header(TOPIC).map(Cow::Borrowed),
            delivery_id: request.header(DELIVERY_ID).map(Cow::Borrowed),
            ..Default::default()
        })
    }

    fn verify(&self, request: &Request<'_>, keys: &Keys, _now: SystemTime) -> Result<(), Error> {
        let header = request
            .header(HMAC)
            .ok_or(Error::Unauthorized("missing X-Shopify-Hmac-Sha256"))?;
        let tag = BASE64.decode(header.trim()).ok();
        keys.require_hmac(
            &[request.body],
            tag.as_deref(),
            "invalid X-Shopify-Hmac-Sha256",
        )
    }

    fn normalize_clue(&self, clue: &str) -> String {
        clue.trim().to_ascii_lowercase()
    }

    fn normalize(&self, body: &[u8], seen: &Inspection<'_>) -> Event {
        let topic = seen.event_type.as_deref();
        let resource = topic
            .and_then(|t| t.split('/').next())
            .and_then(|r| match r {
                "checkouts" => Some("checkout"),
                "carts" => Some("cart"),
                "orders" => Some("order"),
                _ => None,
            });
        let mut event = Event::new(self.slug(), topic, bucket(topic));
        event.resource_type = resource.map(str::to_string);
        let Some(json) = payload::parse::<Payload<'_>>(body) else {
            // Not a JSON value: only an amount the body's text still holds.
            event.cart_value = n::decimal(body, &["total_price"]);
            return event;
        };
        event.resource_id = json.id.owned();
        match resource {
            Some("checkout") => {
                event.checkout_token = json.token.owned();
                event.cart_token = json.cart_token.owned();
                event.order_id = json.order_id.owned();
                event.recovery_url = n::web_url(json.abandoned_checkout_url.get());
            }
            Some("cart") => event.cart_token = json.token.owned(),
            Some("order") => {
                event.order_id = json.id.owned();
                event.checkout_token = json.checkout_token.owned();
                event.cart_token = json.cart_token.owned();
            }
            _ => {}
        }
        event.customer = customer(&json);
        event.cart_value = json.total_price.amount();
        event.currency = n::currency_code(json.currency.get())
            .or_else(|| n::currency_code(json.presentment_currency.get()));
        event.item_count = json.line_items.0;
        event.occurred_at = n::utc(&json.updated_at).or_else(|| n::utc(&json.created_at));
        event
    }
}

payload::members! {
    /// What the mapping reads of a checkout, cart or order.
    struct Payload<'a> {
        id: Text<'a>,
        token: Text<'a>,
        cart_token: Text<'a>,
        checkout_token: Text<'a>,
        order_id: Text<'a>,
        abandoned_checkout_url: Text<'a>,
        total_price: Raw<'a, 1>,
        currency: Text<'a>,
        presentment_currency: Text<'a>,
        line_items: Items,
        updated_at: Stamp<'a>,
        created_at: Stamp<'a>,
        email: Text<'a>,
        contact_email: Text<'a>,
        phone: Text<'a>,
        customer: Object<Person<'a>>,
        billing_address: Object<Person<'a>>,
        shipping_address: Object<Person<'a>>,
    }
}

payload::members! {
    /// A customer or an address.
    struct Person<'a> {
        first_name: Text<'a>,
        last_name: Text<'a>,
        email: Text<'a>,
        phone: Text<'a>,
        country_code: Text<'a>,
        default_address: Object<Address<'a>>,
    }
}

payload::members! {
    /// A customer's default address.
    struct Address<'a> {
        country_code: Text<'a>,
    }
}

/// The customer: named by the order's customer, else its billing or shipping address; their
/// e-mail; their phone, in E.164 when an address gives the country.
fn customer(json: &Payload<'_>) -> Customer {
    let country = payload::first(&[
        &json.billing_address.country_code,
        &json.shipping_address.country_code,
        &json.customer.default_address.country_code,
    ]);
    let name =
        |person: &Person<'_>| n::full_name(person.first_name.owned(), person.last_name.owned());
    Customer {
        name: name(&json.customer)
            .or_else(|| name(&json.billing_address))
            .or_else(|| name(&json.shipping_address)),
        email: n::email_address(json.email.get())
            .or_else(|| n::email_address(json.contact_email.get()))
            .or_else(|| n::email_address(json.customer.email.get())),
        phone: n::phone(
            payload::first(&[
                &json.phone,
                &json.customer.phone,
                &json.billing_address.phone,
                &json.shipping_address.phone,
            ]),
            country.as_deref(),
        ),
    }
}

/// SPEC §4.1: which Shopify topics are cart activity and which are completed orders.
pub(super) fn bucket(topic: Option<&str>) -> Bucket {
    match topic {
        Some("checkouts/create" | "checkouts/update" | "carts/create" | "carts/update") => {
            Bucket::AbandonedCandidate
        }
        Some("orders/create" | "orders/paid") => Bucket::OrderCompleted,
        _ => Bucket::Other,
    }
}

/// The `X-Shopify-Hmac-Sha256` value for `body` under `secret`: what Shopify sends.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    BASE64.encode(super::Key::new(secret).sign(&[body]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_headers as headers;
    use crate::providers::Key;
    use http::HeaderMap;

    #[test]
    fn unprefixed_headers_are_read() {
        let h = headers(&[
            ("shopify-shop-domain", "Shop.MyShopify.com"),
            ("shopify-topic", "orders/create"),
            ("shopify-event-id", "ev-1"),
        ]);
        let seen = Shopify.inspect(&Request::new(&h, b"{}")).unwrap();
        assert_eq!(seen.clue.as_deref(), Some("shop.myshopify.com"));
        assert_eq!(seen.event_type.as_deref(), Some("orders/create"));
        assert_eq!(seen.delivery_id.as_deref(), Some("ev-1"));
    }

    #[test]
    fn webhook_id_wins_over_event_id() {
        let h = headers(&[("x-shopify-event-id", "ev"), ("x-shopify-webhook-id", "wh")]);
        let seen = Shopify.inspect(&Request::new(&h, b"{}")).unwrap();
        assert_eq!(seen.delivery_id.as_deref(), Some("wh"));
    }

    #[test]
    fn missing_or_garbled_signature_is_unauthorized() {
        let keys = Keys::new(Key::new(b"k"), None);
        let now = std::time::UNIX_EPOCH;
        let none = HeaderMap::new();
        assert!(matches!(
            Shopify.verify(&Request::new(&none, b"{}"), &keys, now),
            Err(Error::Unauthorized(_))
        ));
        let garbled = headers(&[("x-shopify-hmac-sha256", "***")]);
        assert!(Shopify
            .verify(&Request::new(&garbled, b"{}"), &keys, now)
            .is_err());
        let good = headers(&[("shopify-hmac-sha256", &sign(b"k", b"{}"))]);
        assert!(Shopify
            .verify(&Request::new(&good, b"{}"), &keys, now)
            .is_ok());
    }
}
