//! The tenant registry on `<prefix>.tenants.v1` (`schemas/tenants.v1.json`): one record per
//! tenant, integration, endpoint and admin API key, on a compacted topic keyed
//! by [`Key`], so that the topic keeps the latest record of each and a tombstone (a key without
//! a value) removes one. `tenants` reads `tenants.toml` into these records and materializes a
//! registry from them.
//!
//! No secret is in clear: each secret field is a [`Sealed`] value, bound to its record's key and
//! its field's name ([`Key::sealing_context`]), so a sealed secret opens only where it was
//! written. The fields mirror `tenants.toml`'s, so the same validation applies to both.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The schema name every registry record carries.
pub const SCHEMA: &str = "cartstream.tenants.v1";

/// What a record is about, and its Kafka key: the JSON array of its kind and its ids
/// (`["tenant","acme"]`, `["integration","acme","shopify:acme.myshopify.com"]`,
/// `["endpoint","acme","crm"]`, `["api_key","key_0123456789abcdef"]`, `["maintenance"]`), which no id can make
/// look like another's. Ordered tenants first, so that a tenant comes before what it owns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Tenant {
        tenant: String,
    },
    Integration {
        tenant: String,
        id: String,
    },
    Endpoint {
        tenant: String,
        id: String,
    },
    /// A key of the admin API: the deployment's, not a tenant's, even when limited to one.
    ApiKey {
        id: String,
    },
    /// Whether every ingress answers webhooks 503 (`["maintenance"]`).
    Maintenance,
}

impl Key {
    /// The record's kind, as the key and the value's `kind` name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Key::Tenant { .. } => "tenant",
            Key::Integration { .. } => "integration",
            Key::Endpoint { .. } => "endpoint",
            Key::ApiKey { .. } => "api_key",
            Key::Maintenance => "maintenance",
        }
    }

    /// The tenant the record belongs to (or is); `None` for an API key.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Key::Tenant { tenant } => Some(tenant),
            Key::Integration { tenant, .. } | Key::Endpoint { tenant, .. } => Some(tenant),
            Key::ApiKey { .. } | Key::Maintenance => None,
        }
    }

    fn parts(&self) -> Vec<&str> {
        match self {
            Key::Tenant { tenant } => vec!["tenant", tenant],
            Key::Integration { tenant, id } => vec!["integration", tenant, id],
            Key::Endpoint { tenant, id } => vec!["endpoint", tenant, id],
            Key::ApiKey { id } => vec!["api_key", id],
            Key::Maintenance => vec!["maintenance"],
        }
    }

    /// The Kafka key.
    pub fn encode(&self) -> String {
        serde_json::to_string(&self.parts()).expect("strings always serialize")
    }

    /// The key a Kafka key names; `None` for anything but a key as [`Key::encode`] writes it.
    /// Compaction compares bytes, so another spelling of the same array (spaces, escapes)
    /// would be a second record of one entity, which a tombstone of the first leaves alive:
    /// it is refused rather than read as the same key.
    pub fn decode(bytes: &[u8]) -> Option<Key> {
        let parts: Vec<String> = serde_json::from_slice(bytes).ok()?;
        if parts == ["maintenance"] {
            return (bytes == br#"["maintenance"]"#).then_some(Key::Maintenance);
        }
        let key = match <[String; 2]>::try_from(parts) {
            Ok([kind, tenant]) if kind == "tenant" => Key::Tenant { tenant },
            Ok([kind, id]) if kind == "api_key" => Key::ApiKey { id },
            Ok(_) => return None,
            Err(parts) => match <[String; 3]>::try_from(parts).ok()? {
                [kind, tenant, id] if kind == "integration" => Key::Integration { tenant, id },
                [kind, tenant, id] if kind == "endpoint" => Key::Endpoint { tenant, id },
                _ => return None,
            },
        };
        (key.encode().as_bytes() == bytes).then_some(key)
    }

    /// What a secret in this record's `field` is sealed with as additional data: the key and
    /// the field, so that a sealed value copied to another record, or to another field of the
    /// same record (the previous secret put in place of the current one), does not open.
    pub fn sealing_context(&self, field: &str) -> String {
        serde_json::to_string(&(self.parts(), field)).expect("strings always serialize")
    }
}

