//! `/admin/v1/tenants…`: a tenant's own settings — its inactivity window, plain HTTP, the
//! publishable key and origins of its storefront signals, whether it is enabled — and the view of
//! a tenant the API answers with, the ids of what it owns and never a secret.

use bytes::Bytes;
use http::{header, StatusCode};
use http_body_util::Full;
use hyper::Response;
use serde::{Deserialize, Serialize};

use super::{
    integrations, json, no_content, not_found, parse_body, present, to_json, whole, ApiError,
    Tenants,
};
use crate::tenants::Records;
use crate::topics::registry::{self as topic, Entity, Key, Record};

/// The longest inactivity window the API sets: a year.
const MAX_WINDOW_MS: u64 = 365 * 24 * 3600 * 1000;

/// The page size of a list, unless asked for another, and the largest one.
const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

impl Tenants {
    /// `GET /admin/v1/tenants[?limit=N][&after=ID]`: tenants in id order, a page at a time.
    pub(super) fn list(&self, query: Option<&str>) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let (mut limit, mut after) = (PAGE, None);
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*name {
                "limit" => {
                    limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "limit: a number from 1 to {MAX_PAGE}, not {value:?}"
                            ))
                        })?;
                }
                "after" => after = Some(value.into_owned()),
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown query parameter {other:?} (limit, after)"
                    )))
                }
            }
        }
        let mut ids = records.iter().filter_map(|(key, _)| match key {
            Key::Tenant { tenant } if after.as_deref().is_none_or(|a| tenant.as_str() > a) => {
                Some(tenant.as_str())
            }
            _ => None,
        });
        let page: Vec<TenantView> = ids
            .by_ref()
            .take(limit)
            .filter_map(|id| self.view(&records, id))
            .collect();
        let next = match ids.next() {
            Some(_) => page.last().map(|t| t.id.clone()),
            None => None,
        };
        let body = serde_json::json!({ "tenants": page, "next": next });
        Ok(json(StatusCode::OK, body.to_string()))
    }

    /// `GET /admin/v1/tenants/{id}`.
    pub(super) fn get(&self, id: &str) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let view = self.view(&records, id).ok_or_else(|| not_found(id))?;
        Ok(json(StatusCode::OK, to_json(&view)))
    }

    /// `POST /admin/v1/tenants`: 201 with the tenant; 409 when its id is taken.
    pub(super) async fn create(&self, body: &[u8]) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let new: NewTenant = parse_body(body)?;
        let id = new
            .id
            .unwrap_or_else(|| uuid::Uuid::new_v4().hyphenated().to_string());
        let key = Key::Tenant { tenant: id.clone() };
        if records.get(&key).is_some() {
            return Err(ApiError::Conflict(format!("tenant {id:?} exists")));
        }
        let tenant = topic::Tenant {
            id: id.clone(),
            inactivity_window_ms: new.inactivity_window_ms.as_ref().map(window).transpose()?,
            allow_plain_http: new.allow_plain_http,
            publishable_key: Some(publishable_key()),
            allowed_origins: origins(&new.allowed_origins),
            disabled: false,
        };
        let record = Record::new(Entity::Tenant(tenant));
        let written = self.write(&records, vec![(key, Some(record))]).await?;
        let view = self
            .view(&written, &id)
            .expect("the tenant was just written");
        let mut response = json(StatusCode::CREATED, to_json(&view));
        if let Ok(location) = format!("/admin/v1/tenants/{id}").parse() {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    }

    /// `PATCH /admin/v1/tenants/{id}`: `inactivity_window_ms` (`null` for the default),
    /// `allow_plain_http`, `allowed_origins` and `enabled`, each left as it is when absent.
    pub(super) async fn update(
        &self,
        id: &str,
        body: &[u8],
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let (key, current) = tenant_record(&records, id)?;
        let change: TenantChange = parse_body(body)?;
        let mut tenant = current.clone();
        if let Some(window_ms) = change.inactivity_window_ms {
            tenant.inactivity_window_ms = window_ms.as_ref().map(window).transpose()?;
        }
        if let Some(allow) = change.allow_plain_http {
            tenant.allow_plain_http = allow;
        }
        if let Some(origins) = change.allowed_origins {
            tenant.allowed_origins = self::origins(&origins);
        }
        if let Some(enabled) = change.enabled {
            tenant.disabled = !enabled;
        }
        let written = match &tenant == current {
            true => Records::clone(&records),
            false => {
                let record = Record::new(Entity::Tenant(tenant));
                self.write(&records, vec![(key, Some(record))]).await?
            }
        };
        let view = self.view(&written, id).expect("the tenant is there");
        Ok(json(StatusCode::OK, to_json(&view)))
    }

    /// `POST /admin/v1/tenants/{id}/publishable_key`: a new publishable key in place of the
    /// old one, which names the tenant no more; 200 with the tenant.
    pub(super) async fn new_publishable_key(
        &self,
        id: &str,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let (key, current) = tenant_record(&records, id)?;
        let tenant = topic::Tenant {
            publishable_key: Some(publishable_key()),
            ..current.clone()
        };
        let record = Record::new(Entity::Tenant(tenant));
        let written = self.write(&records, vec![(key, Some(record))]).await?;
        let view = self.view(&written, id).expect("the tenant is there");
        Ok(json(StatusCode::OK, to_json(&view)))
    }

    /// `DELETE /admin/v1/tenants/{id}`: the tenant and everything it owns, 204.
    pub(super) async fn delete(&self, id: &str) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let keys = records.keys_of(id);
        if keys.is_empty() {
            return Err(not_found(id));
        }
        self.write(&records, keys.into_iter().map(|key| (key, None)).collect())
            .await?;
        Ok(no_content())
    }

    /// The tenant `id` as the records say.
    fn view(&self, records: &Records, id: &str) -> Option<TenantView> {
        let Entity::Tenant(tenant) = &records
            .get(&Key::Tenant {
                tenant: id.to_string(),
            })?
            .entity
        else {
            return None;
        };
        let mut view = TenantView {
            id: tenant.id.clone(),
            inactivity_window_ms: tenant.inactivity_window_ms,
            allow_plain_http: tenant.allow_plain_http,
            publishable_key: tenant.publishable_key.clone(),
            allowed_origins: tenant.allowed_origins.clone(),
            enabled: !tenant.disabled,
            integrations: Vec::new(),
            endpoints: Vec::new(),
        };
        for (_, record) in records.iter() {
            match &record.entity {
                Entity::Integration(i) if i.tenant == id => {
                    let webhook_path =
                        integrations::webhook_path(&i.provider, i.integration_key.as_deref());
                    view.integrations.push(IntegrationView {
                        id: i.id.clone(),
                        provider: i.provider.clone(),
                        integration_key: i.integration_key.clone(),
                        webhook_url: self.webhook_url(&webhook_path),
                        webhook_path,
                        signed_by_app: i.secret.is_none(),
                        installation: i.installation,
                    })
                }
                Entity::Endpoint(e) if e.tenant == id => view.endpoints.push(EndpointView::of(e)),
                _ => {}
            }
        }
        Some(view)
    }
}

