//! `/admin/v1/tenants/{id}/integrations…`: connecting a tenant to a platform, replacing an
//! integration's secret, disconnecting it.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::Response;
use serde::{Deserialize, Serialize};

use super::{json, not_found, parse_body, present, to_json, ApiError, Tenants};
use crate::providers::{self, Provider, SECRET_CLUE};
use crate::tenants::{integration_id, seal_for, valid_clue};
use crate::topics::registry::{self as topic, Entity, Key, Record};

/// `POST /admin/v1/tenants/{id}/integrations`: the fields of a `[[tenant.integration]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewIntegration {
    provider: String,
    #[serde(default, deserialize_with = "present")]
    shop_domain: Option<String>,
    #[serde(default, deserialize_with = "present")]
    merchant_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    store_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    installation_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    flexype_store: Option<String>,
    /// Generated when the integration has no clue to be found by.
    #[serde(default, deserialize_with = "present")]
    integration_key: Option<String>,
    /// Generated for `standard`, where the receiver chooses it; the platform's otherwise.
    /// Absent for a shop connected through the deployment's platform app (Shopify, Salla),
    /// which signs with the app's secret.
    #[serde(default, deserialize_with = "present")]
    secret: Option<String>,
}

impl NewIntegration {
    /// The clue fields given, in the order the registry file reads them.
    fn clues(&self) -> impl Iterator<Item = (&'static str, &str)> {
        topic::clues([
            &self.shop_domain,
            &self.merchant_id,
            &self.store_id,
            &self.installation_id,
            &self.flexype_store,
        ])
    }
}

/// `POST …/integrations/{integration}/secret`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSecret {
    /// Generated for `standard`.
    #[serde(default, deserialize_with = "present")]
    secret: Option<String>,
    /// How long the replaced secret still verifies; 24 hours when absent.
    #[serde(default, deserialize_with = "present")]
    grace_period_ms: Option<serde_json::Number>,
}

/// `POST /admin/v1/tenants/{id}/connect`: the store to connect through OAuth.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConnection {
    provider: String,
    /// The store, where the platform's consent screen is the store's (Shopify's shop domain).
    #[serde(default, deserialize_with = "present")]
    shop: Option<String>,
}

/// What a created integration, or a new secret, is answered with.
#[derive(Debug, Serialize)]
struct Connected {
    id: String,
    provider: String,
    integration_key: Option<String>,
    /// Where the platform posts, on the ingress port.
    webhook_path: String,
    /// The same, from `ingress.public_url`; `None` without it.
    webhook_url: Option<String>,
    /// Signed with the deployment's platform app's secret rather than one of its own.
    signed_by_app: bool,
    /// A secret cartstream generated, shown this once; absent when it was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// After a rotation: when the replaced secret stops verifying.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_secret_expires_at: Option<String>,
    /// A ShopiMind installation nobody had claimed: the sealed fields it sent (its
    /// `access_token`), now the tenant's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    claimed: Vec<String>,
}

