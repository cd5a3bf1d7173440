//! Secret key material of one integration, prepared once at load time.
//!
//! Each key keeps a pre-keyed HMAC-SHA256 state (cloned per request, so the key schedule is
//! not recomputed on the hot path) and a SHA-256 digest of the secret for token comparisons
//! that leak neither content nor length. Debug output never shows key bytes.
//!
//! [`secret_clue`] turns a secret into a look-up key for platforms whose secret also names the
//! integration (EasyOrders), so that finding the integration leaks nothing about the secret.

use std::fmt;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Error;

type HmacSha256 = Hmac<Sha256>;

/// One secret (or, for asymmetric schemes, one public key), ready to verify requests.
#[derive(Clone)]
pub struct Key(Material);

#[derive(Clone)]
enum Material {
    Secret {
        mac: HmacSha256,
        digest: [u8; 32],
        len: usize,
    },
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl Key {
    /// A shared secret for HMACs and token comparisons.
    pub fn new(secret: &[u8]) -> Self {
        Key(Material::Secret {
            mac: HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length"),
            digest: Sha256::digest(secret).into(),
            len: secret.len(),
        })
    }

    /// The length in bytes of a shared secret (after any decoding); `None` for a public key.
    pub fn secret_len(&self) -> Option<usize> {
        match &self.0 {
            Material::Secret { len, .. } => Some(*len),
            Material::Ed25519(_) => None,
        }
    }

    /// The SHA-256 of a shared secret, to find secrets used twice at load time; `None` for a
    /// public key. Never logged or stored.
    pub fn secret_digest(&self) -> Option<[u8; 32]> {
        match &self.0 {
            Material::Secret { digest, .. } => Some(*digest),
            Material::Ed25519(_) => None,
        }
    }

    /// An Ed25519 public key (Standard Webhooks `v1a`).
    pub fn ed25519(public_key: &[u8]) -> Option<Self> {
        let bytes: &[u8; 32] = public_key.try_into().ok()?;
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .ok()
            .map(|k| Key(Material::Ed25519(k)))
    }

    /// HMAC-SHA256 over the concatenation of `parts`, without concatenating them.
    /// A public key cannot sign and yields zeros.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        match &self.0 {
            Material::Secret { mac, .. } => {
                let mut mac = mac.clone();
                for part in parts {
                    mac.update(part);
                }
                mac.finalize().into_bytes().into()
            }
            Material::Ed25519(_) => [0; 32],
        }
    }

    /// HMAC-SHA256 over the concatenation of `parts`; `None` for a public key.
    fn mac(&self, parts: &[&[u8]]) -> Option<[u8; 32]> {
        match &self.0 {
            Material::Secret { .. } => Some(self.sign(parts)),
            Material::Ed25519(_) => None,
        }
    }

    /// Whether `tag` is the HMAC of `parts`, compared in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        match &self.0 {
            Material::Secret { mac, .. } => {
                let mut mac = mac.clone();
                for part in parts {
                    mac.update(part);
                }
                mac.verify_slice(tag).is_ok()
            }
            Material::Ed25519(_) => false,
        }
    }

    /// Whether `signature` is this public key's Ed25519 signature of `message`.
    pub fn verify_ed25519(&self, message: &[u8], signature: &[u8]) -> bool {
        match (&self.0, ed25519_dalek::Signature::from_slice(signature)) {
            (Material::Ed25519(key), Ok(signature)) => {
                key.verify_strict(message, &signature).is_ok()
            }
            _ => false,
        }
    }

    /// Whether `candidate` equals the secret itself, compared in constant time over digests.
    pub fn matches_token(&self, candidate: &[u8]) -> bool {
        match &self.0 {
            Material::Secret { digest, .. } => {
                let candidate: [u8; 32] = Sha256::digest(candidate).into();
                candidate.ct_eq(digest).into()
            }
            Material::Ed25519(_) => false,
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(***)")
    }
}

/// A look-up key for a secret that also names its integration: the hex HMAC-SHA256 of the
/// secret under a key drawn at random once per process.
///
/// The registry indexes such integrations by this digest and the ingress looks up the digest of
/// the presented secret, so the look-up compares digests an attacker can neither choose nor
/// predict: its timing says nothing about the secrets. The digests mean nothing outside this
/// process and are never stored.
pub fn secret_clue(secret: &[u8]) -> String {
    static PROCESS_KEY: OnceLock<Key> = OnceLock::new();
    let key = PROCESS_KEY.get_or_init(|| {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .expect("the operating system provides random bytes (getrandom)");
        Key::new(&bytes)
    });
    hex::encode(key.sign(&[secret]))
}

/// The keys of one integration: the current secret first, then the previous one during a
/// rotation. A request is authentic when any key verifies it.
#[derive(Clone, Debug)]
pub struct Keys(Vec<Key>);

impl Keys {
    pub fn new(current: Key, previous: Option<Key>) -> Self {
        Keys(std::iter::once(current).chain(previous).collect())
    }

