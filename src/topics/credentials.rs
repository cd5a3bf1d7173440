//! A sealed secret on `<prefix>.credentials.v1` (`schemas/credentials.v1.json`), written by the
//! ingress ([`crate::credentials`]) and read back by `cartstream credentials`. The topic is
//! compacted on [`record_key`].

use serde::{Deserialize, Serialize};

/// The schema name every credential record carries.
pub const SCHEMA: &str = "cartstream.credentials.v1";

/// One record of `<prefix>.credentials.v1` (`schemas/credentials.v1.json`). Its Kafka key is
/// [`Credential::context`]; the sealed value is bound to it, so to the tenant, provider,
/// installation and field the record names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub schema: String,
    pub tenant: String,
    pub provider: String,
    /// The platform's installation (ShopiMind's `installation_id`); empty when the delivery named
    /// none.
    pub installation: String,
    /// The body field the value came from.
    pub field: String,
    pub event_type: Option<String>,
    pub delivery_id: String,
    /// RFC 3339, milliseconds.
    pub received_at: String,
    /// Which key sealed it (the first 8 bytes of its SHA-256, hex).
    pub key_id: String,
    /// base64 of nonce ‖ AES-256-GCM ciphertext ‖ tag of the field's JSON value as sent, with
    /// [`Credential::context`] as additional data.
    pub sealed: String,
}

impl Credential {
    /// What the sealed value is bound to, and the record's Kafka key: [`record_key`] of the
    /// tenant, provider, installation and field the record names — the fields
    /// `cartstream credentials` selects and prints by.
    pub fn context(&self) -> String {
        record_key(
            &self.tenant,
            &self.provider,
            &self.installation,
            &self.field,
        )
    }
}

/// The compaction key of a credential: one per tenant, provider, installation and field, so a
/// later `config_updated` replaces the configuration but not the access token of the install.
pub fn record_key(tenant: &str, provider: &str, installation: &str, field: &str) -> String {
    serde_json::to_string(&[tenant, provider, installation, field])
        .expect("strings always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_round_trips_and_matches_its_schema() {
        let record = Credential {
            schema: SCHEMA.to_string(),
            tenant: "acme".to_string(),
            provider: "shopimind".to_string(),
            installation: "pg-1".to_string(),
            field: "access_token".to_string(),
            event_type: Some("integration.installed".to_string()),
            delivery_id: "sha256:00".to_string(),
            received_at: "2026-12-03T10:00:00.000Z".to_string(),
            key_id: "0123456789abcdef".to_string(),
            sealed: "AAAA".to_string(),
        };
        let bytes = serde_json::to_vec(&record).unwrap();
        super::super::assert_matches_schema("credentials.v1.json", &bytes);
        assert_eq!(
            serde_json::from_slice::<Credential>(&bytes).unwrap(),
            record
        );
    }

    #[test]
    fn record_keys_cannot_be_confused_by_the_separator() {
        assert_ne!(
            record_key("a/b", "shopimind", "c", "access_token"),
            record_key("a", "shopimind", "b/c", "access_token")
        );
    }
}
