//! Storefront tracking signals (`POST /api/tracking/cart`, SPEC §2.3): add-to-cart and
//! cart-view events a theme script or Web Pixel sends from the shopper's browser, produced to the
//! inbound topic as provider `tracking`. They are authenticated by a tenant's publishable key,
//! which is public: whatever a signal says, anyone could have said. So a signal marks activity
//! on a cart and nothing more — no contact, no recovery URL, no time of its own (a browser's
//! clock is not ours): the shopper and the links come from the platform's signed webhooks,
//! which find the same cart by its token.
//!
//! [`Signal::read`] is the ingress's check of a body (400 and why, before anything is
//! produced); [`Tracking::normalize`] the processor's reading of one it accepted.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::normalize as n;
use super::{Error, Inspection, Keys, Provider, Request};
use crate::topics::event::{Bucket, Event};

/// The provider name of tracking records.
pub const SLUG: &str = "tracking";

/// The events a signal may name.
pub const EVENTS: &[&str] = &[
    "add_to_cart",
    "remove_from_cart",
    "cart_updated",
    "cart_viewed",
    "checkout_started",
];

/// Longest cart token and event id taken.
const MAX_ID_CHARS: usize = 256;

/// A storefront signal as its body says it.
#[derive(Debug, Deserialize)]
pub struct Signal<'a> {
    /// The tenant's publishable key (`pk_…`), unless the URL's `key` gives it.
    #[serde(borrow, default)]
    pub publishable_key: Option<Cow<'a, str>>,
    /// One of [`EVENTS`].
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    /// The platform's cart token, as the storefront knows it ([`cart_token`] makes it the
    /// webhooks' form).
    #[serde(borrow)]
    pub cart_token: Cow<'a, str>,
    /// The client's id of this event, which de-duplicates a signal sent twice; without one
    /// the body's digest does.
    #[serde(borrow, default)]
    pub event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub cart_value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub currency: Option<Cow<'a, str>>,
    #[serde(default)]
    pub item_count: Option<u64>,
}

impl<'a> Signal<'a> {
    /// The signal in `body`, or why it is refused (a static text: it is sent back).
    pub fn read(body: &'a [u8]) -> Result<Signal<'a>, &'static str> {
        let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8")?;
        let signal: Signal<'a> = serde_json::from_str(text).map_err(|_| {
            "body must be a JSON object with event and cart_token (docs/tracking.md)"
        })?;
        if !EVENTS.contains(&signal.event.as_ref()) {
            return Err("event must be one of add_to_cart, remove_from_cart, cart_updated, cart_viewed, checkout_started");
        }
        let token = cart_token(&signal.cart_token);
        if token.is_empty() || token.chars().count() > MAX_ID_CHARS {
            return Err("cart_token must be 1 to 256 characters");
        }
        if let Some(id) = &signal.event_id {
            if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
                return Err("event_id must be 1 to 256 characters");
            }
        }
        if signal.cart_value.is_some_and(|v| n::amount(v).is_none()) {
            return Err("cart_value must be a decimal, as a string (\"12.50\") or a number");
        }
        if let Some(currency) = &signal.currency {
            if n::currency_code(Some(currency)).is_none() {
                return Err("currency must be an ISO 4217 code");
            }
        }
        Ok(signal)
    }
}

