//! `POST /admin/v1/tenants/{id}/integrations/{integration}/verify`: the credentials test. Given
//! a request as a platform sent it (or a sample the operator signed), it says whether the
//! ingress would accept it for this integration and exactly why not, producing nothing. The
//! reasons are told to the authenticated operator, never to a platform.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::Full;
use hyper::Response;
use serde::{Deserialize, Serialize};

use super::integrations::{integration_key_of, integration_not_found};
use super::{json, parse_body, to_json, ApiError, Tenants};
use crate::providers::{self, Request, SECRET_CLUE};
use crate::tenants::{secret_of, Integration, Registry};
use crate::topics::registry::{self as topic, Entity};

/// The request to test, as received.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    /// Its headers, by name.
    headers: BTreeMap<String, String>,
    /// Its body, as the platform sent it.
    body: String,
}

/// The verdict.
#[derive(Debug, Serialize)]
struct Verdict {
    /// Whether the ingress would accept it for this integration.
    verified: bool,
    /// Why not; `None` when it would.
    reason: Option<String>,
    /// The store the request names (its clue, normalized), when it names one.
    names: Option<String>,
    /// Whether that store, or the integration key of this integration's webhook path, leads to
    /// this integration.
    names_this_integration: bool,
}

impl Tenants {
    /// `GET …/integrations/{integration}/status`: what the ingresses saw of the integration
    /// lately — its last verified delivery, the platform's last test, and its last signature
    /// failure with the reason (never told to the platform): this instance's view merged with
    /// every instance's on the status topic (each writes what changed every two seconds).
    pub(super) async fn integration_status(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let (keys, registry) = (self.keys()?, self.live.current());
        let integration = self.integration_in_force(&records, keys, &registry, tenant, id)?;
        let local = integration.status.seen().view();
        let about = (
            integration.tenant.id.to_string(),
            integration.provider.slug(),
            integration.key.clone(),
            integration.clue.clone(),
        );
        let (kafka, budget) = (self.kafka.clone(), self.kafka_timeout);
        let read = tokio::task::spawn_blocking(move || {
            let topic = kafka.topics().status;
            let mut merged = local;
            let read = crate::kafka::history::read_since(&kafka, &topic, 0, budget, |bytes| {
                let Ok(record) = crate::topics::status::Record::decode(bytes) else {
                    return;
                };
                let (tenant, provider, key, clue) = &about;
                if record.is_about(tenant, provider, key.as_deref(), clue.as_deref()) {
                    merged = std::mem::take(&mut merged).merge(record.view);
                }
            });
            read.map(|read| (read, merged))
        })
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let (read, view) =
            read.map_err(|e| ApiError::Unavailable(format!("reading the status topic: {e}")))?;
        if !read.complete {
            return Err(ApiError::Unavailable(
                "the status topic was not read to its end in time".to_string(),
            ));
        }
        let at = |ms: Option<i64>| ms.map(crate::clock::rfc3339);
        let status = serde_json::json!({
            "last_authentic_delivery_at": at(view.last_authentic_ms),
            "last_platform_test_at": at(view.last_test_ms),
            "last_signature_failure_at": at(view.last_failure_ms),
            "last_signature_failure_reason": view.last_failure_reason,
        });
        Ok(json(StatusCode::OK, status.to_string()))
    }

    /// The integration in force on this instance that the record `tenant`/`id` describes.
    fn integration_in_force<'r>(
        &self,
        records: &crate::tenants::Records,
        keys: &crate::credentials::Keyring,
        registry: &'r Registry,
        tenant: &str,
        id: &str,
    ) -> Result<&'r Integration, ApiError> {
        let not_found = || integration_not_found(tenant, id);
        let record = records
            .get(&integration_key_of(tenant, id))
            .ok_or_else(not_found)?;
        let Entity::Integration(wanted) = &record.entity else {
            return Err(not_found());
        };
        let secret = secret_of(record, keys).ok();
        in_force(registry, wanted, secret.as_deref()).ok_or_else(|| {
            ApiError::Conflict(
                "the integration is not in force on this instance: the registry that holds it was refused (see cartstream_tenants_stale)".to_string(),
            )
        })
    }

    pub(super) fn verify_integration(
        &self,
        tenant: &str,
        id: &str,
        body: &[u8],
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let sample: Sample = parse_body(body)?;
        let headers = header_map(&sample.headers)?;
        let (keys, registry) = (self.keys()?, self.live.current());
        let integration = self.integration_in_force(&records, keys, &registry, tenant, id)?;
        let verdict = judge(
            &registry,
            &self.apps,
            integration,
            &Request::new(&headers, sample.body.as_bytes()),
            self.clock.now(),
        );
        Ok(json(StatusCode::OK, to_json(&verdict)))
    }
}

