//! ShopiMind: lifecycle webhooks (`integration.installed`, `activated`, `config_updated`,
//! `deactivated`, `uninstalled`) signed with `X-Shopimind-Signature`, the lowercase hex
//! HMAC-SHA256 of `"{X-Shopimind-Timestamp}.{raw body}"` under the integration's webhook secret.
//! The timestamp is integer seconds and must be within five minutes of now, either way. The
//! tenant clue is the body's `installation_id` (legacy alias `id_shop_integration`), the event
//! name its `event`; there is no delivery id, so a digest of the body de-duplicates — keyed, since
//! the body carries secrets ([`crate::credentials::Vault::delivery_id`]). ShopiMind treats any
//! answer but `200 {"success":true}` as a failure. The access token and configuration values a
//! lifecycle event carries are kept sealed, never produced in clear ([`Provider::secret_fields`]).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::{text, Error, Inspection, Keys, Provider, Request, Scalar};

const TIMESTAMP: &[&str] = &["x-shopimind-timestamp"];
const SIGNATURE: &[&str] = &["x-shopimind-signature"];

/// How far the timestamp may be from now, either way.
pub const TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Shopimind;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    installation_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    id_shop_integration: Option<Scalar<'a>>,
}

impl Provider for Shopimind {
    fn slug(&self) -> &'static str {
        "shopimind"
    }

    fn clue_field(&self) -> Option<&'static str> {
        Some("installation_id")
    }

    fn inspect<'a>(&self, request: &Request<'a>) -> Result<Inspection<'a>, Error> {
        let envelope: Envelope<'a> = serde_json::from_slice(request.body)
            .map_err(|_| Error::Malformed("body is not a JSON object"))?;
        Ok(Inspection {
            clue: text(envelope.installation_id.or(envelope.id_shop_integration)),
            event_type: envelope.event,
            delivery_id: None,
            ..Default::default()
        })
    }

    fn verify(&self, request: &Request<'_>, keys: &Keys, now: SystemTime) -> Result<(), Error> {
        // An unsigned request is unauthenticated (401) whatever else it lacks.
        let signature = request
            .header(SIGNATURE)
            .ok_or(Error::Unauthorized("missing X-Shopimind-Signature"))?;
        let timestamp = request
            .header(TIMESTAMP)
            .ok_or(Error::Malformed("missing X-Shopimind-Timestamp"))?
            .trim();
        // Digits only, as ShopiMind's own verifier demands: no sign, no fraction.
        let seconds: u64 = timestamp
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| timestamp.parse().ok())
            .flatten()
            .ok_or(Error::Malformed("X-Shopimind-Timestamp is not an integer"))?;
        if !super::within(seconds, now, TOLERANCE) {
            return Err(Error::Unauthorized(
                "X-Shopimind-Timestamp outside the tolerance window",
            ));
        }
        let tag = hex::decode(signature.trim()).ok();
        keys.require_hmac(
            &[timestamp.as_bytes(), b".", request.body],
            tag.as_deref(),
            "invalid X-Shopimind-Signature",
        )
    }

    fn normalize_clue(&self, clue: &str) -> String {
        clue.trim().to_string()
    }

    /// `integration.installed` carries the installation's API key — "you will not receive it a
    /// second time" — and `activated`/`config_updated` the values the merchant typed into the
    /// integration's configuration, secrets among them.
    fn secret_fields(&self) -> &'static [&'static str] {
        &["access_token", "refresh_token", "configs"]
    }

    fn accepted_body(&self) -> &'static [u8] {
        br#"{"success":true}"#
    }
}

