//! Shopify: `X-Shopify-Hmac-Sha256` is the base64 HMAC-SHA256 of the raw body under the app's
//! client secret; the previous secret stays valid during a rotation. The shop domain header names
//! the tenant. Shopify's newer event deliveries use the same headers without the `X-` prefix.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::normalize as n;
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
        let json = n::parse(body);
        event.resource_type = resource.map(str::to_string);
        event.resource_id = n::text(&json, &["id"]);
        match resource {
            Some("checkout") => {
                event.checkout_token = n::text(&json, &["token"]);
                event.cart_token = n::text(&json, &["cart_token"]);
                event.order_id = n::text(&json, &["order_id"]);
                event.recovery_url = n::url(&json, &["abandoned_checkout_url"]);
            }
            Some("cart") => event.cart_token = n::text(&json, &["token"]),
            Some("order") => {
                event.order_id = n::text(&json, &["id"]);
                event.checkout_token = n::text(&json, &["checkout_token"]);
                event.cart_token = n::text(&json, &["cart_token"]);
            }
            _ => {}
        }
        event.customer = customer(&json);
        event.cart_value = n::decimal(body, &["total_price"]);
        event.currency = n::currency(&json, &["currency"])
            .or_else(|| n::currency(&json, &["presentment_currency"]));
        event.item_count = n::item_count(&json, &["line_items"], "quantity");
        event.occurred_at =
            n::timestamp(&json, &["updated_at"]).or_else(|| n::timestamp(&json, &["created_at"]));
        event
    }
}

/// The customer: named by the order's customer, else its billing or shipping address; their
/// e-mail; their phone, in E.164 when an address gives the country.
fn customer(json: &serde_json::Value) -> Customer {
    let country = n::first_text(
        json,
        &[
            &["billing_address", "country_code"],
            &["shipping_address", "country_code"],
            &["customer", "default_address", "country_code"],
        ],
    );
    let name = |person: &str| {
        n::full_name(
            n::text(json, &[person, "first_name"]),
            n::text(json, &[person, "last_name"]),
        )
    };
    Customer {
        name: name("customer")
            .or_else(|| name("billing_address"))
            .or_else(|| name("shipping_address")),
        email: n::email(json, &["email"])
            .or_else(|| n::email(json, &["contact_email"]))
            .or_else(|| n::email(json, &["customer", "email"])),
        phone: n::phone(
            n::first_text(
                json,
                &[
                    &["phone"],
                    &["customer", "phone"],
                    &["billing_address", "phone"],
                    &["shipping_address", "phone"],
                ],
            ),
            country.as_deref(),
        ),
    }
}

/// SPEC §4.1: which Shopify topics are cart activity and which are completed orders.
fn bucket(topic: Option<&str>) -> Bucket {
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
