//! What one instance's ingress saw of one integration, on the compacted
//! `<prefix>.integration-status.v1` (`schemas/integration_status.v1.json`): each ingress writes
//! its view of an integration when it changed, at most every few seconds, and the admin API of
//! any instance merges every instance's views into the integration's status.

use serde::{Deserialize, Serialize};

/// The schema name every record carries.
pub const SCHEMA: &str = "cartstream.integration_status.v1";

/// One instance's view of one integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub schema: String,
    /// The instance that saw it (its host name and a random part, new at each start).
    pub instance: String,
    pub tenant_id: String,
    /// The provider's slug.
    pub provider: String,
    pub integration_key: Option<String>,
    /// The shop domain, merchant id or store id the integration names, when it names one.
    pub clue: Option<String>,
    #[serde(flatten)]
    pub view: View,
}

/// What was seen, as Unix milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The last delivery that verified.
    pub last_authentic_ms: Option<i64>,
    /// The last delivery the platform marked as its test that verified.
    pub last_test_ms: Option<i64>,
    /// The last delivery naming the integration whose signature did not verify …
    pub last_failure_ms: Option<i64>,
    /// … and why.
    pub last_failure_reason: Option<String>,
}

impl View {
    /// What two views say together: the later of each moment, and the later failure with its
    /// reason.
    pub fn merge(self, other: View) -> View {
        let (failure_ms, reason) = match (self.last_failure_ms, other.last_failure_ms) {
            (Some(a), Some(b)) if b > a => (other.last_failure_ms, other.last_failure_reason),
            (None, Some(_)) => (other.last_failure_ms, other.last_failure_reason),
            _ => (self.last_failure_ms, self.last_failure_reason),
        };
        View {
            last_authentic_ms: self.last_authentic_ms.max(other.last_authentic_ms),
            last_test_ms: self.last_test_ms.max(other.last_test_ms),
            last_failure_ms: failure_ms,
            last_failure_reason: reason,
        }
    }
}

impl Record {
    /// The record's key: the integration and the instance, as a compact JSON array.
    pub fn key(&self) -> String {
        serde_json::to_string(&(
            &self.tenant_id,
            &self.provider,
            &self.integration_key,
            &self.clue,
            &self.instance,
        ))
        .expect("strings serialize")
    }

    /// Whether the record is about the integration `(tenant, provider, key, clue)`.
    pub fn is_about(
        &self,
        tenant: &str,
        provider: &str,
        key: Option<&str>,
        clue: Option<&str>,
    ) -> bool {
        self.tenant_id == tenant
            && self.provider == provider
            && self.integration_key.as_deref() == key
            && self.clue.as_deref() == clue
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a status record serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(authentic: Option<i64>, test: Option<i64>, failure: Option<(i64, &str)>) -> View {
        View {
            last_authentic_ms: authentic,
            last_test_ms: test,
            last_failure_ms: failure.map(|f| f.0),
            last_failure_reason: failure.map(|f| f.1.to_string()),
        }
    }

    #[test]
    fn views_merge_into_the_latest_of_each_moment_and_the_latest_failure() {
        let a = view(
            Some(2_000),
            None,
            Some((5_000, "missing X-Shopify-Hmac-Sha256")),
        );
        let b = view(
            Some(3_000),
            Some(1_000),
            Some((4_000, "invalid X-Shopify-Hmac-Sha256")),
        );
        let merged = view(
            Some(3_000),
            Some(1_000),
            Some((5_000, "missing X-Shopify-Hmac-Sha256")),
        );
        assert_eq!(a.clone().merge(b.clone()), merged);
        assert_eq!(b.merge(a), merged, "in either order");
        assert_eq!(View::default().merge(View::default()), View::default());
        let failed = view(None, None, Some((1, "why")));
        assert_eq!(View::default().merge(failed.clone()), failed);
    }

    #[test]
    fn a_record_round_trips_matches_its_schema_and_is_keyed_by_integration_and_instance() {
        let record = Record {
            schema: SCHEMA.to_string(),
            instance: "ingress-0-3f9a2c1e".to_string(),
            tenant_id: "acme".to_string(),
            provider: "shopify".to_string(),
            integration_key: None,
            clue: Some("acme.myshopify.com".to_string()),
            view: view(Some(2_000), None, Some((5_000, "why"))),
        };
        let bytes = record.encode();
        super::super::assert_matches_schema("integration_status.v1.json", &bytes);
        assert_eq!(Record::decode(&bytes).unwrap(), record);
        assert_eq!(
            record.key(),
            r#"["acme","shopify",null,"acme.myshopify.com","ingress-0-3f9a2c1e"]"#
        );
        assert!(record.is_about("acme", "shopify", None, Some("acme.myshopify.com")));
        assert!(!record.is_about("acme", "shopify", Some("int_1"), None));
    }
}
