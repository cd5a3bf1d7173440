//! Keys of the admin API: who presents a request ([`Caller`]), what it may do, and the routes
//! that make, list and delete keys (`/admin/v1/keys`). `admin.token` is the first key and may do
//! everything; every other key is a record on the tenants topic, kept as the SHA-256 of the key,
//! with scopes (`read`: GETs; `write`: every other tenant route; `keys`: these routes) and
//! optionally one tenant it is limited to. Several keys may be active at once, so a key is
//! rotated by making the next one, moving to it, and deleting the first.

use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::Response;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::{json, parse_body, present, to_json, ApiError, Tenants};
use crate::topics::registry::{ApiKey, Entity, Key, Record};

/// What a key may be allowed.
const SCOPES: [&str; 3] = ["read", "write", "keys"];

/// The longest `name` of a key.
const MAX_NAME_CHARS: usize = 200;

/// Who presents a request to the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::admin) enum Caller {
    /// `admin.token`: every scope, every tenant.
    Token,
    /// A key of the topic.
    Key {
        id: String,
        scopes: Vec<String>,
        tenant: Option<String>,
    },
}

impl Caller {
    /// Whether the caller may use `route` with `method` on the tenant `id` (the route's `{id}`)
    /// — `Err` says why not (403).
    pub(super) fn allows(
        &self,
        route: &str,
        method: &Method,
        id: Option<&str>,
    ) -> Result<(), ApiError> {
        let Caller::Key { scopes, tenant, .. } = self else {
            return Ok(());
        };
        let scope = if route.starts_with("/admin/v1/keys") {
            "keys"
        } else if *method == Method::GET {
            "read"
        } else {
            "write"
        };
        if !scopes.iter().any(|s| s == scope) {
            return Err(ApiError::Forbidden(format!(
                "this key's scopes do not include {scope:?}"
            )));
        }
        match (tenant, id) {
            (None, _) => Ok(()),
            (Some(own), Some(id)) if own == id => Ok(()),
            (Some(own), _) => Err(ApiError::Forbidden(format!(
                "this key is limited to the tenant {own:?}"
            ))),
        }
    }
}

/// `POST /admin/v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[serde(default, deserialize_with = "present")]
    name: Option<String>,
    scopes: Vec<String>,
    /// Every tenant when absent.
    #[serde(default, deserialize_with = "present")]
    tenant: Option<String>,
}

/// A key as the API shows it: never the key itself but in the answer that made it.
#[derive(Debug, Serialize)]
struct KeyView {
    id: String,
    name: Option<String>,
    scopes: Vec<String>,
    tenant: Option<String>,
    created_at: String,
    /// The key, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl KeyView {
    fn of(key: &ApiKey, secret: Option<String>) -> KeyView {
        KeyView {
            id: key.id.clone(),
            name: key.name.clone(),
            scopes: key.scopes.clone(),
            tenant: key.tenant.clone(),
            created_at: crate::clock::rfc3339(key.created_at_ms),
            key: secret,
        }
    }
}

/// The hex SHA-256 a key is kept as.
fn digest(presented: &str) -> String {
    hex::encode(sha2::Sha256::digest(presented.as_bytes()))
}

/// The id a presented key names (`cs_<id>.<secret>`).
fn id_of(presented: &str) -> Option<&str> {
    let (id, secret) = presented.strip_prefix("cs_")?.split_once('.')?;
    (!id.is_empty() && !secret.is_empty()).then_some(id)
}

impl Tenants {
    /// The key of the topic `presented` is, compared by its digest in constant time; `None`
    /// for anything else.
    pub(in crate::admin) fn authenticate(&self, presented: &str) -> Option<Caller> {
        use subtle::ConstantTimeEq;
        let id = id_of(presented)?;
        let records = self.live.records()?;
        let record = records.get(&Key::ApiKey { id: id.to_string() })?;
        let Entity::ApiKey(key) = &record.entity else {
            return None;
        };
        let matches: bool = digest(presented)
            .as_bytes()
            .ct_eq(key.sha256.as_bytes())
            .into();
        matches.then(|| Caller::Key {
            id: key.id.clone(),
            scopes: key.scopes.clone(),
            tenant: key.tenant.clone(),
        })
    }

