//! Standard Webhooks (<https://www.standardwebhooks.com>): `webhook-signature` is a space-separated
//! list of `v1,<base64 HMAC-SHA256>` (and `v1a,<base64 Ed25519>`) over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`; secrets are `whsec_` + base64 (public keys
//! `whpk_` + base64); the timestamp must be within five minutes of now. Deliveries carry no
//! tenant clue: the URL's integration key names the integration.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Deserialize;

use super::normalize as n;
use super::payload::{self, Object, Stamp, Text};
use super::{Error, Inspection, Key, Keys, Provider, Request};
use crate::topics::event::{Bucket, Event};

const ID: &[&str] = &["webhook-id"];
const TIMESTAMP: &[&str] = &["webhook-timestamp"];
const SIGNATURE: &[&str] = &["webhook-signature"];

/// How far the timestamp may be from now, either way.
pub const TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Standard;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
}

impl Provider for Standard {
    fn slug(&self) -> &'static str {
        "standard"
    }

    fn clue_field(&self) -> Option<&'static str> {
        None
    }

    fn inspect<'a>(&self, request: &Request<'a>) -> Result<Inspection<'a>, Error> {
        let id = request
            .header(ID)
            .ok_or(Error::Malformed("missing webhook-id"))?;
        let envelope: Envelope<'a> = serde_json::from_slice(request.body)
            .map_err(|_| Error::Malformed("body is not a JSON object"))?;
        Ok(Inspection {
            clue: None,
            event_type: envelope.kind,
            delivery_id: Some(Cow::Borrowed(id)),
            ..Default::default()
        })
    }

    fn verify(&self, request: &Request<'_>, keys: &Keys, now: SystemTime) -> Result<(), Error> {
        let id = request
            .header(ID)
            .ok_or(Error::Malformed("missing webhook-id"))?;
        let timestamp = request
            .header(TIMESTAMP)
            .ok_or(Error::Malformed("missing webhook-timestamp"))?;
        let signatures = request
            .header(SIGNATURE)
            .ok_or(Error::Unauthorized("missing webhook-signature"))?;
        let seconds: u64 = timestamp
            .trim()
            .parse()
            .map_err(|_| Error::Malformed("webhook-timestamp is not an integer"))?;
        if !super::within(seconds, now, TOLERANCE) {
            return Err(Error::Unauthorized(
                "webhook-timestamp outside the tolerance window",
            ));
        }
        verify_signatures(keys, id, timestamp.trim(), request.body, signatures)
    }

    /// Standard Webhooks fixes the envelope (`type`, `timestamp`, `data`), not the payload: the
    /// event is `other` with its type, the `data.id` it names and its timestamp.
    fn normalize(&self, body: &[u8], seen: &Inspection<'_>) -> Event {
        let mut event = Event::new(self.slug(), seen.event_type.as_deref(), Bucket::Other);
        if let Some(json) = payload::parse::<Payload<'_>>(body) {
            event.resource_id = json.data.id.owned();
            event.occurred_at = n::utc(&json.timestamp);
        }
        event
    }

    fn key(&self, secret: &str) -> Result<Key, &'static str> {
        if let Some(public) = secret.strip_prefix("whpk_") {
            let bytes = BASE64
                .decode(public)
                .map_err(|_| "whpk_ key is not base64")?;
            return Key::ed25519(&bytes).ok_or("whpk_ key is not a 32-byte Ed25519 public key");
        }
        // A platform's secret without the prefix is still the base64 of its key.
        whsec_key(secret, Unprefixed::Base64).map_err(|e| match e {
            SecretError::NotBase64 => "secret is not whsec_ followed by base64",
            SecretError::Empty => "secret is empty",
        })
    }
}

payload::members! {
    /// The envelope's members the mapping reads.
    struct Payload<'a> {
        data: Object<Data<'a>>,
        timestamp: Stamp<'a>,
    }
}

payload::members! {
    /// The envelope's data.
    struct Data<'a> {
        id: Text<'a>,
    }
}

/// What a secret without the `whsec_` prefix stands for: the caller knows where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unprefixed {
    /// The base64 of the key, as if `whsec_` preceded it.
    Base64,
    /// The key itself, its bytes as written.
    Raw,
}

/// Why a secret yields no HMAC key. Each caller words it for its own readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretError {
    /// What should be base64 is not.
    NotBase64,
    /// The key would have no bytes.
    Empty,
}

