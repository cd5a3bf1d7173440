//! FlexyPe: `X-Flexype-Authorization` carries the webhook secret the merchant chose, verbatim
//! (compared in constant time). Versioned bodies (2025-09, 2026-05) name the store in
//! `store.id` and `store.shopify_domain`: the clue is the id, else the domain; legacy bodies
//! carry neither, and need the URL's integration key. The event name is the body's `event_type`;
//! `X-Event-Id` is the delivery id (retries reuse it).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::normalize as n;
use super::payload::{self, Items, Object, Raw, Stamp, Text};
use super::{text, Error, Inspection, Keys, Provider, Request, Scalar, TestFlags};
use crate::topics::event::{Bucket, Customer, Event};

const AUTHORIZATION: &[&str] = &["x-flexype-authorization"];
const EVENT_ID: &[&str] = &["x-event-id"];
const VERSION: &[&str] = &["x-webhook-version"];

#[derive(Debug)]
pub struct Flexype;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    store: Option<Store<'a>>,
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

#[derive(Deserialize)]
struct Store<'a> {
    #[serde(borrow, default)]
    id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    shopify_domain: Option<Cow<'a, str>>,
}

impl Provider for Flexype {
    fn slug(&self) -> &'static str {
        "flexype"
    }

    /// "no response within 10 seconds is treated as a delivery failure" (FlexyPe's webhook guide).
    fn answer_deadline(&self) -> Option<Duration> {
        Some(Duration::from_secs(10))
    }

    fn clue_field(&self) -> Option<&'static str> {
        Some("flexype_store")
    }

    fn inspect<'a>(&self, request: &Request<'a>) -> Result<Inspection<'a>, Error> {
        let envelope: Envelope<'a> = serde_json::from_slice(request.body)
            .map_err(|_| Error::Malformed("body is not a JSON object"))?;
        let test = super::test_marks(envelope.event_type.as_deref(), &envelope.test_flags());
        // The store id, else its Shopify domain; an integration may be configured with either,
        // so the domain is tried too when the id names none.
        let (clue, other_clue) = match envelope.store {
            Some(store) => match text(store.id) {
                Some(id) => (Some(id), store.shopify_domain.map(normalize)),
                None => (store.shopify_domain.map(normalize), None),
            },
            None => (None, None),
        };
        Ok(Inspection {
            clue: clue.map(normalize),
            other_clue,
            test,
            event_type: envelope.event_type,
            delivery_id: request.header(EVENT_ID).map(Cow::Borrowed),
            payload_version: request.header(VERSION).map(Cow::Borrowed),
        })
    }

    fn verify(&self, request: &Request<'_>, keys: &Keys, _now: SystemTime) -> Result<(), Error> {
        let secret = request
            .header(AUTHORIZATION)
            .ok_or(Error::Unauthorized("missing X-Flexype-Authorization"))?;
        keys.require_token(secret.as_bytes(), "invalid X-Flexype-Authorization")
    }

    fn normalize_clue(&self, clue: &str) -> String {
        normalize(Cow::Borrowed(clue.trim())).into_owned()
    }

    /// The store of the examples in FlexyPe's webhook reference (ACR and ASR, 2026-05): what
    /// the dashboard's Test button sends as its "sample payload".
    fn sample_stores(&self) -> &'static [&'static str] {
        &["store_01", "my-store.myshopify.com"]
    }

    fn normalize(&self, body: &[u8], seen: &Inspection<'_>) -> Event {
        let name = seen.event_type.as_deref();
        let bucket = match name {
            Some("ABANDONED_CHECKOUT" | "ACR_CHECKOUT" | "ABANDONED_SESSION") => {
                Bucket::AbandonedCandidate
            }
            _ => Bucket::Other,
        };
        let mut event = Event::new(self.slug(), name, bucket);
        event.resource_type = match name {
            Some("ABANDONED_SESSION") => Some("session".to_string()),
            Some("ABANDONED_CHECKOUT" | "ACR_CHECKOUT") => Some("checkout".to_string()),
            _ => None,
        };
        let json = payload::parse::<Payload<'_>>(body);
        // Versioned deliveries (2025-09, 2026-05: X-Webhook-Version) wrap the data in "payload";
        // legacy ones, which have no version, are flat. Without the header (records written
        // before it was kept), the body's shape tells.
        let versioned = match seen.payload_version.as_deref() {
            Some(version) => !version.trim().is_empty(),
            None => json.as_ref().is_some_and(|json| json.payload.is_object),
        };
        let Some(json) = json else {
            // Not a JSON value: only an amount the body's text still holds.
            event.cart_value = match versioned {
                true => n::decimal(body, &["payload", "total_payable"]),
                false => n::decimal(body, &["total_payable"]),
            };
            return event;
        };
        match versioned {
            true => map(&mut event, &json.payload),
            false => map(&mut event, &json.top),
        }
        event.occurred_at = n::utc(&json.event_time);
        if event.event_bucket == Bucket::AbandonedCandidate {
            // FlexyPe has already waited for the customer's inactivity: the cart's activity is
            // dated when it began, so the tenant's window is not added a second time.
            event.occurred_at = event.occurred_at.as_deref().and_then(inactive_since);
        }
        event
    }
}

