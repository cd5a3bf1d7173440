//! The generic schemes an integration configures when its platform has no fixed conventions
//! (Vendera, in beta): an HMAC-SHA256 of the raw body in hex or base64, or the shared secret
//! itself, under a header the integration names; optionally where the event type and the
//! delivery id are found. Validated once, when `tenants.toml` is loaded.
//!
//! ```toml
//! [tenant.integration.scheme]
//! auth = "hmac-hex"                 # or "hmac-base64", "token"
//! header = "X-Vendera-Signature"
//! event_type_path = "event"         # optional: dotted path of a string or number in the body
//! delivery_id_header = "X-Request-Id"  # optional; or delivery_id_path = "data.id"
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use http::HeaderName;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Error, Inspection, Keys, Request, Scalar};

/// The `scheme` table of an integration in `tenants.toml` (and of its record on the tenants
/// topic, which is written from it).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    auth: Auth,
    header: String,
    #[serde(default)]
    event_type_path: Option<String>,
    #[serde(default)]
    delivery_id_header: Option<String>,
    #[serde(default)]
    delivery_id_path: Option<String>,
}

/// How the header authenticates the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Auth {
    /// Lowercase or uppercase hex HMAC-SHA256 of the raw body.
    HmacHex,
    /// Standard base64 HMAC-SHA256 of the raw body.
    HmacBase64,
    /// The secret itself (authenticates the sender, not the body).
    Token,
}

/// A validated scheme, ready for requests.
#[derive(Debug)]
pub struct Scheme {
    auth: Auth,
    header: HeaderName,
    event_type: Option<Path>,
    delivery_id: Option<Source>,
}

#[derive(Debug)]
enum Source {
    Header(HeaderName),
    Path(Path),
}

/// A dotted path of object members, `data.order.id`.
#[derive(Debug)]
struct Path(Vec<String>);

/// Deep enough for any envelope we have seen; bounds the work an odd configuration can cause.
const MAX_PATH_DEPTH: usize = 8;

/// The one refusal of a scheme, and of an integration key that has none or does not exist.
pub const UNAUTHORIZED: &str = "invalid signature or secret";

impl Path {
    fn parse(text: &str) -> Option<Path> {
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        let valid = segments.len() <= MAX_PATH_DEPTH && segments.iter().all(|s| !s.is_empty());
        valid.then_some(Path(segments))
    }

    /// The string or number at this path, `None` when the path leads nowhere or to anything
    /// else. Only the objects along the path are parsed; their other members are skipped.
    fn find<'a>(&self, body: &'a [u8]) -> Result<Option<Cow<'a, str>>, Error> {
        let mut value: &'a RawValue =
            serde_json::from_slice(body).map_err(|_| Error::Malformed("body is not JSON"))?;
        for segment in &self.0 {
            let Ok(mut object) =
                serde_json::from_str::<BTreeMap<String, &'a RawValue>>(value.get())
            else {
                return Ok(None);
            };
            match object.remove(segment) {
                Some(member) => value = member,
                None => return Ok(None),
            }
        }
        Ok(serde_json::from_str::<Scalar<'a>>(value.get())
            .ok()
            .map(Scalar::into_text))
    }
}

fn header_name(text: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(text.trim().as_bytes()).ok()
}