/// The record of the tenant `id`, and its key; 404 without one.
fn tenant_record<'r>(records: &'r Records, id: &str) -> Result<(Key, &'r topic::Tenant), ApiError> {
    let key = Key::Tenant {
        tenant: id.to_string(),
    };
    match records.get(&key) {
        Some(Record {
            entity: Entity::Tenant(tenant),
            ..
        }) => Ok((key, tenant)),
        _ => Err(not_found(id)),
    }
}

/// A tenant as the API shows it: its settings and the ids of what it owns, never a secret.
#[derive(Debug, Serialize)]
struct TenantView {
    id: String,
    /// `None`: the default window.
    inactivity_window_ms: Option<u64>,
    allow_plain_http: bool,
    /// What its storefront signals name it by; public.
    publishable_key: Option<String>,
    allowed_origins: Vec<String>,
    enabled: bool,
    integrations: Vec<IntegrationView>,
    endpoints: Vec<EndpointView>,
}

#[derive(Debug, Serialize)]
struct IntegrationView {
    id: String,
    provider: String,
    integration_key: Option<String>,
    webhook_path: String,
    webhook_url: Option<String>,
    /// Signed with the deployment's platform app's secret (`[platforms.<provider>]`) rather
    /// than a secret of its own.
    signed_by_app: bool,
    /// A ShopiMind installation's lifecycle, once an event set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    installation: Option<topic::Installation>,
}

#[derive(Debug, Serialize)]
pub(super) struct EndpointView {
    id: String,
    url: String,
    events: Option<Vec<String>>,
    retry_schedule_ms: Option<Vec<u64>>,
    enabled: bool,
}