impl Tenants {
    /// `POST /admin/v1/tenants/{id}/integrations`: 201 with where the platform posts.
    pub(super) async fn create_integration(
        &self,
        tenant: &str,
        body: &[u8],
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let new: NewIntegration = parse_body(body)?;
        let provider = providers::find(&new.provider).ok_or_else(|| {
            let known: Vec<_> = providers::all().map(|p| p.slug()).collect();
            ApiError::BadRequest(format!(
                "provider: {:?} is not one of {}",
                new.provider,
                known.join(", ")
            ))
        })?;
        for (field, value) in new.clues() {
            if !valid_clue(value) {
                return Err(ApiError::BadRequest(format!(
                    "{field}: 1 to 255 of A-Z a-z 0-9 . _ - starting with a letter or a digit, not {value:?}"
                )));
            }
        }
        if records.get(&tenant_key(tenant)).is_none() {
            return Err(not_found(tenant));
        }
        let signed_by_app = new.secret.is_none() && self.apps.signs(provider.slug());
        if signed_by_app && new.clues().next().is_none() {
            let field = provider.clue_field().unwrap_or("a clue");
            return Err(ApiError::BadRequest(format!(
                "{field}: required without `secret`: the integration is then signed with the {} app's secret, which every shop of the app shares",
                provider.slug()
            )));
        }
        let (secret, generated) = match signed_by_app {
            true => (None, None),
            false => {
                let (secret, generated) =
                    super::chosen_secret(new.secret.clone(), || generated_secret(provider))?;
                (Some(secret), generated)
            }
        };
        let integration_key = match (&new.integration_key, new.clues().next()) {
            (Some(key), _) => Some(key.clone()),
            (None, None) if provider.clue_field() != Some(SECRET_CLUE) => {
                Some(format!("int_{}", random_hex(12)))
            }
            (None, _) => None,
        };
        let id = integration_id(
            provider,
            new.clues().next(),
            integration_key.as_deref(),
            |id| records.get(&integration_key_of(tenant, id)).is_some(),
        );
        let key = integration_key_of(tenant, &id);
        if records.get(&key).is_some() {
            return Err(ApiError::Conflict(format!(
                "tenant {tenant:?} has the integration {id:?}"
            )));
        }
        taken(&records, provider, &new, integration_key.as_deref())?;
        let keys = self.keys()?;
        let record = Record::new(Entity::Integration(topic::Integration {
            tenant: tenant.to_string(),
            id: id.clone(),
            provider: provider.slug().to_string(),
            shop_domain: new.shop_domain.clone(),
            merchant_id: new.merchant_id.clone(),
            store_id: new.store_id.clone(),
            installation_id: new.installation_id.clone(),
            flexype_store: new.flexype_store.clone(),
            integration_key: integration_key.clone(),
            secret: secret.map(|secret| seal_for(keys, &key, "secret", &secret)),
            previous_secret: None,
            previous_secret_expires_at_ms: None,
            scheme: None,
            event: None,
            access_token: None,
            installation: None,
        }));
        self.write(&records, vec![(key, Some(record))]).await?;
        let mut connected = self.connected(provider, id, integration_key, generated);
        connected.signed_by_app = signed_by_app;
        if let Some(installation) = &new.installation_id {
            // The integration is made: a token that cannot be moved now stays held (and
            // readable with `cartstream credentials --unclaimed`), and the answer says none was.
            connected.claimed = match self.claim(tenant, provider, installation).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%tenant, %installation, ?error, "an unclaimed installation's credentials could not be moved to its tenant");
                    Vec::new()
                }
            };
        }
        Ok(json(StatusCode::CREATED, to_json(&connected)))
    }

    /// Moves what an installation nobody had claimed sent to `tenant` ([`crate::tenants::Claims::claim`]).
    async fn claim(
        &self,
        tenant: &str,
        provider: &dyn Provider,
        installation: &str,
    ) -> Result<Vec<String>, ApiError> {
        let Some(claims) = &self.credentials else {
            return Ok(Vec::new());
        };
        let now = self.clock.now_millis();
        claims
            .claim(tenant, provider, installation, now)
            .await
            .map_err(|e| ApiError::Unavailable(format!("moving the held credentials: {e}")))
    }

    /// `POST /admin/v1/tenants/{id}/integrations/{integration}/secret`: the secret given (or
    /// generated, for `standard`) replaces the integration's; the one it replaces stays its
    /// previous secret, so deliveries signed with either verify until its grace period ends
    /// (or the next rotation).
    pub(super) async fn rotate_integration(
        &self,
        tenant: &str,
        id: &str,
        body: &[u8],
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let new: NewSecret = parse_body(body)?;
        let key = integration_key_of(tenant, id);
        let Some(record) = records.get(&key) else {
            return Err(integration_not_found(tenant, id));
        };
        let Entity::Integration(integration) = &record.entity else {
            return Err(integration_not_found(tenant, id));
        };
        let provider = providers::find(&integration.provider).ok_or_else(|| {
            ApiError::Conflict(format!("unknown provider {:?}", integration.provider))
        })?;
        if integration.secret.is_none() {
            let slug = provider.slug();
            return Err(ApiError::Conflict(format!(
                "the integration is signed with the {slug} app's secret: rotate that in [platforms.{slug}] (webhook_secret, previous_webhook_secret)"
            )));
        }
        let (secret, generated) = super::chosen_secret(new.secret, || generated_secret(provider))?;
        let (rotated, until) = self.rotated(record, &secret, new.grace_period_ms.as_ref())?;
        let integration_key = integration.integration_key.clone();
        self.write(&records, vec![(key, Some(rotated))]).await?;
        let mut connected = self.connected(provider, id.to_string(), integration_key, generated);
        connected.previous_secret_expires_at = Some(until);
        Ok(json(StatusCode::OK, to_json(&connected)))
    }

    /// `POST /admin/v1/tenants/{id}/connect`: a link that takes the merchant's browser to the
    /// platform's consent screen; once the store consents, the integration is made, its
    /// webhooks subscribed (docs/platforms.md). Writes nothing itself.
    pub(super) fn connect_link(
        &self,
        tenant: &str,
        body: &[u8],
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        use crate::platforms::Failure;
        let connect = self.connect.as_ref().ok_or(ApiError::FromFile)?;
        let new: NewConnection = parse_body(body)?;
        let expires_at =
            self.clock.now_millis() + crate::platforms::oauth::GRANT_TTL.as_millis() as i64;
        let link = connect
            .link(tenant, &new.provider, new.shop.as_deref())
            .map_err(|failure| match failure {
                Failure::NotFound(what) if what.starts_with("tenant ") => ApiError::NotFound(what),
                Failure::BadRequest(why) | Failure::NotFound(why) => ApiError::BadRequest(why),
                Failure::Conflict(why) | Failure::Unavailable(why) => ApiError::Conflict(why),
                other => ApiError::Conflict(other.to_string()),
            })?;
        let view = serde_json::json!({
            "install_url": link,
            "expires_at": crate::clock::rfc3339(expires_at),
        });
        Ok(json(StatusCode::OK, view.to_string()))
    }

    /// `DELETE /admin/v1/tenants/{id}/integrations/{integration}`: 204; the platform's
    /// deliveries for it are refused from then on.
    pub(super) async fn delete_integration(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        self.delete_record(
            integration_key_of(tenant, id),
            integration_not_found(tenant, id),
        )
        .await
    }

    fn connected(
        &self,
        provider: &dyn Provider,
        id: String,
        integration_key: Option<String>,
        secret: Option<String>,
    ) -> Connected {
        let webhook_path = webhook_path(provider.slug(), integration_key.as_deref());
        Connected {
            id,
            provider: provider.slug().to_string(),
            webhook_url: self.webhook_url(&webhook_path),
            webhook_path,
            integration_key,
            signed_by_app: false,
            secret,
            previous_secret_expires_at: None,
            claimed: Vec::new(),
        }
    }
}

