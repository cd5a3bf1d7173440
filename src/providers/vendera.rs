//! Vendera (beta): its webhook conventions are not published yet, so deliveries are refused
//! unless the integration configures a generic [`Scheme`](super::Scheme) in `tenants.toml` — an
//! HMAC of the body (hex or base64) or the shared secret, under a header it names, and where the
//! event type and delivery id are. The URL's integration key is the only tenant clue.
//!
//! With a scheme, the ingress asks the scheme instead of this provider; what is left here is
//! the refusal of integrations without one.

use std::time::SystemTime;

use super::{Error, Inspection, Keys, Provider, Request};

#[derive(Debug)]
pub struct Vendera;

impl Provider for Vendera {
    fn slug(&self) -> &'static str {
        "vendera"
    }

    fn clue_field(&self) -> Option<&'static str> {
        None
    }

    /// Nothing is known before the integration's scheme is: the body is not even parsed.
    fn inspect<'a>(&self, _request: &Request<'a>) -> Result<Inspection<'a>, Error> {
        Ok(Inspection::default())
    }

    fn verify(&self, request: &Request<'_>, keys: &Keys, _now: SystemTime) -> Result<(), Error> {
        // The work and the answer of a failed scheme check, so that an integration key without
        // a scheme and an unknown one cannot be told apart from one with a scheme and a wrong
        // signature.
        keys.spend_hmac(&[request.body]);
        Err(Error::Unauthorized(super::scheme::UNAUTHORIZED))
    }

    fn accepts_scheme(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Key;
    use http::HeaderMap;

    #[test]
    fn without_a_scheme_every_delivery_is_refused() {
        let keys = Keys::new(Key::new(b"k"), None);
        let h = HeaderMap::new();
        let body = br#"{"event":"order.created"}"#;
        let request = Request::new(&h, body);
        assert_eq!(Vendera.inspect(&request).unwrap(), Inspection::default());
        assert!(matches!(
            Vendera.verify(&request, &keys, std::time::UNIX_EPOCH),
            Err(Error::Unauthorized(_))
        ));
    }
}
