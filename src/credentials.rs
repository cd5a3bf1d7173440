//! Secrets a platform carries inside a payload never reach a topic in clear.
//!
//! ShopiMind's `integration.installed` carries the installation's `access_token` — "you will not
//! receive it a second time" — and its `activated` and `config_updated` deliveries carry the
//! values the merchant typed into the integration's configuration, secrets among them. Once the
//! signature over the body as sent has verified, the ingress
//!
//! - seals each such field's value with AES-256-GCM under `ingress.credentials_key` into a
//!   [`Credential`] record of `<prefix>.credentials.v1`, a compacted topic keyed by tenant,
//!   provider, installation and field, so the latest value of each is kept for the tenant
//!   (`cartstream credentials` prints them);
//! - produces to the inbound topic the body with those values replaced by `"[redacted]"`
//!   ([`redact`]). This is the one place where an inbound record's value is not the request body
//!   byte for byte.
//!
//! Pure: no Kafka, no I/O. The record is [`crate::topics::credentials`].

use std::borrow::Cow;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::topics::credentials::Credential;

/// What a redacted value is replaced with in the inbound record.
pub const REDACTED: &str = "[redacted]";

const NONCE_BYTES: usize = 12;

/// A body with its secret fields redacted, and the values taken out.
#[derive(Debug)]
pub struct Redacted<'a> {
    /// The body to produce: the same members in the same order, each secret value replaced by
    /// `"[redacted]"`, the others byte for byte (the whitespace between members is not kept).
    pub body: Vec<u8>,
    /// Each redacted field and its value as sent, in body order.
    pub secrets: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// Redacts the top-level `fields` of a JSON object body. `None` when the body has none of them
/// (or only `null` ones) or is not a JSON object: it is then produced byte for byte.
pub fn redact<'a>(body: &'a [u8], fields: &[&str]) -> Option<Redacted<'a>> {
    if fields.is_empty() {
        return None;
    }
    let members = crate::providers::normalize::members(body)?;
    let secret = |name: &str, value: &RawValue| fields.contains(&name) && value.get() != "null";
    if !members.iter().any(|(name, value)| secret(name, value)) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut secrets = Vec::new();
    out.push(b'{');
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name.as_ref()).expect("writing to a Vec cannot fail");
        out.push(b':');
        if secret(&name, value) {
            serde_json::to_writer(&mut out, REDACTED).expect("writing to a Vec cannot fail");
            secrets.push((name, value));
        } else {
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    out.push(b'}');
    Some(Redacted { body: out, secrets })
}

/// The key credentials are sealed with (`ingress.credentials_key`: 32 bytes, base64).
#[derive(Clone)]
pub struct Vault {
    cipher: Aes256Gcm,
    key_id: String,
}

/// Never shows the key.
impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vault {{ key_id: {:?} }}", self.key_id)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("must be 32 bytes in base64 (`openssl rand -base64 32`), not {0} bytes")]
    KeyLength(usize),
    #[error("is not base64 (`openssl rand -base64 32` makes one)")]
    KeyNotBase64,
    #[error("sealed with key {found}, not this key ({expected})")]
    OtherKey { found: String, expected: String },
    #[error("the sealed value is damaged or was moved from another record")]
    Damaged,
}

