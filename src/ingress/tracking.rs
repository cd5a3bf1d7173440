//! `POST /api/tracking/cart` and its CORS preflight (SPEC §2.3): storefront signals from a
//! shopper's browser, named by a tenant's publishable key and sent from the origins the tenant
//! allows. The key is public, so the origin is checked on the request itself, not left to the
//! browser's CORS: `navigator.sendBeacon` with a `text/plain` body needs no preflight, and any
//! page could send one. The rules ([`preflight`], [`origin_of`]) are pure; [`Ingress::signal`]
//! applies them to a live request.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::Response;

use super::limits::{self, check, BodyLimits, Limiter};
use super::{Error, Ingress};
use crate::kafka::inbound;
use crate::providers::tracking::{Signal, Tracking};
use crate::providers::{self, Provider};
use crate::server::Peer;
use crate::tenants::{Registry, Tenant};

/// The limits of storefront signals: per publishable key (its tenant) and per client address.
pub(super) struct Limits {
    per_key: Option<Limiter<Arc<str>>>,
    per_address: Option<Limiter<IpAddr>>,
}

impl Limits {
    pub(super) fn new(config: &super::config::Tracking) -> Limits {
        Limits {
            per_key: Limiter::per_second(config.rate_limit_per_second, config.rate_limit_burst),
            per_address: Limiter::per_second(
                config.address_rate_limit_per_second,
                config.address_rate_limit_burst,
            ),
        }
    }
}

/// What a client address is limited as: the address, or for IPv6 its /64 — one subscriber's
/// network, whose addresses one client may hold by the billion.
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The origin a request's `Origin` header names, as tenants' `allowed_origins` are written;
/// `Ok(None)` without the header (not a browser's request).
fn origin_of(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let Some(value) = headers.get(header::ORIGIN) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| crate::tenants::origin(text).ok())
        .map(Some)
        .ok_or(Error::Forbidden("origin not allowed"))
}

/// Whether a preflight may go on: from `origin`, for a POST, to the tenant `key` names — or,
/// when the URL names none (the key is in the body), to some tenant that allows `origin`. The
/// signal itself is checked against its own tenant's origins.
fn preflight(
    registry: &Registry,
    origin: Option<&str>,
    method: Option<&str>,
    key: Option<&str>,
) -> Result<(), Error> {
    let (Some(origin), Some(method)) = (origin, method) else {
        return Err(providers::Error::Malformed(
            "not a CORS preflight: Origin and Access-Control-Request-Method are required",
        )
        .into());
    };
    let allowed = match key {
        Some(key) => registry
            .tenant_by_publishable_key(key)
            .is_some_and(|tenant| tenant.allowed_origins.iter().any(|o| o == origin)),
        None => registry.origin_allowed_by_any(origin),
    };
    if !allowed {
        return Err(Error::Forbidden("origin not allowed"));
    }
    if method != "POST" {
        return Err(Error::Forbidden("signals are sent with POST"));
    }
    Ok(())
}

/// `origin` when `tenant` allows it; a signal from a page of another origin is refused.
fn allowed_origin(tenant: &Tenant, origin: Option<String>) -> Result<Option<String>, Error> {
    match origin {
        Some(origin) if !tenant.allowed_origins.contains(&origin) => Err(Error::Forbidden(
            "origin not allowed for this publishable key",
        )),
        origin => Ok(origin),
    }
}

/// `key=` of a query string, if given.
fn query_key(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "key")
        .map(|(_, value)| value.into_owned())
}

/// Whether a signal's `Content-Type` is one it may come as: JSON, or `text/plain` — what
/// `navigator.sendBeacon` sends a string as, without a preflight — or none.
fn acceptable_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(essence.as_str(), "application/json" | "text/plain")
}