/// The Kafka key.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// One value of `<prefix>.tenants.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub schema: String,
    #[serde(flatten)]
    pub entity: Entity,
}

/// What a record describes, by its `kind`. Unboxed: a registry holds a few records per
/// tenant, so the size of the largest kind costs nothing worth the indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entity {
    Tenant(Tenant),
    Integration(Integration),
    Endpoint(Endpoint),
    ApiKey(ApiKey),
    Maintenance(Maintenance),
}

/// A tenant (`[[tenant]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    /// `None`: the default window.
    pub inactivity_window_ms: Option<u64>,
    pub allow_plain_http: bool,
    /// The public key of its storefront signals (`pk_…`, `POST /api/tracking/cart`); `None`:
    /// it takes none. Public by design: not sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publishable_key: Option<String>,
    /// The origins (`https://shop.example`) whose pages may send its storefront signals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Disabled by the operator: its deliveries and signals are refused as an unknown
    /// tenant's, and nothing is sent to its endpoints. Absent when enabled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// One of a tenant's integrations (`[[tenant.integration]]`). Its `id` is unique within the
/// tenant; the clue fields are the file's, at most one of them for the provider's clue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integration {
    pub tenant: String,
    pub id: String,
    pub provider: String,
    pub shop_domain: Option<String>,
    pub merchant_id: Option<String>,
    pub store_id: Option<String>,
    pub installation_id: Option<String>,
    pub flexype_store: Option<String>,
    /// Not a secret: it routes deliveries, which its secret then authenticates.
    pub integration_key: Option<String>,
    /// `None`: signed by the deployment's platform app, as every shop connected through it.
    pub secret: Option<Sealed>,
    pub previous_secret: Option<Sealed>,
    /// When `previous_secret` stops verifying (Unix milliseconds); `None`: at the next rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at_ms: Option<i64>,
    pub scheme: Option<Scheme>,
    pub event: Option<String>,
    /// The platform's API token for the store, from OAuth connect (docs/platforms.md); absent
    /// for a store connected otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Sealed>,
    /// A ShopiMind installation's lifecycle, as its signed events set it; absent before the
    /// first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<Installation>,
}

/// Where a ShopiMind installation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Installed: its API key is revoked until it is activated.
    Installed,
    /// Activated, with its configuration: its API key works.
    Active,
    /// Deactivated: its API key is revoked again.
    Inactive,
    /// Uninstalled for good: its configuration and key are deleted.
    Uninstalled,
}

/// What is known of a ShopiMind installation: its phase, when the event that set it was sent,
/// and when the configuration in force was (signed times, Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    pub phase: Phase,
    pub changed_at: i64,
    pub config_at: Option<i64>,
}

/// The clue fields of an integration in the order the registry file reads them, paired with
/// `values` in that order: those that are set.
pub fn clues(values: [&Option<String>; 5]) -> impl Iterator<Item = (&'static str, &str)> {
    [
        "shop_domain",
        "merchant_id",
        "store_id",
        "installation_id",
        "flexype_store",
    ]
    .into_iter()
    .zip(values)
    .filter_map(|(name, value)| Some((name, value.as_deref()?)))
}

impl Integration {
    /// Its clue fields that are set ([`clues`]).
    pub fn clues(&self) -> impl Iterator<Item = (&'static str, &str)> {
        clues([
            &self.shop_domain,
            &self.merchant_id,
            &self.store_id,
            &self.installation_id,
            &self.flexype_store,
        ])
    }
}

/// The generic scheme of an integration, as `tenants.toml` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheme {
    pub auth: String,
    pub header: String,
    pub event_type_path: Option<String>,
    pub delivery_id_header: Option<String>,
    pub delivery_id_path: Option<String>,
}