impl Vault {
    pub fn from_base64(text: &str) -> Result<Vault, Error> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| Error::KeyNotBase64)?;
        if key.len() != 32 {
            return Err(Error::KeyLength(key.len()));
        }
        let digest = Sha256::digest(&key);
        Ok(Vault {
            cipher: Aes256Gcm::new_from_slice(&key).expect("the length was checked"),
            // Names the key in each record without revealing it, so a rotation can tell which
            // key opens which record.
            key_id: hex::encode(&digest[..8]),
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seals `plaintext` bound to `context` (the record's key): base64 of a random nonce and the
    /// ciphertext with its tag.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .expect("AES-GCM seals any message this size");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    /// Opens what [`Vault::seal`] sealed with the same `context`.
    pub fn open(&self, context: &[u8], sealed: &str) -> Result<Vec<u8>, Error> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| Error::Damaged)?;
        if bytes.len() < NONCE_BYTES {
            return Err(Error::Damaged);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| Error::Damaged)
    }

    /// Opens a record's value, checking it was sealed with this key.
    pub fn open_record(&self, key: &[u8], record: &Credential) -> Result<Vec<u8>, Error> {
        if record.key_id != self.key_id {
            return Err(Error::OtherKey {
                found: record.key_id.clone(),
                expected: self.key_id.clone(),
            });
        }
        self.open(key, &record.sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::credentials::record_key;

    const INSTALLED: &[u8] = br#"{"event":"integration.installed","installation_id":"pg-1","access_token":"int_T","shop_domain":"demo.shop","configs":{"api_key":"SUPER-SECRET"}}"#;
    const FIELDS: &[&str] = &["access_token", "refresh_token", "configs"];

    fn vault() -> Vault {
        Vault::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap()
    }

    #[test]
    fn secret_values_are_replaced_and_every_other_member_kept_in_order() {
        let redacted = redact(INSTALLED, FIELDS).unwrap();
        assert_eq!(
            String::from_utf8(redacted.body).unwrap(),
            r#"{"event":"integration.installed","installation_id":"pg-1","access_token":"[redacted]","shop_domain":"demo.shop","configs":"[redacted]"}"#
        );
        let secrets: Vec<(&str, &str)> = redacted
            .secrets
            .iter()
            .map(|(name, value)| (name.as_ref(), value.get()))
            .collect();
        assert_eq!(
            secrets,
            [
                ("access_token", r#""int_T""#),
                ("configs", r#"{"api_key":"SUPER-SECRET"}"#)
            ]
        );
    }

    #[test]
    fn a_body_without_secrets_is_left_byte_for_byte() {
        let body = br#"{ "event": "integration.deactivated", "installation_id": "pg-1", "access_token": null }"#;
        assert!(redact(body, FIELDS).is_none());
        assert!(redact(b"[1,2]", FIELDS).is_none());
        assert!(redact(INSTALLED, &[]).is_none());
    }

    #[test]
    fn a_repeated_secret_member_is_redacted_every_time() {
        let body = br#"{"access_token":"a","access_token":"b"}"#;
        let redacted = redact(body, FIELDS).unwrap();
        assert_eq!(
            redacted.body,
            br#"{"access_token":"[redacted]","access_token":"[redacted]"}"#
        );
        assert_eq!(redacted.secrets.len(), 2);
    }

    #[test]
    fn escaped_names_are_recognised_and_written_back_as_json() {
        let body = br#"{"access\u005ftoken":"t","a\"b":1}"#;
        let redacted = redact(body, FIELDS).unwrap();
        assert_eq!(redacted.body, br#"{"access_token":"[redacted]","a\"b":1}"#);
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_record_key() {
        let vault = vault();
        let key = record_key("acme", "shopimind", "pg-1", "access_token");
        let sealed = vault.seal(key.as_bytes(), br#""int_T""#);
        assert!(!sealed.contains("int_T"));
        assert_eq!(vault.open(key.as_bytes(), &sealed).unwrap(), br#""int_T""#);
        let elsewhere = record_key("globex", "shopimind", "pg-1", "access_token");
        assert_eq!(
            vault.open(elsewhere.as_bytes(), &sealed),
            Err(Error::Damaged)
        );
        let other = Vault::from_base64("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=").unwrap();
        assert_eq!(other.open(key.as_bytes(), &sealed), Err(Error::Damaged));
        assert_ne!(other.key_id(), vault.key_id());
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let vault = vault();
        assert_ne!(vault.seal(b"k", b"v"), vault.seal(b"k", b"v"));
    }

    #[test]
    fn a_key_that_is_not_32_bytes_of_base64_is_refused() {
        assert_eq!(
            Vault::from_base64("c2hvcnQ=").unwrap_err(),
            Error::KeyLength(5)
        );
        assert_eq!(
            Vault::from_base64("not base64!").unwrap_err(),
            Error::KeyNotBase64
        );
    }
}
