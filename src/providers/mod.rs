//! One file per commerce platform: how its deliveries are authenticated, where the tenant clue,
//! event type and delivery id live. Providers are pure: headers and the raw body in, a verdict out.
//! No I/O, no Kafka, no registry look-ups: the ingress asks [`Provider::inspect`] for the clue,
//! resolves the integration itself, then asks [`Provider::verify`] with that integration's keys.

pub mod easyorders;
pub mod flexype;
mod keys;
pub mod normalize;
mod payload;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod reference;
pub mod salla;
pub mod scheme;
pub mod shopery;
pub mod shopify;
pub mod shopimind;
pub mod sprusify;
pub mod standard;
pub mod tracking;
pub mod vendera;
pub mod zid;

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use keys::{secret_clue, Key, Keys};
pub use scheme::Scheme;

use crate::topics::event::{Bucket, Event};

/// What a provider sees of one delivery: the request headers and the raw body, untouched.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn new(headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Request { headers, body }
    }

    /// The first of `names` present in the headers, as text. Non-UTF-8 values count as absent.
    pub fn header(&self, names: &[&str]) -> Option<&'a str> {
        names
            .iter()
            .find_map(|name| self.headers.get(*name))
            .and_then(|value| value.to_str().ok())
    }
}

/// What the ingress learns from a delivery before it is authenticated.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inspection<'a> {
    /// The value that names the tenant's integration (shop domain, merchant id, …), if the
    /// provider carries one. Never trusted: it only selects whose keys must verify the request.
    pub clue: Option<Cow<'a, str>>,
    /// A second value naming the same store, tried when `clue` names no integration (FlexyPe's
    /// shop domain beside its store id: an integration may be configured with either).
    pub other_clue: Option<Cow<'a, str>>,
    /// The provider's own event name (`checkouts/create`, `abandoned.cart`, …).
    pub event_type: Option<Cow<'a, str>>,
    /// The provider's delivery id for de-duplication; `None` means "hash the body".
    pub delivery_id: Option<Cow<'a, str>>,
    /// The platform's version of the payload's shape (FlexyPe's `X-Webhook-Version`), where it
    /// sends one: carried to the processor in the record's headers, it picks the mapping.
    pub payload_version: Option<Cow<'a, str>>,
    /// The payload says it is the platform's test or sample delivery ([`test_marks`]): answered
    /// 200 and marked `cartstream-test` on the inbound record; no cart is tracked from it.
    pub test: bool,
}

/// The event names by which platforms mark a test or sample delivery, compared ignoring case.
pub const TEST_EVENT_NAMES: &[&str] = &[
    "test",
    "ping",
    "sample",
    "webhook.test",
    "test.webhook",
    "webhook_test",
    "test_webhook",
];

/// Whether an event name or a top-level flag (`"test": true`, `"is_test": true`,
/// `"sample": true`) marks a body as a platform's test or sample delivery. The flags are read as
/// raw JSON, so a flag of another type never makes a real delivery unreadable.
pub fn test_marks(event_type: Option<&str>, flags: &TestFlags<'_>) -> bool {
    let named = event_type.is_some_and(|name| {
        TEST_EVENT_NAMES
            .iter()
            .any(|test| name.trim().eq_ignore_ascii_case(test))
    });
    let flagged = [flags.test, flags.is_test, flags.sample]
        .iter()
        .any(|flag| flag.is_some_and(|raw| raw.get() == "true"));
    named || flagged
}

/// The top-level flags [`test_marks`] reads, taken from a provider's envelope.
#[derive(Debug, Default)]
pub struct TestFlags<'a> {
    pub test: Option<&'a serde_json::value::RawValue>,
    pub is_test: Option<&'a serde_json::value::RawValue>,
    pub sample: Option<&'a serde_json::value::RawValue>,
}