impl EndpointView {
    pub(super) fn of(e: &topic::Endpoint) -> EndpointView {
        EndpointView {
            id: e.id.clone(),
            url: e.url.clone(),
            events: e.events.clone(),
            retry_schedule_ms: e.retry_schedule_ms.clone(),
            enabled: !e.disabled,
        }
    }
}

/// `POST /admin/v1/tenants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    /// A UUID when absent (`null` is refused).
    #[serde(default, deserialize_with = "present")]
    id: Option<String>,
    #[serde(default)]
    inactivity_window_ms: Option<serde_json::Number>,
    #[serde(default)]
    allow_plain_http: bool,
    #[serde(default)]
    allowed_origins: Vec<String>,
}

/// `PATCH /admin/v1/tenants/{id}`: absent fields stay as they are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantChange {
    /// `Some(None)`: back to the default window.
    #[serde(default, deserialize_with = "present")]
    inactivity_window_ms: Option<Option<serde_json::Number>>,
    /// `null` is refused.
    #[serde(default, deserialize_with = "present")]
    allow_plain_http: Option<bool>,
    /// The whole list; `null` is refused (`[]` allows none).
    #[serde(default, deserialize_with = "present")]
    allowed_origins: Option<Vec<String>>,
    /// `false`: its deliveries and signals are refused and its endpoints get nothing.
    #[serde(default, deserialize_with = "present")]
    enabled: Option<bool>,
}

/// An inactivity window in whole milliseconds, from one to a year. JSON's integers include
/// numbers written with a zero fraction (`60000.0`).
fn window(ms: &serde_json::Number) -> Result<u64, ApiError> {
    match whole(ms, MAX_WINDOW_MS) {
        Some(ms @ 1..) => Ok(ms),
        _ => Err(ApiError::BadRequest(format!(
            "inactivity_window_ms: whole milliseconds from 1 to {MAX_WINDOW_MS} (a year), not {ms}"
        ))),
    }
}

/// Origins as browsers send them, each once ([`crate::tenants::origins`]); one that is no
/// origin is kept as given, for the registry's check to refuse by name.
fn origins(given: &[String]) -> Vec<String> {
    crate::tenants::origins(given)
        .into_iter()
        .map(|origin| origin.unwrap_or_else(|(given, _)| given.to_string()))
        .collect()
}

/// A new publishable key: `pk_` and 24 random bytes in URL-safe base64 (32 characters).
fn publishable_key() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let key = format!(
        "pk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    debug_assert!(crate::tenants::publishable_key(&key).is_ok());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_from_one_millisecond_to_a_year() {
        let number = |text: &str| serde_json::from_str::<serde_json::Number>(text).unwrap();
        assert_eq!(window(&number("900000")).unwrap(), 900_000);
        assert_eq!(window(&number("526.0")).unwrap(), 526);
        assert_eq!(window(&number("31536000000")).unwrap(), MAX_WINDOW_MS);
        for bad in [
            "0",
            "31536000001",
            "18446744073709551615",
            "-5",
            "1.5",
            "1e300",
        ] {
            assert!(
                matches!(window(&number(bad)), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_change_tells_an_absent_field_from_a_null_one_and_refuses_a_null_flag() {
        let change: TenantChange = serde_json::from_str("{}").unwrap();
        assert_eq!(change.inactivity_window_ms, None);
        let change: TenantChange =
            serde_json::from_str(r#"{"inactivity_window_ms":null}"#).unwrap();
        assert_eq!(change.inactivity_window_ms, Some(None));
        let change: TenantChange =
            serde_json::from_str(r#"{"inactivity_window_ms":3600000}"#).unwrap();
        assert_eq!(
            change.inactivity_window_ms,
            Some(Some(serde_json::Number::from(3_600_000u64)))
        );
        for refused in [
            r#"{"id":"x"}"#,
            r#"{"allow_plain_http":null}"#,
            r#"{"inactivity_window_ms":"1h"}"#,
        ] {
            assert!(
                serde_json::from_str::<TenantChange>(refused).is_err(),
                "{refused}"
            );
        }
        assert!(serde_json::from_str::<NewTenant>(r#"{"id":null}"#).is_err());
        assert!(matches!(
            parse_body::<TenantChange>(b"[]"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_body::<NewTenant>(b"[null]"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(parse_body::<NewTenant>(b"{}").is_ok());
    }
}
