//! An endpoint's signing secret, as the tenants file configures it and delivery signs with it.

use crate::providers::standard::{whsec_key, SecretError, Unprefixed};
use crate::providers::Key;

/// An endpoint's signing secret, ready for both schemes. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret {
    /// Keyed by the secret's bytes as configured: `{prefix}-Signature`.
    plain: Key,
    /// Keyed by the decoded `whsec_` key, or the secret's bytes: `webhook-signature`.
    standard: Key,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    pub fn new(value: &str) -> Result<Self, &'static str> {
        if value.is_empty() {
            return Err("secret is empty");
        }
        // An endpoint's secret without the prefix signs with its own bytes.
        let standard = whsec_key(value, Unprefixed::Raw).map_err(|e| match e {
            SecretError::NotBase64 => "a whsec_ secret must be followed by base64",
            SecretError::Empty => "secret is empty",
        })?;
        Ok(Secret {
            plain: Key::new(value.as_bytes()),
            standard,
        })
    }

    /// The key of the `{prefix}-Signature` header: the secret's bytes as configured.
    pub fn plain(&self) -> &Key {
        &self.plain
    }

    /// The key of the Standard Webhooks signature: the decoded `whsec_` key, or the bytes.
    pub fn standard(&self) -> &Key {
        &self.standard
    }

    /// The length in bytes of the key that signs: the decoded key of a `whsec_` secret, else
    /// the secret's own bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.standard.secret_len().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let secret = Secret::new("do-not-print").unwrap();
        assert!(!format!("{secret:?}").contains("do-not-print"));
        assert!(Secret::new("").is_err());
        assert!(Secret::new("whsec_***").is_err());
    }
}