/// The `X-Shopimind-Signature` value for `body` sent at `timestamp` under `secret`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    hex::encode(super::Key::new(secret).sign(&[timestamp.as_bytes(), b".", body]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_headers as headers;
    use crate::providers::Key;
    use http::HeaderMap;
    use std::time::UNIX_EPOCH;

    const BODY: &[u8] =
        br#"{"event":"integration.installed","installation_id":"pg-1","shop_domain":"demo.shop"}"#;
    const SENT: u64 = 1_700_000_000;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn signed(secret: &[u8], body: &[u8]) -> HeaderMap {
        headers(&[
            ("x-shopimind-timestamp", &SENT.to_string()),
            ("x-shopimind-signature", &sign(secret, SENT, body)),
        ])
    }

    #[test]
    fn installation_id_or_its_legacy_alias_is_the_clue() {
        let h = HeaderMap::new();
        let seen = Shopimind.inspect(&Request::new(&h, BODY)).unwrap();
        assert_eq!(seen.clue.as_deref(), Some("pg-1"));
        assert_eq!(seen.event_type.as_deref(), Some("integration.installed"));
        assert_eq!(seen.delivery_id, None);
        let legacy = br#"{"event":"integration.activated","id_shop_integration":42}"#;
        let seen = Shopimind.inspect(&Request::new(&h, legacy)).unwrap();
        assert_eq!(seen.clue.as_deref(), Some("42"));
        assert!(matches!(
            Shopimind.inspect(&Request::new(&h, b"installed")),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn a_signed_delivery_verifies_within_five_minutes_either_way() {
        let keys = Keys::new(Key::new(b"whsec_test"), None);
        let h = signed(b"whsec_test", BODY);
        let request = Request::new(&h, BODY);
        for now in [SENT, SENT + 300, SENT - 300] {
            assert_eq!(Shopimind.verify(&request, &keys, at(now)), Ok(()), "{now}");
        }
        for now in [SENT + 301, SENT - 301, SENT + 86_400] {
            assert_eq!(
                Shopimind.verify(&request, &keys, at(now)),
                Err(Error::Unauthorized(
                    "X-Shopimind-Timestamp outside the tolerance window"
                )),
                "{now}"
            );
        }
    }

    #[test]
    fn tampering_a_wrong_secret_or_a_missing_signature_is_unauthorized() {
        let keys = Keys::new(Key::new(b"whsec_test"), None);
        let now = at(SENT);
        let h = signed(b"whsec_test", BODY);
        let tampered = br#"{"event":"integration.installed","installation_id":"pg-2","shop_domain":"demo.shop"}"#;
        assert!(matches!(
            Shopimind.verify(&Request::new(&h, tampered), &keys, now),
            Err(Error::Unauthorized(_))
        ));
        let h = signed(b"other", BODY);
        assert!(matches!(
            Shopimind.verify(&Request::new(&h, BODY), &keys, now),
            Err(Error::Unauthorized(_))
        ));
        let h = headers(&[("x-shopimind-timestamp", "1700000000")]);
        assert!(matches!(
            Shopimind.verify(&Request::new(&h, BODY), &keys, now),
            Err(Error::Unauthorized(_))
        ));
    }

    #[test]
    fn the_timestamp_is_signed_too() {
        let keys = Keys::new(Key::new(b"whsec_test"), None);
        let mut h = signed(b"whsec_test", BODY);
        h.insert("x-shopimind-timestamp", "1700000001".parse().unwrap());
        assert!(Shopimind
            .verify(&Request::new(&h, BODY), &keys, at(SENT))
            .is_err());
    }

    #[test]
    fn a_missing_or_non_integer_timestamp_is_malformed() {
        let keys = Keys::new(Key::new(b"k"), None);
        let sig = sign(b"k", SENT, BODY);
        for ts in ["+1700000000", "1700000000.5", "-1", "soon"] {
            let h = headers(&[
                ("x-shopimind-timestamp", ts),
                ("x-shopimind-signature", &sig),
            ]);
            assert!(
                matches!(
                    Shopimind.verify(&Request::new(&h, BODY), &keys, at(SENT)),
                    Err(Error::Malformed(_))
                ),
                "{ts}"
            );
        }
        let h = headers(&[("x-shopimind-signature", &sig)]);
        assert!(matches!(
            Shopimind.verify(&Request::new(&h, BODY), &keys, at(SENT)),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn shopimind_is_answered_with_success_true() {
        assert_eq!(Shopimind.accepted_body(), br#"{"success":true}"#);
    }
}
