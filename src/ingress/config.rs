//! The `[ingress]` section: its keys, defaults and checks, and what is derived from them (the
//! vault, the trusted proxies, the owner of unclaimed installations).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::limits::parse_net;
use crate::credentials::Vault;
use crate::kafka;
use crate::problems::Problems;
use crate::providers::{self, Keys};
use crate::tenants::{Integration, Registry, UNCLAIMED};

/// The `[ingress]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections open at once (never more than half the process's open files limit).
    pub max_connections: usize,
    /// Connections open at once from one client address (0: no cap); trusted proxies have none.
    pub max_connections_per_peer: usize,
    /// Bytes a request head may take on one connection (HTTP/1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Requests whose body is being read or whose sender is not yet authenticated, from one
    /// client address at once (0: no cap); more are answered 503.
    pub max_unauthenticated_per_peer: usize,
    /// The same, on one connection (HTTP/2 multiplexes streams).
    pub max_unauthenticated_per_connection: usize,
    /// After `body_rate_grace`, a body must arrive at this many bytes per second on average
    /// (counted from the request head), or it is answered 408 (0: no minimum).
    pub min_body_bytes_per_second: u64,
    #[serde(with = "humantime_serde")]
    pub body_rate_grace: Duration,
    /// Addresses (CIDR) of the proxies in front of the ingress: for a request from one of them
    /// the client is read from `X-Forwarded-For` (the nearest address not itself a trusted
    /// proxy), and they have no connection cap of their own. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    pub max_in_flight_requests: usize,
    /// Bytes of request bodies held in memory at once, across all requests.
    pub max_buffered_bytes: usize,
    pub http2_max_concurrent_streams: u32,
    pub maintenance: bool,
    pub retry_after_seconds: u64,
    pub tenant_rate_limit_per_second: u32,
    pub tenant_rate_limit_burst: u32,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The key secrets carried in payloads are sealed with (32 bytes, base64): the text, or
    /// `{ env = "VARIABLE" }`, or `{ file = "path" }`. Needed when an integration's platform
    /// sends such secrets (ShopiMind); see [`crate::credentials`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_key: Option<kafka::Property>,
    /// The webhook secret of the deployment's ShopiMind app (the text, `{ env = … }` or
    /// `{ file = … }`). With it, an `integration.installed` for an installation no integration
    /// names yet is accepted when this secret signs it: its access token, sent only once, is
    /// sealed under the owner [`UNCLAIMED`] (`cartstream credentials --unclaimed`) until a
    /// tenant's integration names the installation. Needs `credentials_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shopimind_app_secret: Option<kafka::Property>,
    /// Where platforms reach this ingress (`https://hooks.example.com`, behind the load
    /// balancer): the admin API builds the webhook URLs it hands out from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Storefront signals, `POST /api/tracking/cart`.
    pub tracking: Tracking,
}

/// The `[ingress.tracking]` section: how much storefront signals may send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracking {
    /// The largest signal body taken (never more than `max_body_bytes`); larger ones are
    /// answered 413.
    pub max_body_bytes: usize,
    /// Signals one publishable key may send a second (0: no limit), and its burst above that
    /// rate (0: equal to the rate); past it, 429 with `Retry-After`.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// The same for one client address, across keys.
    pub address_rate_limit_per_second: u32,
    pub address_rate_limit_burst: u32,
    /// How long a browser may keep a preflight's answer.
    #[serde(with = "humantime_serde")]
    pub preflight_max_age: Duration,
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking {
            max_body_bytes: 4096,
            rate_limit_per_second: 100,
            rate_limit_burst: 1000,
            address_rate_limit_per_second: 5,
            address_rate_limit_burst: 50,
            preflight_max_age: Duration::from_secs(600),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_body_bytes: 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_peer: 2048,
            max_header_bytes: 64 * 1024,
            max_unauthenticated_per_peer: 64,
            max_unauthenticated_per_connection: 16,
            min_body_bytes_per_second: 1024,
            body_rate_grace: Duration::from_secs(2),
            trusted_proxies: Vec::new(),
            ack_timeout: Duration::from_secs(5),
            max_in_flight_requests: 8192,
            max_buffered_bytes: 256 * 1024 * 1024,
            http2_max_concurrent_streams: 256,
            maintenance: false,
            retry_after_seconds: 5,
            tenant_rate_limit_per_second: 0,
            tenant_rate_limit_burst: 0,
            shutdown_grace: Duration::from_secs(30),
            credentials_key: None,
            shopimind_app_secret: None,
            public_url: None,
            tracking: Tracking::default(),
        }
    }
}