payload::envelope! {
    /// The body: the event's time, and its data at the top (legacy) or under `payload`.
    struct Payload<'a> {
        top: Data<'a, 1>,
        payload: Object<Data<'a, 2>>,
        event_time: Stamp<'a>,
    }
}

payload::members! {
    /// A checkout or session, nested in `DEPTH` containers.
    struct Data<'a, const DEPTH: usize> {
        checkout_id: Text<'a>,
        session_id: Text<'a>,
        cart_token: Text<'a>,
        checkout_url: Text<'a>,
        total_payable: Raw<'a, DEPTH>,
        currency: Text<'a>,
        cart_items: Items,
        user: Object<User<'a>>,
    }
}

payload::members! {
    /// The shopper.
    struct User<'a> {
        dial_code: Text<'a>,
        phone_no: Text<'a>,
        phone: Text<'a>,
        full_name: Text<'a>,
        first_name: Text<'a>,
        last_name: Text<'a>,
        email: Text<'a>,
        address: Object<Address<'a>>,
    }
}

payload::members! {
    /// The shopper's address.
    struct Address<'a> {
        country_code: Text<'a>,
    }
}

/// The checkout or session's fields into `event`. The documented ACR and ASR bodies carry no
/// checkout or session id: their checkout session is the `flx_s` of `checkout_url`, which names
/// the cart (successive ACRs of one session update one cart). Without it the processor keys the
/// cart on the shopper's e-mail or phone.
fn map<const DEPTH: usize>(event: &mut Event, data: &Data<'_, DEPTH>) {
    let session = data.checkout_url.get().and_then(checkout_session);
    event.resource_id =
        payload::first(&[&data.checkout_id, &data.session_id]).or_else(|| session.clone());
    event.checkout_token = data.checkout_id.owned().or(session);
    event.cart_token = data.cart_token.owned();
    event.recovery_url = n::web_url(data.checkout_url.get());
    event.cart_value = data.total_payable.amount();
    event.currency = n::currency_code(data.currency.get());
    event.item_count = data.cart_items.0;
    event.customer = customer(&data.user);
}

/// The shopper; the dialling code may come apart from the number.
fn customer(user: &User<'_>) -> Customer {
    let phone = match (
        user.dial_code.owned(),
        user.phone_no.owned().or_else(|| user.phone.owned()),
    ) {
        (Some(code), Some(number)) if !number.starts_with('+') => {
            Some(format!("+{}{number}", code.trim_start_matches('+')))
        }
        (_, number) => number,
    };
    Customer {
        name: user
            .full_name
            .owned()
            .or_else(|| n::full_name(user.first_name.owned(), user.last_name.owned())),
        email: n::email_address(user.email.get()),
        phone: n::phone(phone, user.address.country_code.get()),
    }
}

/// The query parameter of a FlexyPe checkout URL that names the checkout session
/// (`https://flexype.myshopify.com/?flx_s=331d47df-…` in FlexyPe's ACR example).
const SESSION_PARAMETER: &str = "flx_s";