impl Ingress {
    /// Answers `OPTIONS` or `POST /api/tracking/cart`; the CORS headers go on every answer
    /// whose origin is allowed, errors included, so that the page can read them.
    pub(super) async fn tracking(
        &self,
        method: &Method,
        headers: &HeaderMap,
        query: Option<&str>,
        peer: Option<&Peer>,
        body: Incoming,
    ) -> Response<Full<Bytes>> {
        let key = query_key(query);
        let mut cors = None;
        let result = match *method {
            Method::OPTIONS => self.preflight(headers, key.as_deref(), &mut cors),
            _ => self
                .signal(headers, key.as_deref(), peer, body, &mut cors)
                .await
                .map(|()| accepted()),
        };
        let mut response = match result {
            Ok(response) => response,
            Err(error) => self.refused(providers::tracking::SLUG, error),
        };
        let headers = response.headers_mut();
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = cors.and_then(|o| HeaderValue::from_str(&o).ok()) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        }
        response
    }

    fn preflight(
        &self,
        headers: &HeaderMap,
        key: Option<&str>,
        cors: &mut Option<String>,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let origin = origin_of(headers)?;
        let method = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| v.to_str().ok());
        preflight(&self.registry.current(), origin.as_deref(), method, key)?;
        *cors = origin;
        let max_age = self.config.tracking.preflight_max_age.as_secs();
        Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::ACCESS_CONTROL_ALLOW_METHODS, "POST")
            .header(header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type")
            .header(header::ACCESS_CONTROL_MAX_AGE, max_age)
            .body(Full::new(Bytes::new()))
            .expect("static response parts are valid"))
    }

    /// Takes one signal in: admitted within the limits and its address's rate, its body read
    /// and checked, its key's tenant found and its origin allowed, within the key's rate,
    /// produced to the inbound topic as provider `tracking` — accepted once Kafka acknowledged.
    async fn signal(
        &self,
        headers: &HeaderMap,
        key: Option<&str>,
        peer: Option<&Peer>,
        body: Incoming,
        cors: &mut Option<String>,
    ) -> Result<(), Error> {
        let mut admitted = self.admit(headers, peer)?;
        if let Some(peer) = peer {
            let client = limits::client_address(peer.addr.ip(), headers, &self.trusted_proxies);
            check(
                self.tracking_limits.per_address.as_ref(),
                &address_key(client),
            )?;
        }
        if !acceptable_type(headers) {
            return Err(providers::Error::Malformed(
                "a signal is sent as application/json or text/plain",
            )
            .into());
        }
        let limits = BodyLimits {
            max_bytes: self
                .config
                .tracking
                .max_body_bytes
                .min(self.config.max_body_bytes),
            timeout: self.config.body_read_timeout,
            min_rate: self.config.min_body_bytes_per_second,
            grace: self.config.body_rate_grace,
        };
        let body =
            limits::read_body(body, headers, limits, &self.buffered, &mut admitted.buffer).await?;
        let signal = Signal::read(&body).map_err(providers::Error::Malformed)?;
        let Some(key) = key.or(signal.publishable_key.as_deref()) else {
            return Err(providers::Error::Unauthorized(
                "a publishable key is required (publishable_key in the body, or key= in the URL)",
            )
            .into());
        };
        let registry = self.registry.current();
        let tenant = registry
            .tenant_by_publishable_key(key)
            .filter(|tenant| !tenant.disabled)
            .ok_or(providers::Error::Unauthorized("unknown publishable key"))?;
        *cors = allowed_origin(tenant, origin_of(headers)?)?;
        drop(admitted.unauthenticated.take());
        check(self.tracking_limits.per_key.as_ref(), &tenant.id)?;
        let delivery_id = match &signal.event_id {
            Some(id) => id.to_string(),
            None => providers::body_hash_id(&body),
        };
        let received_at = self.clock.now();
        let metadata = inbound::Metadata {
            provider: providers::tracking::SLUG,
            tenant: &tenant.id,
            event_type: Some(&signal.event),
            delivery_id: &delivery_id,
            received_at,
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            payload_version: None,
            test: false,
        };
        self.producer
            .send_inbound(
                &tenant.id,
                &body,
                metadata.headers(),
                crate::clock::unix_millis(received_at),
                self.config.ack_timeout,
            )
            .await
            .map_err(Error::Kafka)?;
        crate::telemetry::metrics::ingress_body_size(providers::tracking::SLUG, body.len());
        Ok(())
    }
}

