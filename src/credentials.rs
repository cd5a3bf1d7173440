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
//! Redaction fails closed: a body whose members cannot be read one by one, or which names a
//! secret member twice, is refused ([`Refused`], answered 400) rather than produced as it came.
//! The delivery id of such a platform's body is a keyed digest ([`Vault::delivery_id`]), so that
//! the id published beside the redacted body cannot confirm a guess of what was redacted.
//!
//! Pure: no Kafka, no I/O. The record is [`crate::topics::credentials`].

use std::borrow::Cow;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::providers::Key;
use crate::topics::credentials::Credential;

/// What a redacted value is replaced with in the inbound record.
pub const REDACTED: &str = "[redacted]";

const NONCE_BYTES: usize = 12;

/// What the key of delivery ids is derived from the credentials key with
/// ([`Vault::delivery_id`]).
const DELIVERY_ID_KEY: &[u8] = b"cartstream delivery id";

/// What the key of OAuth connect's signatures is derived from a sealing key with
/// ([`Vault::state_key`]).
const STATE_KEY: &[u8] = b"cartstream oauth state";

/// A body with its secret fields redacted, and the values taken out.
#[derive(Debug)]
pub struct Redacted<'a> {
    /// The body to produce: the same members in the same order, each secret value replaced by
    /// `"[redacted]"`, the others byte for byte (the whitespace between members is not kept).
    pub body: Vec<u8>,
    /// Each redacted field and its value as sent, in body order.
    pub secrets: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// Why a body of a platform whose payloads carry secrets is refused (400): where its secrets
/// are, or which of two values is the secret, cannot be told, so it is not produced at all.
/// The texts are static: they are sent in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not a JSON object whose members can be read one by one (bytes that are not UTF-8, an
    /// array, a syntax error).
    #[error("body is not a JSON object whose members can be read, so the secrets it may carry cannot be kept out of the record")]
    Unreadable,
    /// A secret member named more than once (escapes in a name count as what they spell).
    #[error("body repeats the secret member {0}")]
    Repeated(&'static str),
}

/// Redacts the top-level `fields` of a JSON object body. `Ok(None)` when there are no `fields`,
/// or the body has none of them (or only `null` ones): it is then produced byte for byte.
/// With `fields`, a body whose members cannot be read, or that names one of them twice, is
/// [`Refused`]: never produced with a secret left in it, and never with two values for one.
pub fn redact<'a>(
    body: &'a [u8],
    fields: &[&'static str],
) -> Result<Option<Redacted<'a>>, Refused> {
    if fields.is_empty() {
        return Ok(None);
    }
    let members = crate::providers::normalize::members(body).ok_or(Refused::Unreadable)?;
    let mut named = Vec::with_capacity(fields.len());
    for (name, _) in &members {
        if let Some(&field) = fields.iter().find(|field| **field == name.as_ref()) {
            if named.contains(&field) {
                return Err(Refused::Repeated(field));
            }
            named.push(field);
        }
    }
    let secret = |name: &str, value: &RawValue| fields.contains(&name) && value.get() != "null";
    if !members.iter().any(|(name, value)| secret(name, value)) {
        return Ok(None);
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
    Ok(Some(Redacted { body: out, secrets }))
}

/// The key credentials are sealed with (`ingress.credentials_key`: 32 bytes, base64).
#[derive(Clone)]
pub struct Vault {
    cipher: Aes256Gcm,
    key_id: String,
    /// HMAC-SHA256 of [`DELIVERY_ID_KEY`] under the credentials key: keys delivery ids.
    id_key: Key,
    /// HMAC-SHA256 of [`STATE_KEY`] under the key: signs OAuth connect's links and states.
    state_key: Key,
}

/// Never shows the key.
impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vault {{ key_id: {:?} }}", self.key_id)
    }
}

/// Keys that open what was sealed under any of them and seal under the first: a key being
/// replaced stays among the previous ones until nothing sealed under it is left.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: Vault,
    previous: Vec<Vault>,
}

impl Keyring {
    pub fn new(current: Vault, previous: Vec<Vault>) -> Keyring {
        Keyring { current, previous }
    }

    /// The key new values are sealed with.
    pub fn current(&self) -> &Vault {
        &self.current
    }