impl Scheme {
    /// Validates a `scheme` table, reporting every problem.
    pub fn from_spec(spec: &Spec) -> Result<Scheme, Vec<&'static str>> {
        let mut problems = Vec::new();
        let header = header_name(&spec.header);
        if header.is_none() {
            problems.push("scheme.header is not a valid HTTP header name");
        }
        let event_type = spec.event_type_path.as_deref().map(Path::parse);
        if let Some(None) = event_type {
            problems.push("scheme.event_type_path must be 1-8 non-empty names joined by '.'");
        }
        let delivery_id = match (&spec.delivery_id_header, &spec.delivery_id_path) {
            (Some(_), Some(_)) => {
                problems.push("scheme: set delivery_id_header or delivery_id_path, not both");
                None
            }
            (Some(name), None) => match header_name(name) {
                Some(name) => Some(Source::Header(name)),
                None => {
                    problems.push("scheme.delivery_id_header is not a valid HTTP header name");
                    None
                }
            },
            (None, Some(path)) => match Path::parse(path) {
                Some(path) => Some(Source::Path(path)),
                None => {
                    problems
                        .push("scheme.delivery_id_path must be 1-8 non-empty names joined by '.'");
                    None
                }
            },
            (None, None) => None,
        };
        match header {
            Some(header) if problems.is_empty() => Ok(Scheme {
                auth: spec.auth,
                header,
                event_type: event_type.flatten(),
                delivery_id,
            }),
            _ => Err(problems),
        }
    }

    /// Authenticates the request against the integration's keys. Every failure gives the one
    /// answer an unknown integration key gets, after the same work (an HMAC over the body), so
    /// that neither the answer nor its timing tells whether the key exists or which scheme it
    /// has.
    pub fn verify(&self, request: &Request<'_>, keys: &Keys) -> Result<(), Error> {
        let value = request
            .headers
            .get(&self.header)
            .map_or(&b""[..], |v| v.as_bytes());
        let valid = match self.auth {
            Auth::Token => {
                keys.spend_hmac(&[request.body]);
                !value.is_empty() && keys.matches_token(value)
            }
            Auth::HmacHex => {
                let tag = hex::decode(value.trim_ascii()).unwrap_or_default();
                keys.verify(&[request.body], &tag)
            }
            Auth::HmacBase64 => {
                let tag = BASE64.decode(value.trim_ascii()).unwrap_or_default();
                keys.verify(&[request.body], &tag)
            }
        };
        if valid {
            Ok(())
        } else {
            Err(Error::Unauthorized(UNAUTHORIZED))
        }
    }

    /// The event type and delivery id where the scheme says they are. The clue is the URL's
    /// integration key, so there is none to return.
    pub fn inspect<'a>(&self, request: &Request<'a>) -> Result<Inspection<'a>, Error> {
        let event_type = match &self.event_type {
            Some(path) => path.find(request.body)?,
            None => None,
        };
        let delivery_id = match &self.delivery_id {
            Some(Source::Header(name)) => request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(Cow::Borrowed),
            // A field of the body may name the resource rather than the delivery: with the
            // body's digest beside it, a retry (the same body) is a duplicate and a new event on
            // the same resource is not.
            Some(Source::Path(path)) => path.find(request.body)?.map(|id| {
                let digest = super::body_hash_id(request.body);
                let short = digest.strip_prefix("sha256:").unwrap_or(&digest);
                Cow::Owned(format!("{id}:{}", &short[..16]))
            }),
            None => None,
        };
        Ok(Inspection {
            clue: None,
            event_type,
            delivery_id,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_headers as headers;
    use crate::providers::Key;

    fn scheme(toml_text: &str) -> Result<Scheme, Vec<&'static str>> {
        Scheme::from_spec(&toml::from_str::<Spec>(toml_text).unwrap())
    }

    #[test]
    fn hex_and_base64_hmacs_and_tokens_verify_under_the_named_header() {
        let keys = Keys::new(Key::new(b"k"), None);
        let body = br#"{"event":"order.created"}"#;
        let tag = Key::new(b"k").sign(&[body]);
        let cases = [
            ("hmac-hex", hex::encode(tag)),
            ("hmac-base64", BASE64.encode(tag)),
            ("token", "k".to_string()),
        ];
        for (auth, value) in cases {
            let s = scheme(&format!("auth = \"{auth}\"\nheader = \"X-Sig\"")).unwrap();
            let h = headers(&[("x-sig", &value)]);
            assert!(s.verify(&Request::new(&h, body), &keys).is_ok(), "{auth}");
            let other = headers(&[("x-other", &value)]);
            assert!(
                matches!(
                    s.verify(&Request::new(&other, body), &keys),
                    Err(Error::Unauthorized(_))
                ),
                "{auth}"
            );
            if auth != "token" {
                assert!(s.verify(&Request::new(&h, b"{}"), &keys).is_err(), "{auth}");
            }
        }
    }

    #[test]
    fn event_type_and_delivery_id_come_from_the_configured_places() {
        let s = scheme(
            "auth = \"token\"\nheader = \"x-secret\"\nevent_type_path = \"meta.event\"\ndelivery_id_path = \"data.id\"",
        )
        .unwrap();
        let h = headers(&[]);
        let body = br#"{"data":{"id":42,"x":[1,2]},"meta":{"event":"cart.updated"}}"#;
        let seen = s.inspect(&Request::new(&h, body)).unwrap();
        assert_eq!(seen.event_type.as_deref(), Some("cart.updated"));
        // The field's value, then the start of the body's digest: a new event on resource 42
        // is a new delivery, a retry of this body is not.
        let digest = crate::providers::body_hash_id(body);
        let hex = digest.strip_prefix("sha256:").unwrap();
        let expected = format!("42:{}", &hex[..16]);
        assert_eq!(seen.delivery_id.as_deref(), Some(expected.as_str()));
        let other = br#"{"data":{"id":42,"x":[3]},"meta":{"event":"cart.updated"}}"#;
        let again = s.inspect(&Request::new(&h, other)).unwrap();
        assert_ne!(again.delivery_id, seen.delivery_id);
        assert!(again.delivery_id.unwrap().starts_with("42:"));
        let seen = s.inspect(&Request::new(&h, br#"{"data":[]}"#)).unwrap();
        assert_eq!(seen, Inspection::default());
        assert!(matches!(
            s.inspect(&Request::new(&h, b"not json")),
            Err(Error::Malformed(_))
        ));

        let s = scheme("auth = \"token\"\nheader = \"x-secret\"\ndelivery_id_header = \"X-Id\"")
            .unwrap();
        let h = headers(&[("x-id", "d-1")]);
        let seen = s.inspect(&Request::new(&h, b"anything")).unwrap();
        assert_eq!(seen.delivery_id.as_deref(), Some("d-1"));
        assert_eq!(seen.event_type, None);
    }

    #[test]
    fn invalid_schemes_report_every_problem() {
        let problems = scheme(
            "auth = \"token\"\nheader = \"bad header\"\nevent_type_path = \"a..b\"\ndelivery_id_header = \"x\"\ndelivery_id_path = \"id\"",
        )
        .unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(toml::from_str::<Spec>("auth = \"md5\"\nheader = \"x\"").is_err());
    }
}