/// What the ingress would make of `request` posted to `integration`'s webhook path at `now`.
fn judge(
    registry: &Registry,
    apps: &crate::platforms::Apps,
    integration: &Integration,
    request: &Request<'_>,
    now: SystemTime,
) -> Verdict {
    let provider = integration.provider;
    let scheme = integration.scheme.as_ref();
    let seen = match scheme {
        Some(scheme) => scheme.inspect(request),
        None => provider.inspect(request),
    };
    let seen = match seen {
        Ok(seen) => seen,
        Err(e) => {
            return Verdict {
                verified: false,
                reason: Some(format!("the request cannot be read: {e}")),
                names: None,
                names_this_integration: false,
            }
        }
    };
    let names = seen.clue.as_deref().map(|c| provider.normalize_clue(c));
    let found = registry.resolve(
        provider.slug(),
        integration.key.as_deref(),
        names.as_deref(),
    );
    let names_this_integration = found.is_some_and(|found| std::ptr::eq(found, integration));
    let Some(keys) = crate::platforms::keys_of(integration, apps) else {
        let missing = crate::platforms::missing_app(provider, apps).unwrap_or_default();
        return Verdict {
            verified: false,
            reason: Some(format!(
                "the integration {missing}: the ingress would answer 401"
            )),
            names: names.filter(|_| provider.clue_field() != Some(SECRET_CLUE)),
            names_this_integration,
        };
    };
    let verdict = match scheme {
        Some(scheme) => scheme.verify(request, keys),
        None => provider.verify(request, keys, now),
    };
    let whose = match integration.keys {
        Some(_) => "this integration's secrets".to_string(),
        None => format!("the {} app's webhook secret", provider.slug()),
    };
    let reason = match (&verdict, names_this_integration, &names) {
        (Err(e), _, _) => Some(format!("with {whose}: {e}")),
        (Ok(()), false, Some(store)) => Some(format!(
            "the request names {store:?}, which does not lead to this integration: the ingress would answer 401"
        )),
        (Ok(()), false, None) => Some(
            "the request names no store and this integration has no integration key: the ingress would answer 401"
                .to_string(),
        ),
        (Ok(()), true, _) if integration.tenant.disabled => {
            Some("the tenant is disabled: the ingress would answer 401".to_string())
        }
        (Ok(()), true, _) => None,
    };
    Verdict {
        verified: reason.is_none(),
        reason,
        names: names.filter(|_| provider.clue_field() != Some(SECRET_CLUE)),
        names_this_integration,
    }
}

/// The integration in force that the record `wanted` describes: the same tenant, provider and
/// integration key, and the same store (or, where the secret is the clue, the same secret).
fn in_force<'r>(
    registry: &'r Registry,
    wanted: &topic::Integration,
    secret: Option<&str>,
) -> Option<&'r Integration> {
    let provider = providers::find(&wanted.provider)?;
    let clue = match provider.clue_field() {
        Some(SECRET_CLUE) => Some(providers::secret_clue(secret?.as_bytes())),
        Some(_) => wanted
            .clues()
            .next()
            .map(|(_, v)| provider.normalize_clue(v)),
        None => None,
    };
    registry.integrations().iter().find(|i| {
        *i.tenant.id == *wanted.tenant
            && i.provider.slug() == provider.slug()
            && i.key == wanted.integration_key
            && (clue.is_none() || i.clue == clue)
    })
}

/// The sample's headers, or a 400 naming the first that HTTP would not carry.
fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, ApiError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let parsed = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        );
        let (Ok(name), Ok(value)) = parsed else {
            return Err(ApiError::BadRequest(format!(
                "headers: {name:?} is not a header HTTP carries (a token name, a value without control characters)"
            )));
        };
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;

    const TENANTS: &str = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "acme.myshopify.com"
  secret = "acme-shopify-secret-0001"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "other.myshopify.com"
  secret = "other-shopify-secret-0001"