/// A storefront's cart token in the form the platform's webhooks name the cart by: a Web
/// Pixel's cart id (`gid://shopify/Cart/<token>`) loses its prefix, and the part from `?` on
/// (a key some storefront APIs append to the token), also percent-encoded (`%3F`, as a cookie
/// may hold it), is dropped; surrounding spaces too.
pub fn cart_token(token: &str) -> &str {
    let token = token.trim();
    let token = token.strip_prefix("gid://shopify/Cart/").unwrap_or(token);
    let end = [token.find('?'), token.find("%3F"), token.find("%3f")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(token.len());
    &token[..end]
}

#[derive(Debug)]
pub struct Tracking;

impl Provider for Tracking {
    fn slug(&self) -> &'static str {
        SLUG
    }

    /// Signals name their tenant by a publishable key, not a clue.
    fn clue_field(&self) -> Option<&'static str> {
        None
    }

    fn inspect<'a>(&self, request: &Request<'a>) -> Result<Inspection<'a>, Error> {
        let signal = Signal::read(request.body).map_err(Error::Malformed)?;
        Ok(Inspection {
            event_type: Some(signal.event),
            delivery_id: signal.event_id,
            ..Default::default()
        })
    }

    /// Never through a webhook route: the tracking route authenticates signals by their
    /// publishable key and origin.
    fn verify(&self, _: &Request<'_>, _: &Keys, _: SystemTime) -> Result<(), Error> {
        Err(Error::Unauthorized(
            "storefront signals go to /api/tracking/cart",
        ))
    }

    /// Cart activity on the cart the token names (bucket `abandoned_candidate`, SPEC §4.1).
    fn normalize(&self, body: &[u8], seen: &Inspection<'_>) -> Event {
        let event_name = seen.event_type.as_deref();
        let mut event = Event::new(SLUG, event_name, Bucket::AbandonedCandidate);
        event.resource_type = Some("cart".to_string());
        let Ok(signal) = Signal::read(body) else {
            // The ingress takes no other; an event with no cart names nothing to track.
            event.event_bucket = Bucket::Other;
            return event;
        };
        let token = cart_token(&signal.cart_token).to_string();
        event.resource_id = Some(token.clone());
        event.cart_token = Some(token);
        event.cart_value = signal.cart_value.and_then(n::amount);
        event.currency = n::currency_code(signal.currency.as_deref());
        event.item_count = signal.item_count;
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(body: &str) -> Event {
        let seen = Inspection {
            event_type: Signal::read(body.as_bytes()).ok().map(|s| s.event),
            ..Default::default()
        };
        Tracking.normalize(body.as_bytes(), &seen)
    }

    #[test]
    fn an_add_to_cart_is_activity_on_the_cart_its_token_names() {
        let event = normalized(
            r#"{"publishable_key":"pk_x","event":"add_to_cart","cart_token":"c1-7a2b","cart_value":"42.50","currency":"sar","item_count":2}"#,
        );
        assert_eq!(event.provider, "tracking");
        assert_eq!(event.provider_event.as_deref(), Some("add_to_cart"));
        assert_eq!(event.event_bucket, Bucket::AbandonedCandidate);
        assert_eq!(event.cart_token.as_deref(), Some("c1-7a2b"));
        assert_eq!(event.resource_type.as_deref(), Some("cart"));
        assert_eq!(event.cart_value.as_deref(), Some("42.50"));
        assert_eq!(event.currency.as_deref(), Some("SAR"));
        assert_eq!(event.item_count, Some(2));
    }

    #[test]
    fn a_signal_names_no_shopper_no_link_and_no_time_whatever_its_body_says() {
        let event = normalized(
            r#"{"event":"add_to_cart","cart_token":"t","customer":{"email":"victim@example.com"},"email":"victim@example.com","recovery_url":"https://phish.example","occurred_at":"2020-01-01T00:00:00Z"}"#,
        );
        assert_eq!(event.customer, Default::default());
        assert_eq!(event.recovery_url, None);
        assert_eq!(event.occurred_at, None);
        assert_eq!(event.cart_token.as_deref(), Some("t"));
    }

    #[test]
    fn a_cart_token_takes_the_form_the_webhooks_name_the_cart_by() {
        assert_eq!(cart_token("gid://shopify/Cart/c1-abc?key=123"), "c1-abc");
        assert_eq!(cart_token(" Z2NwLXVz?key=9f "), "Z2NwLXVz");
        assert_eq!(cart_token("Z2NwLXVz%3Fkey%3D9f"), "Z2NwLXVz");
        assert_eq!(cart_token("Z2NwLXVz%3fkey%3D9f"), "Z2NwLXVz");
        assert_eq!(cart_token("plain"), "plain");
        let event =
            normalized(r#"{"event":"cart_viewed","cart_token":"gid://shopify/Cart/c1-abc?key=1"}"#);
        assert_eq!(event.cart_token.as_deref(), Some("c1-abc"));
    }

    #[test]
    fn bodies_that_are_not_signals_are_refused_with_the_reason() {
        let refused = |body: &str| Signal::read(body.as_bytes()).unwrap_err();
        assert!(refused("not json").contains("JSON object"));
        assert!(refused(r#"{"event":"add_to_cart"}"#).contains("JSON object"));
        assert!(refused(r#"{"event":"purchase","cart_token":"t"}"#).starts_with("event must"));
        assert!(refused(r#"{"event":"add_to_cart","cart_token":"  "}"#).starts_with("cart_token"));
        assert!(
            refused(r#"{"event":"add_to_cart","cart_token":"?key=1"}"#).starts_with("cart_token")
        );
        let long = "x".repeat(257);
        assert!(refused(&format!(
            r#"{{"event":"add_to_cart","cart_token":"{long}"}}"#
        ))
        .starts_with("cart_token"));
        assert!(
            refused(r#"{"event":"add_to_cart","cart_token":"t","event_id":""}"#)
                .starts_with("event_id")
        );
        assert!(
            refused(r#"{"event":"add_to_cart","cart_token":"t","cart_value":1e3}"#)
                .starts_with("cart_value")
        );
        assert!(
            refused(r#"{"event":"add_to_cart","cart_token":"t","currency":"riyals"}"#)
                .starts_with("currency")
        );
        assert!(Signal::read(
            br#"{"event":"add_to_cart","cart_token":"t","cart_value":12.5,"unknown":[1]}"#
        )
        .is_ok());
    }

    #[test]
    fn a_client_event_id_is_the_delivery_id_and_its_absence_leaves_the_digest() {
        let body = br#"{"event":"add_to_cart","cart_token":"t","event_id":"e-1"}"#;
        let headers = http::HeaderMap::new();
        let seen = Tracking.inspect(&Request::new(&headers, body)).unwrap();
        assert_eq!(seen.delivery_id.as_deref(), Some("e-1"));
        assert_eq!(seen.event_type.as_deref(), Some("add_to_cart"));
        let body = br#"{"event":"add_to_cart","cart_token":"t"}"#;
        let seen = Tracking.inspect(&Request::new(&headers, body)).unwrap();
        assert_eq!(seen.delivery_id, None);
    }

    #[test]
    fn no_signature_ever_verifies_a_signal() {
        let headers = http::HeaderMap::new();
        let request = Request::new(&headers, b"{}");
        let verdict = Tracking.verify(&request, Keys::unknown_tenant(), SystemTime::UNIX_EPOCH);
        assert!(matches!(verdict, Err(Error::Unauthorized(_))));
    }
}