    /// `POST /admin/v1/keys`: 201 with the key, shown this once.
    pub(super) async fn create_key(&self, body: &[u8]) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let new: NewKey = parse_body(body)?;
        if new.scopes.is_empty() {
            return Err(ApiError::BadRequest(
                "scopes: at least one of read, write, keys".to_string(),
            ));
        }
        let mut scopes = Vec::new();
        for scope in new.scopes {
            if !SCOPES.contains(&scope.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "scopes: {scope:?} is not one of read, write, keys"
                )));
            }
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if let Some(name) = &new.name {
            if name.chars().count() > MAX_NAME_CHARS {
                return Err(ApiError::BadRequest(format!(
                    "name: at most {MAX_NAME_CHARS} characters"
                )));
            }
        }
        if let Some(tenant) = &new.tenant {
            if scopes.iter().any(|s| s == "keys") {
                return Err(ApiError::BadRequest(
                    "a key limited to a tenant cannot have the keys scope".to_string(),
                ));
            }
            let exists = records.get(&Key::Tenant {
                tenant: tenant.clone(),
            });
            if exists.is_none() {
                return Err(super::not_found(tenant));
            }
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let id = format!("key_{}", hex::encode(&bytes[..8]));
        getrandom::fill(&mut bytes).map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let presented = format!("cs_{id}.{secret}");
        let key = ApiKey {
            id: id.clone(),
            name: new.name,
            scopes,
            tenant: new.tenant,
            sha256: digest(&presented),
            created_at_ms: self.clock.now_millis(),
        };
        let view = KeyView::of(&key, Some(presented));
        let record = Record::new(Entity::ApiKey(key));
        self.write(&records, vec![(Key::ApiKey { id }, Some(record))])
            .await?;
        Ok(json(StatusCode::CREATED, to_json(&view)))
    }

    /// `GET /admin/v1/keys`: every key, in id order, without the keys themselves.
    pub(super) fn list_keys(&self) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let keys: Vec<KeyView> = records
            .iter()
            .filter_map(|(_, record)| match &record.entity {
                Entity::ApiKey(key) => Some(KeyView::of(key, None)),
                _ => None,
            })
            .collect();
        Ok(json(
            StatusCode::OK,
            serde_json::json!({ "keys": keys }).to_string(),
        ))
    }

    /// `DELETE /admin/v1/keys/{key}`: 204; the key is refused from then on.
    pub(super) async fn delete_key(&self, id: &str) -> Result<Response<Full<Bytes>>, ApiError> {
        self.delete_record(
            Key::ApiKey { id: id.to_string() },
            ApiError::NotFound(format!("key {id:?}")),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scopes: &[&str], tenant: Option<&str>) -> Caller {
        Caller::Key {
            id: "key_0123456789abcdef".to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            tenant: tenant.map(str::to_string),
        }
    }

    const TENANT: &str = "/admin/v1/tenants/{id}";
    const SECRET: &str = "/admin/v1/tenants/{id}/integrations/{integration}/secret";

    #[test]
    fn a_key_reaches_the_routes_of_its_scopes_and_the_token_reaches_every_route() {
        let read = key(&["read"], None);
        assert!(read.allows(TENANT, &Method::GET, Some("acme")).is_ok());
        assert!(read.allows("/admin/v1/tenants", &Method::GET, None).is_ok());
        for (route, method) in [
            (TENANT, Method::PATCH),
            (TENANT, Method::DELETE),
            (SECRET, Method::POST),
            ("/admin/v1/tenants", Method::POST),
            ("/admin/v1/keys", Method::GET),
            ("/admin/v1/keys", Method::POST),
        ] {
            assert!(
                matches!(
                    read.allows(route, &method, Some("acme")),
                    Err(ApiError::Forbidden(_))
                ),
                "{method} {route}"
            );
            assert!(Caller::Token.allows(route, &method, Some("acme")).is_ok());
        }
        let write = key(&["write"], None);
        assert!(write.allows(SECRET, &Method::POST, Some("acme")).is_ok());
        assert!(write.allows(TENANT, &Method::GET, Some("acme")).is_err());
        assert!(write.allows("/admin/v1/keys", &Method::POST, None).is_err());
        let keys = key(&["keys"], None);
        assert!(keys.allows("/admin/v1/keys", &Method::GET, None).is_ok());
        assert!(keys
            .allows("/admin/v1/keys/{key}", &Method::DELETE, None)
            .is_ok());
        assert!(keys.allows(TENANT, &Method::GET, Some("acme")).is_err());
    }

    #[test]
    fn a_key_limited_to_a_tenant_reaches_that_tenants_routes_only() {
        let acme = key(&["read", "write"], Some("acme"));
        assert!(acme.allows(TENANT, &Method::GET, Some("acme")).is_ok());
        assert!(acme.allows(SECRET, &Method::POST, Some("acme")).is_ok());
        for (route, method, id) in [
            (TENANT, Method::GET, Some("globex")),
            (SECRET, Method::POST, Some("globex")),
            ("/admin/v1/tenants", Method::GET, None),
            ("/admin/v1/tenants", Method::POST, None),
        ] {
            assert!(
                matches!(acme.allows(route, &method, id), Err(ApiError::Forbidden(_))),
                "{method} {route} {id:?}"
            );
        }
    }

    #[test]
    fn only_a_key_of_the_form_cs_id_dot_secret_names_an_id() {
        assert_eq!(
            id_of("cs_key_0123456789abcdef.c2VjcmV0"),
            Some("key_0123456789abcdef")
        );
        for presented in ["", "cs_", "cs_.x", "cs_key_1.", "key_1.x", "Bearer cs_a.b"] {
            assert_eq!(id_of(presented), None, "{presented:?}");
        }
        // The digest is of the whole key: a known id with another secret is another digest.
        assert_ne!(digest("cs_key_1.secret-one"), digest("cs_key_1.secret-two"));
        assert_eq!(digest("").len(), 64);
    }
}