"#;

    fn verdict(shop: &str, secret: &str, body: &[u8]) -> Verdict {
        verdict_of(TENANTS, shop, secret, body)
    }

    fn verdict_of(tenants: &str, shop: &str, secret: &str, body: &[u8]) -> Verdict {
        verdict_with(&Default::default(), tenants, shop, secret, body)
    }

    fn verdict_with(
        apps: &crate::platforms::Apps,
        tenants: &str,
        shop: &str,
        secret: &str,
        body: &[u8],
    ) -> Verdict {
        let registry = Registry::from_toml(tenants, Path::new("."), &HashMap::new()).unwrap();
        let integration = registry
            .resolve("shopify", None, Some("acme.myshopify.com"))
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-shopify-shop-domain", shop.parse().unwrap());
        headers.insert("x-shopify-topic", "checkouts/create".parse().unwrap());
        headers.insert("x-shopify-webhook-id", "w-1".parse().unwrap());
        let signature = providers::shopify::sign(secret.as_bytes(), b"{}");
        headers.insert("x-shopify-hmac-sha256", signature.parse().unwrap());
        judge(
            &registry,
            apps,
            integration,
            &Request::new(&headers, body),
            std::time::UNIX_EPOCH,
        )
    }

    #[test]
    fn a_request_signed_with_the_secret_and_naming_the_store_verifies() {
        let v = verdict("acme.myshopify.com", "acme-shopify-secret-0001", b"{}");
        assert!(
            v.verified && v.names_this_integration && v.reason.is_none(),
            "{v:?}"
        );
        assert_eq!(v.names.as_deref(), Some("acme.myshopify.com"));
    }

    #[test]
    fn a_shop_signed_by_the_platform_app_verifies_with_the_apps_secret_only_when_it_is_configured()
    {
        const APP_SIGNED: &str = "[[tenant]]\nid = \"acme\"\n[[tenant.integration]]\nprovider = \"shopify\"\nshop_domain = \"acme.myshopify.com\"\n";
        let apps = crate::platforms::Config {
            shopify: Some(crate::platforms::App {
                client_id: "app-client-id".to_string(),
                client_secret: crate::kafka::Property::Text("the-app-client-secret".to_string()),
                webhook_secret: None,
                previous_webhook_secret: None,
                scopes: None,
                api_url: None,
                accounts_url: None,
            }),
            ..Default::default()
        }
        .apps();
        let shop = "acme.myshopify.com";
        let signed = verdict_with(&apps, APP_SIGNED, shop, "the-app-client-secret", b"{}");
        assert!(signed.verified, "{signed:?}");
        let other = verdict_with(&apps, APP_SIGNED, shop, "acme-shopify-secret-0001", b"{}");
        assert_eq!(
            other.reason.as_deref(),
            Some("with the shopify app's webhook secret: invalid X-Shopify-Hmac-Sha256")
        );
        let no_app = verdict_with(
            &Default::default(),
            APP_SIGNED,
            shop,
            "the-app-client-secret",
            b"{}",
        );
        assert_eq!(
            no_app.reason.as_deref(),
            Some("the integration signs with the shopify app's secret, and [platforms.shopify] has no client_secret: the ingress would answer 401")
        );
    }

    #[test]
    fn each_way_of_failing_is_told_apart() {
        let wrong_secret = verdict("acme.myshopify.com", "not-the-secret-00000", b"{}");
        assert!(!wrong_secret.verified);
        assert_eq!(
            wrong_secret.reason.as_deref(),
            Some("with this integration's secrets: invalid X-Shopify-Hmac-Sha256")
        );
        let changed_body = verdict("acme.myshopify.com", "acme-shopify-secret-0001", b"{} ");
        assert!(changed_body
            .reason
            .unwrap()
            .contains("invalid X-Shopify-Hmac-Sha256"));
        let other_store = verdict("other.myshopify.com", "acme-shopify-secret-0001", b"{}");
        assert!(!other_store.verified && !other_store.names_this_integration);
        assert!(other_store
            .reason
            .unwrap()
            .contains("\"other.myshopify.com\", which does not lead to this integration"),);
        let disabled = TENANTS.replacen("id = \"acme\"\n", "id = \"acme\"\nenabled = false\n", 1);
        let of_disabled = verdict_of(
            &disabled,
            "acme.myshopify.com",
            "acme-shopify-secret-0001",
            b"{}",
        );
        assert!(!of_disabled.verified && of_disabled.names_this_integration);
        assert_eq!(
            of_disabled.reason.as_deref(),
            Some("the tenant is disabled: the ingress would answer 401")
        );
    }
}