/// A conflict when another integration has the integration key, or is of the same provider
/// with the same clue: deliveries could not tell them apart.
fn taken(
    records: &crate::tenants::Records,
    provider: &dyn Provider,
    new: &NewIntegration,
    integration_key: Option<&str>,
) -> Result<(), ApiError> {
    let clue = new
        .clues()
        .next()
        .map(|(field, value)| (field, provider.normalize_clue(value)));
    for (_, record) in records.iter() {
        let Entity::Integration(other) = &record.entity else {
            continue;
        };
        if integration_key.is_some() && other.integration_key.as_deref() == integration_key {
            return Err(ApiError::Conflict(
                "integration_key: another integration has it".to_string(),
            ));
        }
        let Some((field, value)) = &clue else {
            continue;
        };
        let same_clue = other
            .clues()
            .any(|(f, v)| f == *field && provider.normalize_clue(v) == *value);
        if other.provider == provider.slug() && same_clue {
            return Err(ApiError::Conflict(format!(
                "{field}: another {} integration has {value:?}",
                provider.slug()
            )));
        }
    }
    Ok(())
}

/// Where the platform posts a delivery for an integration: by its key when it has one.
pub(super) fn webhook_path(provider: &str, integration_key: Option<&str>) -> String {
    match integration_key {
        Some(key) => format!("/api/webhooks/{provider}/{key}"),
        None => format!("/api/webhooks/{provider}"),
    }
}