/// `202 {"ok":true}`.
fn accepted() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(Tracking.accepted_body())))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let text = r#"
[[tenant]]
id = "acme"
publishable_key = "pk_acme_0123456789abcdef"
allowed_origins = ["https://acme.example"]

[[tenant]]
id = "globex"
publishable_key = "pk_globex_0123456789abcdef"
allowed_origins = ["https://globex.example"]
"#;
        Registry::from_toml(text, std::path::Path::new("."), &Default::default()).unwrap()
    }

    fn status(result: Result<(), Error>) -> u16 {
        result.map_or_else(|e| e.status().as_u16(), |()| 204)
    }

    #[test]
    fn a_preflight_passes_from_an_origin_its_key_allows_and_from_no_other() {
        let registry = registry();
        let acme = Some("pk_acme_0123456789abcdef");
        let from = |origin, key| status(preflight(&registry, Some(origin), Some("POST"), key));
        assert_eq!(from("https://acme.example", acme), 204);
        assert_eq!(from("https://globex.example", acme), 403);
        assert_eq!(from("https://evil.example", acme), 403);
        assert_eq!(
            from("https://acme.example", Some("pk_nobody_0123456789ab")),
            403
        );
        // The key in the body, unseen by the preflight: some tenant must allow the origin.
        assert_eq!(from("https://globex.example", None), 204);
        assert_eq!(from("https://evil.example", None), 403);
    }

    #[test]
    fn a_preflight_must_be_one_and_for_a_post() {
        let registry = registry();
        let origin = Some("https://acme.example");
        assert_eq!(status(preflight(&registry, origin, Some("PUT"), None)), 403);
        assert_eq!(status(preflight(&registry, origin, None, None)), 400);
        assert_eq!(status(preflight(&registry, None, Some("POST"), None)), 400);
    }

    #[test]
    fn a_signal_from_a_page_is_taken_only_from_its_tenants_origins() {
        let registry = registry();
        let acme = registry
            .tenant_by_publishable_key("pk_acme_0123456789abcdef")
            .unwrap();
        let origin = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ORIGIN, value.parse().unwrap());
            origin_of(&headers)
        };
        let mine = origin("https://ACME.example").unwrap();
        assert_eq!(
            allowed_origin(acme, mine).unwrap().as_deref(),
            Some("https://acme.example")
        );
        let theirs = origin("https://globex.example").unwrap();
        assert_eq!(allowed_origin(acme, theirs).unwrap_err().status(), 403);
        // A sandboxed frame's `null` is no origin a tenant can allow.
        assert_eq!(origin("null").unwrap_err().status(), 403);
        // Not from a browser: nothing to check, no CORS header to send.
        assert_eq!(
            allowed_origin(acme, origin_of(&HeaderMap::new()).unwrap()).unwrap(),
            None
        );
    }

    #[test]
    fn signals_come_as_json_or_as_plain_text_from_a_beacon() {
        let typed = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            acceptable_type(&headers)
        };
        assert!(typed("application/json"));
        assert!(typed("text/plain;charset=UTF-8"));
        assert!(typed("Text/Plain"));
        assert!(!typed("application/x-www-form-urlencoded"));
        assert!(!typed("multipart/form-data; boundary=x"));
        assert!(acceptable_type(&HeaderMap::new()));
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_64_and_an_ipv4_one_by_its_address() {
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            address_key(v6("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            v6("2001:db8:1:2::")
        );
        assert_eq!(
            address_key(v6("2001:db8:1:2::1")),
            address_key(v6("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            address_key(v6("2001:db8:1:2::1")),
            address_key(v6("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(v6("203.0.113.7")), v6("203.0.113.7"));
    }

    #[test]
    fn the_key_may_come_in_the_query() {
        assert_eq!(
            query_key(Some("v=1&key=pk_a%2Bb")).as_deref(),
            Some("pk_a+b")
        );
        assert_eq!(query_key(Some("v=1")), None);
        assert_eq!(query_key(None), None);
    }
}