/// Why a delivery was refused. The variants carry static texts only: they end up in HTTP
/// responses and must never echo secrets or attacker-controlled bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is malformed: a required header or field is missing or unreadable (400).
    #[error("{0}")]
    Malformed(&'static str),
    /// The signature, secret or timestamp does not authenticate the request (401).
    #[error("{0}")]
    Unauthorized(&'static str),
}

/// A commerce platform's webhook conventions.
pub trait Provider: Sync + Send + std::fmt::Debug {
    /// The slug in `/api/webhooks/{slug}`.
    fn slug(&self) -> &'static str;

    /// The integration field in `tenants.toml` that holds this provider's tenant clue,
    /// or `None` when deliveries carry no clue and the URL's integration key is required.
    /// [`SECRET_CLUE`] means the secret itself names the integration: `inspect` then returns
    /// [`secret_clue`] of the presented secret, and the registry indexes every integration of
    /// the provider by the same digest of its secrets.
    fn clue_field(&self) -> Option<&'static str>;

    /// Reads the clue, event type and delivery id. Parses no more of the body than it needs.
    fn inspect<'a>(&self, request: &Request<'a>) -> Result<Inspection<'a>, Error>;

    /// Authenticates the request against one integration's keys (current, then previous).
    fn verify(&self, request: &Request<'_>, keys: &Keys, now: SystemTime) -> Result<(), Error>;

    /// Turns a configured secret into a key; providers with encoded secrets override it.
    fn key(&self, secret: &str) -> Result<Key, &'static str> {
        if secret.is_empty() {
            return Err("secret is empty");
        }
        Ok(Key::new(secret.as_bytes()))
    }

    /// Whether a platform app signs the webhooks of every store connected through it with the
    /// app's own secret (Shopify, Salla): such stores' integrations may have no secret of their
    /// own and verify with the deployment's app ([`crate::platforms`]).
    fn app_signs_its_stores(&self) -> bool {
        false
    }

    /// The stores the vendor's documentation uses in its sample payloads (normalized as
    /// [`Provider::normalize_clue`] does): a delivery behind an integration key naming one is
    /// the dashboard's test, not a store of the merchant's.
    fn sample_stores(&self) -> &'static [&'static str] {
        &[]
    }

    /// Normalizes a clue so that what `tenants.toml` configures and what `inspect` returns
    /// compare equal; the ingress passes both through it.
    fn normalize_clue(&self, clue: &str) -> String {
        clue.to_string()
    }

    /// Maps a verified delivery's body into the common event shape (SPEC §4). Pure and total: a
    /// body that is not what the provider documents yields an event with less filled in, never
    /// an error. `seen` is what [`Provider::inspect`] returned for the same request: whatever a
    /// provider reads from the request's headers (event type, delivery id, payload version)
    /// reaches it there, so the body and `seen` are all that normalizing needs — and all that
    /// the inbound record carries to the processor.
    ///
    /// The default knows nothing of the payload: bucket `other`, the event name, nothing else —
    /// right for platforms whose deliveries carry no cart or order data.
    fn normalize(&self, body: &[u8], seen: &Inspection<'_>) -> Event {
        let _ = body;
        Event::new(self.slug(), seen.event_type.as_deref(), Bucket::Other)
    }

    /// How long the platform waits for an answer before it counts the delivery as failed (and
    /// will retry it), from its guide; `None` when the guide does not say.
    fn answer_deadline(&self) -> Option<Duration> {
        None
    }

    /// Top-level body fields that carry the integration's secrets (ShopiMind's access token,
    /// sent once). The ingress seals their values into the credentials topic and produces the
    /// body with them redacted (`crate::ingress::credentials`).
    fn secret_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// The body of the 200 answer.
    fn accepted_body(&self) -> &'static [u8] {
        br#"{"ok":true}"#
    }

    /// Whether an integration may configure a generic [`Scheme`] for this provider, which then
    /// replaces `verify` and supplies the event type and delivery id.
    fn accepts_scheme(&self) -> bool {
        false
    }
}

/// The [`Provider::clue_field`] of providers whose secret is also the tenant clue.
pub const SECRET_CLUE: &str = "secret";

static PROVIDERS: &[&dyn Provider] = &[
    &shopify::Shopify,
    &salla::Salla,
    &zid::Zid,
    &easyorders::EasyOrders,
    &vendera::Vendera,
    &flexype::Flexype,
    &shopimind::Shopimind,
    &sprusify::Sprusify,
    &shopery::Shopery,
    &standard::Standard,
];

/// Whether a sender's timestamp (Unix seconds, from outside) lies within `tolerance` of `now`,
/// either way. A timestamp too large to be a time is outside, not a panic.
pub fn within(seconds: u64, now: SystemTime, tolerance: Duration) -> bool {
    let Some(sent) = UNIX_EPOCH.checked_add(Duration::from_secs(seconds)) else {
        return false;
    };
    let skew = now.duration_since(sent).unwrap_or_else(|e| e.duration());
    skew <= tolerance
}

/// The provider with this slug, if there is one.
pub fn find(slug: &str) -> Option<&'static dyn Provider> {
    PROVIDERS.iter().copied().find(|p| p.slug() == slug)
}

/// The provider of an inbound record: a webhook provider, or storefront tracking, whose
/// signals come through `/api/tracking/cart` rather than a webhook route.
pub fn recorded(slug: &str) -> Option<&'static dyn Provider> {
    match slug {
        tracking::SLUG => Some(&tracking::Tracking),
        _ => find(slug),
    }
}

/// Every provider the daemon knows webhooks of.
pub fn all() -> impl Iterator<Item = &'static dyn Provider> {
    PROVIDERS.iter().copied()
}