/// One of a tenant's outbound endpoints (`[[tenant.endpoint]]`), `id` unique within the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub tenant: String,
    pub id: String,
    pub url: String,
    pub secret: Sealed,
    pub previous_secret: Option<Sealed>,
    /// When `previous_secret` stops signing (Unix milliseconds); `None`: at the next rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at_ms: Option<i64>,
    /// `None`: every event.
    pub events: Option<Vec<String>>,
    /// `None`: the global schedule.
    pub retry_schedule_ms: Option<Vec<u64>>,
    /// Disabled by the operator; absent when enabled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// Maintenance mode for the whole deployment: while `on`, every ingress reading the topic
/// answers webhooks 503 with `Retry-After` (as `ingress.maintenance` does for one instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maintenance {
    pub on: bool,
    pub changed_at_ms: i64,
}

/// A key of the admin API. Only the SHA-256 of the key is kept: the key itself is 32 random
/// bytes shown once, when it is made, so its digest cannot be searched back to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    /// What it is for, as its maker said.
    pub name: Option<String>,
    /// What it may do: `read`, `write`, `keys`.
    pub scopes: Vec<String>,
    /// The one tenant it may see and change; `None`: every tenant.
    pub tenant: Option<String>,
    /// SHA-256 of the whole key as presented, hex.
    pub sha256: String,
    pub created_at_ms: i64,
}

/// A secret sealed with AES-256-GCM, with the record's [`Key::sealing_context`] for its field as
/// additional data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Which key sealed it (the first 8 bytes of its SHA-256, hex).
    pub key_id: String,
    /// base64 of nonce ‖ ciphertext ‖ tag.
    pub sealed: String,
}

impl Record {
    pub fn new(entity: Entity) -> Record {
        Record {
            schema: SCHEMA.to_string(),
            entity,
        }
    }

    /// The tenant the record belongs to (or is): a tenant's own records, and an API key limited
    /// to it; `None` for the deployment's (an API key for every tenant, maintenance mode).
    pub fn owner(&self) -> Option<&str> {
        match &self.entity {
            Entity::ApiKey(api_key) => api_key.tenant.as_deref(),
            Entity::Maintenance(_) => None,
            Entity::Tenant(t) => Some(&t.id),
            Entity::Integration(i) => Some(&i.tenant),
            Entity::Endpoint(e) => Some(&e.tenant),
        }
    }

    /// The key this record belongs under.
    pub fn key(&self) -> Key {
        match &self.entity {
            Entity::Tenant(t) => Key::Tenant {
                tenant: t.id.clone(),
            },
            Entity::Integration(i) => Key::Integration {
                tenant: i.tenant.clone(),
                id: i.id.clone(),
            },
            Entity::Endpoint(e) => Key::Endpoint {
                tenant: e.tenant.clone(),
                id: e.id.clone(),
            },
            Entity::ApiKey(k) => Key::ApiKey { id: k.id.clone() },
            Entity::Maintenance(_) => Key::Maintenance,
        }
    }

    /// Every secret field of the record, by name, set or not: the only fields that hold a
    /// secret, each sealed.
    pub fn secrets(&self) -> Vec<(&'static str, Option<&Sealed>)> {
        match &self.entity {
            Entity::Tenant(_) | Entity::ApiKey(_) | Entity::Maintenance(_) => vec![],
            Entity::Integration(Integration {
                secret,
                previous_secret,
                access_token,
                ..
            }) => vec![
                ("secret", secret.as_ref()),
                ("previous_secret", previous_secret.as_ref()),
                ("access_token", access_token.as_ref()),
            ],
            Entity::Endpoint(Endpoint {
                secret,
                previous_secret,
                ..
            }) => vec![
                ("secret", Some(secret)),
                ("previous_secret", previous_secret.as_ref()),
            ],
        }
    }