impl Config {
    /// Reads `credentials_key` from where it is kept and checks it is a key.
    pub fn resolve_credentials_key(
        &mut self,
        env: &HashMap<String, String>,
        base: &Path,
        problems: &mut Problems,
    ) {
        let Some(key) = &mut self.credentials_key else {
            return;
        };
        let checked = key.resolve(env, base).and_then(|()| {
            let text = key.text().unwrap_or_default();
            Vault::from_base64(text)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        if let Err(why) = checked {
            problems.push(format!("ingress.credentials_key: {why}"));
        }
    }

    /// Reads `shopimind_app_secret` from where it is kept; it needs `credentials_key`, which
    /// seals the access tokens it lets in.
    pub fn resolve_shopimind_app_secret(
        &mut self,
        env: &HashMap<String, String>,
        base: &Path,
        problems: &mut Problems,
    ) {
        let Some(secret) = &mut self.shopimind_app_secret else {
            return;
        };
        let checked = secret.resolve(env, base).and_then(|()| {
            match secret.text().unwrap_or_default().trim().is_empty() {
                true => Err("is empty".to_string()),
                false => Ok(()),
            }
        });
        if let Err(why) = checked {
            problems.push(format!("ingress.shopimind_app_secret: {why}"));
        }
        if self.credentials_key.is_none() {
            problems.push(
                "ingress.shopimind_app_secret: needs ingress.credentials_key, which seals the access tokens of unclaimed installations"
                    .to_string(),
            );
        }
    }

    /// The webhook secret of the deployment's ShopiMind app, when set.
    pub fn shopimind_app_secret(&self) -> Option<String> {
        let secret = self.shopimind_app_secret.as_ref()?.text()?.trim();
        (!secret.is_empty()).then(|| secret.to_string())
    }

    /// The integration that takes ShopiMind installs for installations nobody has claimed:
    /// owner [`UNCLAIMED`], verified with the app's webhook secret.
    pub(super) fn unclaimed_installations(&self) -> Option<Integration> {
        let secret = self.shopimind_app_secret.as_ref()?.text()?.trim();
        (!secret.is_empty()).then(|| Integration {
            tenant: Arc::new(crate::tenants::Tenant {
                id: UNCLAIMED.into(),
                inactivity_window: Duration::from_secs(15 * 60),
                allow_plain_http: false,
                publishable_key: None,
                allowed_origins: Vec::new(),
                disabled: false,
            }),
            provider: &providers::shopimind::Shopimind,
            clue: None,
            key: None,
            keys: Some(Keys::new(providers::Key::new(secret.as_bytes()), None)),
            scheme: None,
            event: None,
            status: Default::default(),
        })
    }

    /// The trusted proxies, parsed (validated at load).
    pub fn trusted_proxy_nets(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| parse_net(p))
            .collect()
    }

    /// The vault of `credentials_key`, once resolved and checked.
    pub fn vault(&self) -> Option<Vault> {
        let text = self.credentials_key.as_ref()?.text()?;
        Vault::from_base64(text).ok()
    }

    /// Every integration whose platform sends secrets in its payloads needs a key to keep
    /// them: without one they would be lost (ShopiMind sends its access token once).
    pub fn check_credentials(&self, registry: &Registry, problems: &mut Problems) {
        if self.credentials_key.is_some() {
            return;
        }
        let mut needing: Vec<String> = registry
            .integrations()
            .iter()
            .filter(|i| !i.provider.secret_fields().is_empty())
            .map(|i| format!("{} ({})", i.tenant.id, i.provider.slug()))
            .collect();
        needing.dedup();
        if !needing.is_empty() {
            problems.push(format!(
                "ingress.credentials_key: not set, but these integrations receive secrets in their payloads (an access token sent once), which are kept only sealed with it: {}",
                needing.join(", ")
            ));
        }
    }

    pub fn validate(&self, problems: &mut Problems) {
        let positive = [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_in_flight_requests", self.max_in_flight_requests as u64),
            (
                "http2_max_concurrent_streams",
                self.http2_max_concurrent_streams as u64,
            ),
            (
                "header_read_timeout",
                self.header_read_timeout.as_millis() as u64,
            ),
            (
                "body_read_timeout",
                self.body_read_timeout.as_millis() as u64,
            ),
            ("ack_timeout", self.ack_timeout.as_millis() as u64),
            ("idle_timeout", self.idle_timeout.as_millis() as u64),
            ("max_connections", self.max_connections as u64),
            ("max_buffered_bytes", self.max_buffered_bytes as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                problems.push(format!("ingress.{key}: must be greater than zero"));
            }
        }
        if self.max_in_flight_requests > Semaphore::MAX_PERMITS {
            problems.push("ingress.max_in_flight_requests: too large");
        }
        if self.max_buffered_bytes > Semaphore::MAX_PERMITS {
            problems.push("ingress.max_buffered_bytes: too large");
        }
        if self.max_buffered_bytes < self.max_body_bytes {
            problems.push("ingress.max_buffered_bytes: must be at least ingress.max_body_bytes");
        }
        // One connection, or one address, must not be able to take the whole budget: genuine
        // webhooks on other connections must still find room.
        let per = |n: usize| (n.max(1) as u128).saturating_mul(self.max_body_bytes as u128);
        let budget = self.max_buffered_bytes as u128;
        if budget < 4 * per(self.max_unauthenticated_per_connection) {
            problems.push(format!(
                "ingress.max_buffered_bytes: must be at least 4 × max_body_bytes × max_unauthenticated_per_connection ({}), so that one connection holds at most a quarter of it",
                4 * per(self.max_unauthenticated_per_connection)
            ));
        }
        if self.max_unauthenticated_per_peer > 0
            && budget < 2 * per(self.max_unauthenticated_per_peer)
        {
            problems.push(format!(
                "ingress.max_buffered_bytes: must be at least 2 × max_body_bytes × max_unauthenticated_per_peer ({}), so that one client address holds at most half of it",
                2 * per(self.max_unauthenticated_per_peer)
            ));
        }
        if self.max_unauthenticated_per_connection == 0 {
            problems.push("ingress.max_unauthenticated_per_connection: must be greater than zero");
        }
        if self.max_header_bytes < crate::server::MIN_HEADER_BYTES {
            problems.push(format!(
                "ingress.max_header_bytes: must be at least {}",
                crate::server::MIN_HEADER_BYTES
            ));
        }
        for proxy in &self.trusted_proxies {
            if parse_net(proxy).is_none() {
                problems.push(format!(
                    "ingress.trusted_proxies: {proxy:?} is not an address or CIDR block"
                ));
            }
        }
        let tracking = &self.tracking;
        if tracking.max_body_bytes == 0 {
            problems.push("ingress.tracking.max_body_bytes: must be greater than zero");
        }
        if tracking.rate_limit_burst > 0 && tracking.rate_limit_per_second == 0 {
            problems.push("ingress.tracking.rate_limit_burst: needs rate_limit_per_second");
        }
        if tracking.address_rate_limit_burst > 0 && tracking.address_rate_limit_per_second == 0 {
            problems.push(
                "ingress.tracking.address_rate_limit_burst: needs address_rate_limit_per_second",
            );
        }
        if self.tenant_rate_limit_burst > 0 && self.tenant_rate_limit_per_second == 0 {
            problems.push("ingress.tenant_rate_limit_burst: needs tenant_rate_limit_per_second");
        }
        if let Some(url) = &self.public_url {
            let usable = url::Url::parse(url).is_ok_and(|u| {
                matches!(u.scheme(), "https" | "http")
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
            if !usable {
                problems.push(format!(
                    "ingress.public_url: {url:?} is not an http(s) URL without query or fragment"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOPIMIND_TENANT: &str = "[[tenant]]\nid = \"acme\"\n[[tenant.integration]]\nprovider = \"shopimind\"\ninstallation_id = \"pg-1\"\nsecret = \"acme-shopimind-secret\"\n";

    #[test]
    fn a_public_url_is_an_http_url_without_query_or_fragment() {
        for (url, fine) in [
            ("https://hooks.example.com", true),
            ("http://127.0.0.1:8080/", true),
            ("https://hooks.example.com/base", true),
            ("hooks.example.com", false),
            ("ftp://hooks.example.com", false),
            ("https://hooks.example.com/?a=1", false),
            ("https://hooks.example.com/#x", false),
        ] {
            let config = Config {
                public_url: Some(url.to_string()),
                ..Config::default()
            };
            let mut problems = Problems::default();
            config.validate(&mut problems);
            assert_eq!(problems.is_empty(), fine, "{url}: {problems:?}");
        }
    }

    #[test]
    fn an_integration_that_receives_secrets_needs_a_credentials_key() {
        let registry =
            Registry::from_toml(SHOPIMIND_TENANT, Path::new("."), &HashMap::new()).unwrap();
        let mut problems = Problems::default();
        Config::default().check_credentials(&registry, &mut problems);
        let listed: Vec<&str> = problems.iter().collect();
        assert!(
            listed.len() == 1 && listed[0].contains("acme (shopimind)"),
            "{listed:?}"
        );

        let mut config = Config {
            credentials_key: Some(kafka::Property::Env {
                env: "KEY".to_string(),
            }),
            ..Config::default()
        };
        let env = HashMap::from([(
            "KEY".to_string(),
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_string(),
        )]);
        let mut problems = Problems::default();
        config.resolve_credentials_key(&env, Path::new("."), &mut problems);
        config.check_credentials(&registry, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(config.vault().is_some());
    }

    #[test]
    fn a_credentials_key_that_is_not_one_is_a_problem_without_showing_it() {
        for (text, why) in [("c2hvcnQ=", "not 5 bytes"), ("secret words", "not base64")] {
            let mut config = Config {
                credentials_key: Some(kafka::Property::Text(text.to_string())),
                ..Config::default()
            };
            let mut problems = Problems::default();
            config.resolve_credentials_key(&HashMap::new(), Path::new("."), &mut problems);
            let listed: Vec<&str> = problems.iter().collect();
            assert!(
                listed.len() == 1 && listed[0].contains(why) && !listed[0].contains(text),
                "{listed:?}"
            );
        }
        let mut config = Config {
            credentials_key: Some(kafka::Property::Env {
                env: "UNSET".to_string(),
            }),
            ..Config::default()
        };
        let mut problems = Problems::default();
        config.resolve_credentials_key(&HashMap::new(), Path::new("."), &mut problems);
        assert!(problems.iter().any(|p| p.contains("UNSET is not set")));
    }
}