/// A secret for a provider whose receiver chooses it (`standard`: 32 random bytes, `whsec_`
/// and base64); for any other the platform's secret must be given.
fn generated_secret(provider: &dyn Provider) -> Result<String, ApiError> {
    let slug = provider.slug();
    if provider.app_signs_its_stores() {
        return Err(ApiError::BadRequest(format!(
            "secret: required for {slug}: the secret the platform shows for this store's webhooks, unless the deployment has the {slug} app ([platforms.{slug}]) that signs them"
        )));
    }
    if slug != "standard" {
        return Err(ApiError::BadRequest(format!(
            "secret: required for {slug}: the secret the platform shows for this store's webhooks"
        )));
    }
    Ok(whsec())
}

/// A new Standard Webhooks secret: 32 random bytes, `whsec_` and base64.
pub(super) fn whsec() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn random_hex(bytes: usize) -> String {
    let mut random = vec![0u8; bytes];
    getrandom::fill(&mut random).expect("the operating system's random source");
    hex::encode(random)
}

fn tenant_key(tenant: &str) -> Key {
    Key::Tenant {
        tenant: tenant.to_string(),
    }
}

pub(super) fn integration_key_of(tenant: &str, id: &str) -> Key {
    Key::Integration {
        tenant: tenant.to_string(),
        id: id.to_string(),
    }
}

pub(super) fn integration_not_found(tenant: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("integration {id:?} of tenant {tenant:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(body: &str) -> NewIntegration {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn an_integration_is_named_by_its_clue_else_its_key_else_its_provider_numbered() {
        let shopify = providers::find("shopify").unwrap();
        let by_clue = new(r#"{"provider":"shopify","shop_domain":"ACME.myshopify.com"}"#);
        assert_eq!(
            integration_id(shopify, by_clue.clues().next(), Some("int_x"), |_| false),
            "shopify:shop_domain=acme.myshopify.com"
        );
        let standard = providers::find("standard").unwrap();
        let by_key = new(r#"{"provider":"standard"}"#);
        assert_eq!(
            integration_id(standard, by_key.clues().next(), Some("int_0123"), |_| false),
            "standard:integration_key=int_0123"
        );
        let easyorders = providers::find("easyorders").unwrap();
        let unnamed = new(r#"{"provider":"easyorders"}"#);
        assert_eq!(
            integration_id(easyorders, unnamed.clues().next(), None, |id| id
                == "easyorders"),
            "easyorders#2"
        );
    }

    #[test]
    fn only_a_standard_integration_gets_a_generated_secret() {
        let secret = generated_secret(providers::find("standard").unwrap()).unwrap();
        let encoded = secret.strip_prefix("whsec_").unwrap();
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(bytes.len(), 32);
        assert_ne!(
            generated_secret(providers::find("standard").unwrap()).unwrap(),
            secret
        );
        assert!(matches!(
            generated_secret(providers::find("shopify").unwrap()),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn a_clue_is_a_store_name_not_anything() {
        assert!(valid_clue("acme.myshopify.com") && valid_clue("1305146709"));
        for bad in ["", ".acme", "acme shop", "acme/../x", &"a".repeat(256)] {
            assert!(!valid_clue(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_webhook_path_carries_the_integration_key_when_there_is_one() {
        assert_eq!(webhook_path("shopify", None), "/api/webhooks/shopify");
        assert_eq!(
            webhook_path("standard", Some("int_1")),
            "/api/webhooks/standard/int_1"
        );
    }
}