    /// The record's JSON value.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a registry record always serializes")
    }

    /// A record of this schema: another schema's value is refused, not read as this one.
    pub fn decode(bytes: &[u8]) -> Result<Record, serde_json::Error> {
        use serde::de::Error as _;
        let record: Record = serde_json::from_slice(bytes)?;
        if record.schema != SCHEMA {
            return Err(serde_json::Error::custom(format!(
                "schema {:?} is not {SCHEMA}",
                record.schema
            )));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(n: u8) -> Sealed {
        Sealed {
            key_id: "0123456789abcdef".to_string(),
            sealed: format!("AAAA{n}AAA"),
        }
    }

    /// One record of each kind, every optional field set, and one with none set.
    fn records() -> Vec<Record> {
        let integration = Integration {
            tenant: "acme".to_string(),
            id: "vendera:int_acme_vendera_0001".to_string(),
            provider: "vendera".to_string(),
            shop_domain: None,
            merchant_id: None,
            store_id: None,
            installation_id: None,
            flexype_store: None,
            integration_key: Some("int_acme_vendera_0001".to_string()),
            secret: Some(sealed(1)),
            previous_secret: Some(sealed(2)),
            previous_secret_expires_at_ms: Some(1_796_000_000_000),
            scheme: Some(Scheme {
                auth: "hmac-hex".to_string(),
                header: "X-Vendera-Signature".to_string(),
                event_type_path: Some("event".to_string()),
                delivery_id_header: None,
                delivery_id_path: Some("id".to_string()),
            }),
            event: Some("order.create".to_string()),
            access_token: Some(sealed(5)),
            installation: Some(Installation {
                phase: Phase::Active,
                changed_at: 1_796_000_000,
                config_at: Some(1_796_000_000),
            }),
        };
        let endpoint = Endpoint {
            tenant: "acme".to_string(),
            id: "crm".to_string(),
            url: "https://crm.example/hooks".to_string(),
            secret: sealed(3),
            previous_secret: Some(sealed(4)),
            previous_secret_expires_at_ms: Some(1_796_000_000_000),
            events: Some(vec!["order_completed".to_string()]),
            retry_schedule_ms: Some(vec![0, 60_000]),
            disabled: true,
        };
        vec![
            Record::new(Entity::Tenant(Tenant {
                id: "acme".to_string(),
                inactivity_window_ms: Some(60_000),
                allow_plain_http: true,
                publishable_key: Some("pk_0123456789abcdef0123".to_string()),
                allowed_origins: vec!["https://acme.example".to_string()],
                disabled: true,
            })),
            Record::new(Entity::Tenant(Tenant {
                id: "souq".to_string(),
                inactivity_window_ms: None,
                allow_plain_http: false,
                publishable_key: None,
                allowed_origins: Vec::new(),
                disabled: false,
            })),
            Record::new(Entity::Integration(integration.clone())),
            Record::new(Entity::Integration(Integration {
                id: "shopify:acme.myshopify.com".to_string(),
                provider: "shopify".to_string(),
                shop_domain: Some("acme.myshopify.com".to_string()),
                integration_key: None,
                previous_secret: None,
                previous_secret_expires_at_ms: None,
                scheme: None,
                event: None,
                ..integration.clone()
            })),
            // Signed by the deployment's Shopify app: no secret of its own.
            Record::new(Entity::Integration(Integration {
                id: "shopify:globex.myshopify.com".to_string(),
                provider: "shopify".to_string(),
                shop_domain: Some("globex.myshopify.com".to_string()),
                integration_key: None,
                secret: None,
                previous_secret: None,
                previous_secret_expires_at_ms: None,
                scheme: None,
                event: None,
                ..integration
            })),
            Record::new(Entity::Endpoint(endpoint.clone())),
            Record::new(Entity::Endpoint(Endpoint {
                previous_secret: None,
                previous_secret_expires_at_ms: None,
                events: None,
                retry_schedule_ms: None,
                disabled: false,
                ..endpoint
            })),
            Record::new(Entity::ApiKey(ApiKey {
                id: "key_0123456789abcdef".to_string(),
                name: Some("crm sync".to_string()),
                scopes: vec!["read".to_string(), "write".to_string()],
                tenant: Some("acme".to_string()),
                sha256: "ab".repeat(32),
                created_at_ms: 1_796_000_000_000,
            })),
            Record::new(Entity::Maintenance(Maintenance {
                on: true,
                changed_at_ms: 1_796_000_000_000,
            })),
            Record::new(Entity::ApiKey(ApiKey {
                id: "key_fedcba9876543210".to_string(),
                name: None,
                scopes: vec!["keys".to_string()],
                tenant: None,
                sha256: "cd".repeat(32),
                created_at_ms: 1_796_000_000_000,
            })),
        ]
    }

    #[test]
    fn every_kind_of_record_round_trips_and_matches_its_schema() {
        for record in records() {
            let bytes = record.encode();
            super::super::assert_matches_schema("tenants.v1.json", &bytes);
            assert_eq!(Record::decode(&bytes).unwrap(), record);
            let key = record.key();
            assert_eq!(Key::decode(key.encode().as_bytes()), Some(key.clone()));
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(value["kind"], key.kind());
        }
    }

    #[test]
    fn the_schema_refuses_a_secret_in_clear_and_a_record_of_another_kind() {
        let validator = super::super::validator("tenants.v1.json");
        let mut value = serde_json::to_value(&records()[2]).unwrap();
        assert!(validator.is_valid(&value));
        value["secret"] = "souq-vendera-dev-secret".into();
        assert!(!validator.is_valid(&value));
        let mut value = serde_json::to_value(&records()[0]).unwrap();
        value["kind"] = "api_key".into();
        assert!(!validator.is_valid(&value));
        let mut value = serde_json::to_value(&records()[6]).unwrap();
        assert!(validator.is_valid(&value));
        value["sha256"] = "cs_key_0123456789abcdef.the-key-itself".into();
        assert!(!validator.is_valid(&value), "an API key's digest only");
        let mut value = serde_json::to_value(&records()[6]).unwrap();
        value["scopes"] = serde_json::json!(["everything"]);
        assert!(!validator.is_valid(&value));
    }

    #[test]
    fn a_value_of_another_schema_is_not_read_as_a_record() {
        let mut value = serde_json::to_value(&records()[0]).unwrap();
        value["schema"] = "cartstream.credentials.v1".into();
        assert!(Record::decode(value.to_string().as_bytes()).is_err());
    }

    #[test]
    fn record_keys_cannot_be_confused_by_a_separator_or_a_kind() {
        let keys = [
            Key::Integration {
                tenant: "a/b".to_string(),
                id: "c".to_string(),
            },
            Key::Integration {
                tenant: "a".to_string(),
                id: "b/c".to_string(),
            },
            Key::Integration {
                tenant: "a\",\"b".to_string(),
                id: "c".to_string(),
            },
            Key::Endpoint {
                tenant: "a/b".to_string(),
                id: "c".to_string(),
            },
            Key::Tenant {
                tenant: "a/b/c".to_string(),
            },
            Key::ApiKey {
                id: "a/b/c".to_string(),
            },
            Key::Maintenance,
        ];
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(Key::decode(key.encode().as_bytes()).as_ref(), Some(key));
            for other in &keys[i + 1..] {
                assert_ne!(key.encode(), other.encode());
                assert_ne!(
                    key.sealing_context("secret"),
                    other.sealing_context("secret")
                );
            }
            assert_ne!(
                key.sealing_context("secret"),
                key.sealing_context("previous_secret")
            );
        }
    }

    #[test]
    fn only_keys_spelled_as_they_are_written_are_read() {
        for bytes in [
            &br#"[ "tenant", "acme" ]"#[..],
            br#"["tenant","\u0061cme"]"#,
            br#"["tenant","acme","extra"]"#,
            br#"["integration","acme"]"#,
            br#"["api_key","k1","extra"]"#,
            br#"["api_key"]"#,
            br#"[ "maintenance" ]"#,
            br#"["maintenance","on"]"#,
            br#"{"tenant":"acme"}"#,
            b"acme",
        ] {
            assert_eq!(
                Key::decode(bytes),
                None,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert_eq!(
            Key::decode(br#"["tenant","acme"]"#),
            Some(Key::Tenant {
                tenant: "acme".to_string()
            })
        );
    }
}