/// The checkout session a FlexyPe `checkout_url` names, if any.
pub(super) fn checkout_session(checkout_url: &str) -> Option<String> {
    let url = url::Url::parse(checkout_url.trim()).ok()?;
    let (_, session) = url
        .query_pairs()
        .find(|(name, value)| name == SESSION_PARAMETER && !value.trim().is_empty())?;
    Some(session.trim().to_string())
}

/// ACR and ASR "fire after 15 minutes of customer inactivity" (FlexyPe's webhook guide).
const INACTIVITY_BEFORE_RECOVERY_EVENTS: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// When the inactivity that a recovery event sent at `event_time` reports began.
pub(super) fn inactive_since(event_time: &str) -> Option<String> {
    let at = chrono::DateTime::parse_from_rfc3339(event_time).ok()?;
    let since = at.to_utc() - INACTIVITY_BEFORE_RECOVERY_EVENTS;
    Some(since.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// Store ids are kept as they are; a clue with a dot is a Shopify domain, and domains compare
/// case-insensitively.
fn normalize(clue: Cow<'_, str>) -> Cow<'_, str> {
    if clue.contains('.') && clue.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(clue.to_ascii_lowercase())
    } else {
        clue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_headers as headers;
    use crate::providers::Key;
    use http::HeaderMap;

    const ACR: &[u8] = br#"{"event_time":"2026-05-07T10:00:00Z","event_type":"ACR_CHECKOUT","event_id":"evt_1","store":{"id":"store_01","shopify_domain":"My-Store.myshopify.com"},"payload":{}}"#;

    #[test]
    fn the_store_id_is_the_clue_and_x_event_id_the_delivery_id() {
        let h = headers(&[("x-event-id", "evt_1")]);
        let seen = Flexype.inspect(&Request::new(&h, ACR)).unwrap();
        assert_eq!(seen.clue.as_deref(), Some("store_01"));
        assert_eq!(seen.event_type.as_deref(), Some("ACR_CHECKOUT"));
        assert_eq!(seen.delivery_id.as_deref(), Some("evt_1"));
    }

    #[test]
    fn the_shopify_domain_is_the_clue_when_the_store_has_no_id() {
        let h = HeaderMap::new();
        let body = br#"{"event_type":"ABANDONED_SESSION","store":{"shopify_domain":"My-Store.myshopify.com"}}"#;
        let seen = Flexype.inspect(&Request::new(&h, body)).unwrap();
        assert_eq!(seen.clue.as_deref(), Some("my-store.myshopify.com"));
        assert_eq!(
            Flexype.normalize_clue(" My-Store.myshopify.com "),
            "my-store.myshopify.com"
        );
        assert_eq!(seen.delivery_id, None);
        let legacy = br#"{"cart_items":[],"store_link":"flexype.myshopify.com"}"#;
        assert_eq!(
            Flexype.inspect(&Request::new(&h, legacy)).unwrap().clue,
            None
        );
    }

    #[test]
    fn recovery_events_are_dated_when_the_inactivity_began() {
        let h = HeaderMap::new();
        let normalize = |body: &[u8]| {
            let request = Request::new(&h, body);
            let seen = Flexype.inspect(&request).unwrap();
            Flexype.normalize(request.body, &seen).occurred_at
        };
        assert_eq!(normalize(ACR).as_deref(), Some("2026-05-07T09:45:00Z"));
        let asr = br#"{"event_time":"2026-05-07T10:00:00Z","event_type":"ABANDONED_SESSION","payload":{}}"#;
        assert_eq!(normalize(asr).as_deref(), Some("2026-05-07T09:45:00Z"));
        // Other events happened when FlexyPe says.
        let viewed =
            br#"{"event_time":"2026-05-07T10:00:00Z","event_type":"PRODUCT_VIEWED","payload":{}}"#;
        assert_eq!(normalize(viewed).as_deref(), Some("2026-05-07T10:00:00Z"));
    }

    #[test]
    fn the_payload_version_picks_the_shape_of_the_body() {
        let h = HeaderMap::new();
        let flat = br#"{"event_type":"ACR_CHECKOUT","checkout_url":"https://shop.example/r/1","payload":{"checkout_url":"https://shop.example/r/2"}}"#;
        let recovery_url = |version: Option<&'static str>| {
            let request = Request::new(&h, flat);
            let seen = Inspection {
                payload_version: version.map(Cow::Borrowed),
                ..Flexype.inspect(&request).unwrap()
            };
            Flexype.normalize(request.body, &seen).recovery_url
        };
        assert_eq!(
            recovery_url(Some("2026-05")).as_deref(),
            Some("https://shop.example/r/2")
        );
        // No version and a `payload` object: read as versioned, as before the header was kept.
        assert_eq!(
            recovery_url(None).as_deref(),
            Some("https://shop.example/r/2")
        );
        let legacy = br#"{"event_type":"ACR_CHECKOUT","checkout_url":"https://shop.example/r/1"}"#;
        let request = Request::new(&h, legacy);
        let seen = Flexype.inspect(&request).unwrap();
        assert_eq!(seen.payload_version, None);
        assert_eq!(
            Flexype
                .normalize(request.body, &seen)
                .recovery_url
                .as_deref(),
            Some("https://shop.example/r/1")
        );
        let versioned = headers(&[("x-webhook-version", "2026-05")]);
        let seen = Flexype.inspect(&Request::new(&versioned, legacy)).unwrap();
        assert_eq!(seen.payload_version.as_deref(), Some("2026-05"));
        assert_eq!(
            Flexype.normalize(legacy, &seen).recovery_url,
            None,
            "a versioned delivery is read from its payload only"
        );
    }

    #[test]
    fn the_checkout_session_in_checkout_url_names_the_cart_of_a_documented_acr() {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/providers/synthetic/flexype_acr_2026-05.json"
        ))
        .unwrap();
        let h = headers(&[("x-webhook-version", "2026-05")]);
        let request = Request::new(&h, &body);
        let event = Flexype.normalize(request.body, &Flexype.inspect(&request).unwrap());
        assert_eq!(event.event_bucket, Bucket::AbandonedCandidate);
        let session = "331d47df-8461-495b-9c4f-27ed915d9c8e";
        assert_eq!(event.checkout_token.as_deref(), Some(session));
        assert_eq!(event.resource_id.as_deref(), Some(session));
        assert_eq!(
            event.customer.email.as_deref(),
            Some("john.doe@example.com")
        );
    }

    #[test]
    fn a_checkout_id_still_comes_before_the_session_of_the_url() {
        let h = HeaderMap::new();
        let body = br#"{"event_type":"ACR_CHECKOUT","checkout_id":"chk_9","checkout_url":"https://s.example/?a=1&flx_s=s-1"}"#;
        let request = Request::new(&h, body);
        let event = Flexype.normalize(request.body, &Flexype.inspect(&request).unwrap());
        assert_eq!(event.checkout_token.as_deref(), Some("chk_9"));
        assert_eq!(event.resource_id.as_deref(), Some("chk_9"));
        assert_eq!(
            checkout_session("https://s.example/?a=1&flx_s=s-1").as_deref(),
            Some("s-1")
        );
        assert_eq!(checkout_session("https://s.example/?flx_s="), None);
        assert_eq!(checkout_session("https://s.example/recover/1"), None);
        assert_eq!(checkout_session("not a url"), None);
    }

    #[test]
    fn non_json_body_is_malformed() {
        assert!(matches!(
            Flexype.inspect(&Request::new(&HeaderMap::new(), b"<xml/>")),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn only_the_exact_secret_verifies() {
        let keys = Keys::new(Key::new(b"flexy-secret"), None);
        let now = std::time::UNIX_EPOCH;
        let ok = headers(&[("x-flexype-authorization", "flexy-secret")]);
        assert_eq!(Flexype.verify(&Request::new(&ok, ACR), &keys, now), Ok(()));
        let wrong = headers(&[("x-flexype-authorization", "flexy-secret2")]);
        assert!(matches!(
            Flexype.verify(&Request::new(&wrong, ACR), &keys, now),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(
            Flexype.verify(&Request::new(&HeaderMap::new(), ACR), &keys, now),
            Err(Error::Unauthorized(_))
        ));
    }
}