    /// The key named `key_id`, or why none is.
    pub fn find(&self, key_id: &str) -> Result<&Vault, Error> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|vault| vault.key_id() == key_id)
            .ok_or_else(|| Error::OtherKey {
                found: key_id.to_string(),
                expected: std::iter::once(&self.current)
                    .chain(&self.previous)
                    .map(Vault::key_id)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl From<Vault> for Keyring {
    fn from(current: Vault) -> Keyring {
        Keyring::new(current, Vec::new())
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
    /// Also a record whose tenant, provider, installation or field was rewritten, or that is
    /// filed under another record's key.
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
            id_key: Key::new(&Key::new(&key).sign(&[DELIVERY_ID_KEY])),
            state_key: Key::new(&Key::new(&key).sign(&[STATE_KEY])),
        })
    }

    /// The key OAuth connect signs its install links and states with, derived from this one
    /// (`crate::platforms::oauth`): a key of its own, so a signature never opens a seal.
    pub fn state_key(&self) -> &Key {
        &self.state_key
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The delivery id of a body of a platform whose payloads carry secrets, in place of
    /// [`crate::providers::body_hash_id`] and in its shape: `sha256:` and the lowercase hex
    /// HMAC-SHA256 of the body as received, under HMAC-SHA256(credentials key,
    /// `"cartstream delivery id"`). The same body gets the same id, so a retried delivery still
    /// de-duplicates; but without the key, the id cannot confirm a guess of a redacted value.
    pub fn delivery_id(&self, body: &[u8]) -> String {
        format!("sha256:{}", hex::encode(self.id_key.sign(&[body])))
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

    /// Seals `value` into `record` (its `key_id` and `sealed`), bound to the record's tenant,
    /// provider, installation and field ([`Credential::context`]).
    pub fn seal_record(&self, record: &mut Credential, value: &[u8]) {
        record.key_id = self.key_id.clone();
        record.sealed = self.seal(record.context().as_bytes(), value);
    }

    /// Opens the value of a record read under the Kafka key `key`, checking it was sealed with
    /// this key, for the tenant, provider, installation and field the record names, and is
    /// filed under its own key: a record rewritten on the topic opens for nobody.
    pub fn open_record(&self, key: &[u8], record: &Credential) -> Result<Vec<u8>, Error> {
        if record.key_id != self.key_id {
            return Err(Error::OtherKey {
                found: record.key_id.clone(),
                expected: self.key_id.clone(),
            });
        }
        let context = record.context();
        if key != context.as_bytes() {
            return Err(Error::Damaged);
        }
        self.open(context.as_bytes(), &record.sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::credentials::record_key;

    const INSTALLED: &[u8] = br#"{"event":"integration.installed","installation_id":"pg-1","access_token":"int_T","shop_domain":"demo.shop","configs":{"api_key":"SUPER-SECRET"}}"#;
    const FIELDS: &[&str] = &["access_token", "refresh_token", "configs"];
    const KEYED_ID_OF_EMPTY_OBJECT: &str =
        "sha256:e7b47e70b7b8dd5b94837995b5ee5e6bd52335121820348178797851530c9bf8";

    fn vault() -> Vault {
        Vault::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap()
    }

    #[test]
    fn secret_values_are_replaced_and_every_other_member_kept_in_order() {
        let redacted = redact(INSTALLED, FIELDS).unwrap().unwrap();
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
        assert!(redact(body, FIELDS).unwrap().is_none());
        assert!(redact(INSTALLED, &[]).unwrap().is_none());
        // A platform without secrets: its bodies are not read at all.
        assert!(redact(b"[1,2]", &[]).unwrap().is_none());
        assert!(redact(b"\xff", &[]).unwrap().is_none());
    }

    #[test]
    fn a_body_whose_members_cannot_be_read_is_refused_not_produced_as_it_came() {
        for body in [
            &b"{\"access_token\":\"int_T\",\"shop_name\":\"Caf\xe9\"}"[..],
            br#"["integration.installed","pg-1","int_T"]"#,
            br#"{"access_token":"int_T""#,
            br#"{"access_token":"int_T"} {}"#,
            b"",
        ] {
            assert_eq!(
                redact(body, FIELDS).unwrap_err(),
                Refused::Unreadable,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_repeated_secret_member_is_refused() {
        for (body, field) in [
            (
                &br#"{"access_token":"a","access_token":"b"}"#[..],
                "access_token",
            ),
            (
                br#"{"access_token":null,"access_token":"b"}"#,
                "access_token",
            ),
            (
                br#"{"configs":{},"shop":1,"config\u0073":{"k":1}}"#,
                "configs",
            ),
        ] {
            assert_eq!(
                redact(body, FIELDS).unwrap_err(),
                Refused::Repeated(field),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Other members may repeat: they are produced as sent.
        let body = br#"{"shop":1,"shop":2,"access_token":"t"}"#;
        assert_eq!(
            redact(body, FIELDS).unwrap().unwrap().body,
            br#"{"shop":1,"shop":2,"access_token":"[redacted]"}"#
        );
    }

    #[test]
    fn escaped_names_are_recognised_and_written_back_as_json() {
        let body = br#"{"access\u005ftoken":"t","a\"b":1}"#;
        let redacted = redact(body, FIELDS).unwrap().unwrap();
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
    fn a_record_whose_tenant_provider_installation_or_field_was_rewritten_does_not_open() {
        let vault = vault();
        let key = record_key("acme", "shopimind", "pg-1", "access_token");
        // Sealed as records always were, under their Kafka key: still readable.
        let record = Credential {
            schema: crate::topics::credentials::SCHEMA.to_string(),
            tenant: "acme".to_string(),
            provider: "shopimind".to_string(),
            installation: "pg-1".to_string(),
            field: "access_token".to_string(),
            event_type: Some("integration.installed".to_string()),
            delivery_id: "sha256:00".to_string(),
            received_at: "2026-12-03T10:00:00.000Z".to_string(),
            key_id: vault.key_id().to_string(),
            sealed: vault.seal(key.as_bytes(), br#""int_T""#),
        };
        assert_eq!(
            vault.open_record(key.as_bytes(), &record).unwrap(),
            br#""int_T""#
        );
        let mut resealed = record.clone();
        vault.seal_record(&mut resealed, br#""int_T""#);
        assert_ne!(resealed.sealed, record.sealed);
        assert_eq!(
            vault.open_record(key.as_bytes(), &resealed).unwrap(),
            br#""int_T""#
        );
        let rewrites: [fn(&mut Credential); 4] = [
            |r| r.tenant = "globex".to_string(),
            |r| r.provider = "shopify".to_string(),
            |r| r.installation = "pg-2".to_string(),
            |r| r.field = "refresh_token".to_string(),
        ];
        for rewrite in rewrites {
            let mut moved = record.clone();
            rewrite(&mut moved);
            // Neither under the key it was filed under, nor under the one its fields now make.
            let its_key = record_key(
                &moved.tenant,
                &moved.provider,
                &moved.installation,
                &moved.field,
            );
            for key in [&key, &its_key] {
                assert!(
                    vault.open_record(key.as_bytes(), &moved).is_err(),
                    "{moved:?} opened under {key}"
                );
            }
        }
    }

    #[test]
    fn delivery_ids_are_keyed_digests_in_the_shape_of_body_hashes() {
        let vault = vault();
        let id = vault.delivery_id(INSTALLED);
        assert_eq!(id, vault.delivery_id(INSTALLED), "a retry gets the same id");
        let plain = crate::providers::body_hash_id(INSTALLED);
        assert_ne!(id, plain);
        assert_eq!(id.len(), plain.len());
        let digits = id.strip_prefix("sha256:").unwrap();
        assert!(digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(id, vault.delivery_id(b"{}"));
        let other = Vault::from_base64("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=").unwrap();
        assert_ne!(id, other.delivery_id(INSTALLED));
        // HMAC-SHA256(HMAC-SHA256(key, "cartstream delivery id"), "{}"), computed elsewhere
        // (`openssl dgst -sha256 -mac HMAC`) for the key "0123456789abcdef0123456789abcdef".
        assert_eq!(vault.delivery_id(b"{}"), KEYED_ID_OF_EMPTY_OBJECT);
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