    /// The key used when the tenant is unknown, so that the answer (and its timing: one key,
    /// as an integration outside a rotation has) is the one a wrong signature gets. It is
    /// drawn at random when first used and never leaves the process: were it known, a
    /// delivery signed with it would verify for an unknown store and fail for a known one,
    /// and the different answers would tell which stores exist.
    pub fn unknown_tenant() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).expect("the operating system provides random bytes");
            Keys::new(Key::new(&key), None)
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.0.iter()
    }

    /// The work of an HMAC check whose answer is not wanted, so that a refusal made without
    /// one (no scheme, a token scheme) takes as long as one made by a failed check.
    pub fn spend_hmac(&self, parts: &[&[u8]]) {
        std::hint::black_box(self.verify(parts, &[0; 32]));
    }

    /// Whether any key's HMAC of `parts` equals `tag`.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        // Every key is tried even after a match, so timing does not tell which one matched.
        self.0
            .iter()
            .fold(false, |ok, key| key.verify(parts, tag) | ok)
    }

    /// Each secret's HMAC of `parts`, computed once, for a header that lists several candidate
    /// tags: comparing a tag then costs no pass over the body.
    pub fn macs(&self, parts: &[&[u8]]) -> Macs {
        Macs(self.0.iter().filter_map(|key| key.mac(parts)).collect())
    }

    /// `Ok` when `tag` is the HMAC of `parts` under any key; `Unauthorized(invalid)` when it is
    /// not, or when the signature header did not decode (`tag` is `None`).
    pub fn require_hmac(
        &self,
        parts: &[&[u8]],
        tag: Option<&[u8]>,
        invalid: &'static str,
    ) -> Result<(), Error> {
        match tag {
            Some(tag) if self.verify(parts, tag) => Ok(()),
            _ => Err(Error::Unauthorized(invalid)),
        }
    }

    /// `Ok` when `candidate` equals any of the secrets, else `Unauthorized(invalid)`.
    pub fn require_token(&self, candidate: &[u8], invalid: &'static str) -> Result<(), Error> {
        if self.matches_token(candidate) {
            Ok(())
        } else {
            Err(Error::Unauthorized(invalid))
        }
    }

    /// Whether any public key signed `message` with `signature`.
    pub fn verify_ed25519(&self, message: &[u8], signature: &[u8]) -> bool {
        self.0
            .iter()
            .fold(false, |ok, key| key.verify_ed25519(message, signature) | ok)
    }

    /// Whether `candidate` equals any of the secrets.
    pub fn matches_token(&self, candidate: &[u8]) -> bool {
        self.0
            .iter()
            .fold(false, |ok, key| key.matches_token(candidate) | ok)
    }
}

/// The HMACs of one message under each secret of an integration ([`Keys::macs`]).
pub struct Macs(Vec<[u8; 32]>);

impl Macs {
    /// Whether `tag` equals any of the HMACs, compared in constant time against every one.
    pub fn matches(&self, tag: &[u8]) -> bool {
        self.0
            .iter()
            .fold(false, |ok, mac| bool::from(mac[..].ct_eq(tag)) | ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_current_and_previous_but_not_others() {
        let keys = Keys::new(Key::new(b"new"), Some(Key::new(b"old")));
        let by_old = Key::new(b"old").sign(&[b"body"]);
        let by_other = Key::new(b"other").sign(&[b"body"]);
        assert!(keys.verify(&[b"body"], &by_old));
        assert!(
            keys.verify(&[b"bo", b"dy"], &by_old),
            "parts are concatenated"
        );
        assert!(!keys.verify(&[b"body"], &by_other));
        assert!(
            !keys.verify(&[b"body"], &by_old[..31]),
            "truncated tags are refused"
        );
    }

    #[test]
    fn macs_computed_once_match_the_tags_verify_accepts() {
        let keys = Keys::new(Key::new(b"new"), Some(Key::new(b"old")));
        let macs = keys.macs(&[b"bo", b"dy"]);
        assert!(macs.matches(&Key::new(b"old").sign(&[b"body"])));
        assert!(macs.matches(&Key::new(b"new").sign(&[b"body"])));
        assert!(!macs.matches(&Key::new(b"other").sign(&[b"body"])));
        assert!(!macs.matches(&Key::new(b"new").sign(&[b"body"])[..31]));
        assert!(!macs.matches(b""));
    }

    #[test]
    fn tokens_match_exactly() {
        let keys = Keys::new(Key::new(b"s3cret"), None);
        assert!(keys.matches_token(b"s3cret"));
        assert!(!keys.matches_token(b"s3cre"));
        assert!(!keys.matches_token(b"s3cret "));
    }

    #[test]
    fn secret_clues_are_stable_within_the_process_and_hide_the_secret() {
        let clue = secret_clue(b"s3cret");
        assert_eq!(clue, secret_clue(b"s3cret"));
        assert_ne!(clue, secret_clue(b"s3cret "));
        assert_ne!(
            clue,
            hex::encode(Sha256::digest(b"s3cret")),
            "keyed, not a bare hash"
        );
        assert_eq!(clue.len(), 64);
    }

    #[test]
    fn debug_hides_key_material() {
        let keys = Keys::new(Key::new(b"visible?"), None);
        assert!(!format!("{keys:?}").contains("visible"));
    }
}