/// The delivery id used when a provider sends none: `sha256:` and the hex digest of the body,
/// so a retried delivery of the same bytes de-duplicates downstream.
pub fn body_hash_id(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// An id or clue field that platforms send as a JSON number or a string, whichever they like.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar<'a> {
    Number(serde_json::Number),
    Text(#[serde(borrow)] Cow<'a, str>),
}

impl<'a> Scalar<'a> {
    fn into_text(self) -> Cow<'a, str> {
        match self {
            Scalar::Number(n) => Cow::Owned(n.to_string()),
            Scalar::Text(t) => t,
        }
    }
}

/// `field.map(Scalar::into_text)`, for the providers' inspections.
fn text<'a>(field: Option<Scalar<'a>>) -> Option<Cow<'a, str>> {
    field.map(Scalar::into_text)
}

/// A header map from static names and values, for the providers' unit tests.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_deliveries_are_named_or_flagged() {
        let none = TestFlags::default();
        for name in ["test", "TEST", " Ping ", "webhook.test", "WEBHOOK_TEST"] {
            assert!(test_marks(Some(name), &none), "{name}");
        }
        for name in ["ABANDONED_CHECKOUT", "contest", "testing", ""] {
            assert!(!test_marks(Some(name), &none), "{name}");
        }
        assert!(!test_marks(None, &none));
        let yes: &serde_json::value::RawValue = serde_json::from_str("true").unwrap();
        let no: &serde_json::value::RawValue = serde_json::from_str("false").unwrap();
        let text: &serde_json::value::RawValue = serde_json::from_str(r#""true""#).unwrap();
        assert!(test_marks(
            None,
            &TestFlags {
                is_test: Some(yes),
                ..TestFlags::default()
            }
        ));
        assert!(test_marks(
            None,
            &TestFlags {
                sample: Some(yes),
                ..TestFlags::default()
            }
        ));
        assert!(!test_marks(
            None,
            &TestFlags {
                test: Some(no),
                ..TestFlags::default()
            }
        ));
        assert!(!test_marks(
            None,
            &TestFlags {
                test: Some(text),
                ..TestFlags::default()
            }
        ));
    }

    #[test]
    fn every_slug_is_unique_and_found() {
        let slugs: Vec<_> = all().map(|p| p.slug()).collect();
        for slug in &slugs {
            assert_eq!(find(slug).map(|p| p.slug()), Some(*slug));
            assert_eq!(slugs.iter().filter(|s| *s == slug).count(), 1);
        }
        assert!(find("nope").is_none());
        // Signals come through their own route, never a webhook route, but are read back.
        assert!(find(tracking::SLUG).is_none());
        assert_eq!(recorded(tracking::SLUG).map(|p| p.slug()), Some("tracking"));
        assert_eq!(recorded("shopify").map(|p| p.slug()), Some("shopify"));
    }

    #[test]
    fn timestamps_past_the_end_of_time_are_outside_the_window_without_panicking() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let five_minutes = Duration::from_secs(300);
        assert!(within(1_700_000_300, now, five_minutes));
        assert!(within(1_699_999_700, now, five_minutes));
        assert!(!within(1_700_000_301, now, five_minutes));
        assert!(!within(0, now, five_minutes));
        assert!(!within(u64::MAX, now, five_minutes));
        assert!(!within(u64::MAX / 1000, now, five_minutes));
    }

    /// Bodies and the delivery id each must get, the digests computed outside the crate with
    /// `printf 'BODY' | sha256sum` (`printf '' | sha256sum` and `printf '{}' | sha256sum` for
    /// the first two; the others' commands are beside them).
    const BODY_HASH_VECTORS: &[(&[u8], &str)] = &[
        (
            b"",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            b"{}",
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        ),
        // printf '{"id":1}\n' | sha256sum
        (
            b"{\"id\":1}\n",
            "sha256:51bc513113548e062ada62b03efea153cae2abdf46b051c551c3e62a4dfb88cf",
        ),
        // printf '{"name":"متجر 🛒"}' | sha256sum
        (
            "{\"name\":\"\u{645}\u{62a}\u{62c}\u{631} \u{1f6d2}\"}".as_bytes(),
            "sha256:81462a485dd505c0d76b42c39d758092a96f7018249d15776e0d079db7b0ed87",
        ),
        // printf '\xff\x00\xfe' | sha256sum: not UTF-8, not JSON; hashed all the same.
        (
            b"\xff\x00\xfe",
            "sha256:af9ceddc9d8b08ac09e1994bfd20459b5e377425df7354dfce3501992828a5b7",
        ),
    ];

    #[test]
    fn body_hash_ids_match_digests_computed_outside_the_crate() {
        // Receivers of the events topic de-duplicate on these ids when a platform sends none:
        // a change of their shape re-delivers every such event across an upgrade.
        for (body, expected) in BODY_HASH_VECTORS {
            assert_eq!(
                body_hash_id(body),
                *expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