/// The HMAC key of a Standard Webhooks secret: the base64 after `whsec_`, decoded; a secret
/// without the prefix is read as `unprefixed` says. The one place the `whsec_` form is decoded.
pub fn whsec_key(secret: &str, unprefixed: Unprefixed) -> Result<Key, SecretError> {
    let decode = |encoded: &str| BASE64.decode(encoded).map_err(|_| SecretError::NotBase64);
    let bytes = match (secret.strip_prefix("whsec_"), unprefixed) {
        (Some(encoded), _) => decode(encoded)?,
        (None, Unprefixed::Base64) => decode(secret)?,
        (None, Unprefixed::Raw) => secret.as_bytes().to_vec(),
    };
    if bytes.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(Key::new(&bytes))
}

/// Most entries a `webhook-signature` list may have: one per key the sender signs with during
/// a rotation. More is refused before any of them is checked, so that a request's verification
/// costs at most one HMAC per secret and this many Ed25519 checks, whatever the header holds.
pub const MAX_SIGNATURES: usize = 8;

/// `Ok` when any `v1`/`v1a` entry of a `webhook-signature` list verifies under any key.
/// Unknown versions are ignored, as the specification asks. Each secret's HMAC is computed once
/// and compared with every `v1` entry.
pub fn verify_signatures(
    keys: &Keys,
    id: &str,
    timestamp: &str,
    body: &[u8],
    list: &str,
) -> Result<(), Error> {
    if list.split_ascii_whitespace().nth(MAX_SIGNATURES).is_some() {
        return Err(Error::Unauthorized("too many webhook-signature entries"));
    }
    let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
    let mut macs = None;
    let mut signed_ed25519: Option<Vec<u8>> = None;
    let mut ok = false;
    for entry in list.split_ascii_whitespace() {
        let Some((version, encoded)) = entry.split_once(',') else {
            continue;
        };
        let Ok(tag) = BASE64.decode(encoded) else {
            continue;
        };
        match version {
            "v1" => ok |= macs.get_or_insert_with(|| keys.macs(&signed)).matches(&tag),
            "v1a" => {
                let message = signed_ed25519.get_or_insert_with(|| signed.concat());
                ok |= keys.verify_ed25519(message, &tag);
            }
            _ => {}
        }
    }
    if ok {
        Ok(())
    } else {
        Err(Error::Unauthorized("no valid webhook-signature"))
    }
}

/// The `webhook-signature` value (`v1,<base64>`) for one message under one key.
pub fn sign(key: &Key, id: &str, timestamp: u64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let tag = key.sign(&[id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
    format!("v1,{}", BASE64.encode(tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use std::time::UNIX_EPOCH;

    fn request_headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", ts.parse().unwrap());
        h.insert("webhook-signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn timestamps_outside_five_minutes_are_refused() {
        let key = Standard
            .key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let keys = Keys::new(key.clone(), None);
        let body = br#"{"type":"x"}"#;
        let h = request_headers(
            "msg_1",
            "1700000000",
            &sign(&key, "msg_1", 1_700_000_000, body),
        );
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let req = Request::new(&h, body);
        assert!(Standard.verify(&req, &keys, at(1_700_000_300)).is_ok());
        assert!(Standard.verify(&req, &keys, at(1_699_999_700)).is_ok());
        assert_eq!(
            Standard.verify(&req, &keys, at(1_700_000_301)),
            Err(Error::Unauthorized(
                "webhook-timestamp outside the tolerance window"
            ))
        );
        assert!(Standard.verify(&req, &keys, at(1_699_999_699)).is_err());
    }

    #[test]
    fn secrets_must_be_base64() {
        assert!(Standard.key("whsec_not base64!").is_err());
        assert!(Standard.key("whsec_").is_err());
        assert!(Standard.key("whpk_AAAA").is_err());
    }

    #[test]
    fn event_type_comes_from_the_body() {
        let h = request_headers("msg_1", "1", "v1,x");
        let seen = Standard
            .inspect(&Request::new(&h, br#"{"type":"cart.updated","data":{}}"#))
            .unwrap();
        assert_eq!(seen.event_type.as_deref(), Some("cart.updated"));
        assert_eq!(seen.delivery_id.as_deref(), Some("msg_1"));
    }
}
