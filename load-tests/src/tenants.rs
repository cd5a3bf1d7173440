//! The tenants of a load run: `count` merchants, each with a Shopify, a Salla and a Zid
//! integration whose clues (shop domain, merchant id, store id) and secrets are derived from the
//! tenant's index, so the generator and the daemon's registry agree without sharing state —
//! and, with a receiver, one outbound endpoint there, whose signing secret is derived likewise.

use std::time::Duration;

use serde::Serialize;

/// One generated merchant.
#[derive(Debug, Clone, Copy)]
pub struct Tenant(pub usize);

impl Tenant {
    pub fn id(self) -> String {
        format!("load-{:05}", self.0)
    }

    pub fn shop_domain(self) -> String {
        format!("load-{:05}.myshopify.com", self.0)
    }

    pub fn merchant_id(self) -> u64 {
        1_000_000_000 + self.0 as u64
    }

    pub fn store_id(self) -> u64 {
        2_000_000_000 + self.0 as u64
    }

    pub fn secret(self, provider: &str) -> String {
        format!("load-{provider}-secret-{:05}", self.0)
    }

    pub fn endpoint_secret(self) -> String {
        format!("load-endpoint-secret-{:05}", self.0)
    }

    /// The tenant of an id made by [`Tenant::id`].
    pub fn parse(id: &str) -> Option<Tenant> {
        id.strip_prefix("load-")?.parse().ok().map(Tenant)
    }
}

/// The id of each tenant's endpoint at the receiver.
pub const ENDPOINT_ID: &str = "load";

#[derive(Serialize)]
struct Registry {
    tenant: Vec<Entry>,
}

#[derive(Serialize)]
struct Entry {
    id: String,
    inactivity_window: String,
    integration: Vec<Integration>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    endpoint: Vec<Endpoint>,
}

#[derive(Serialize)]
struct Endpoint {
    id: &'static str,
    url: String,
    secret: String,
}

#[derive(Serialize)]
struct Integration {
    provider: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    shop_domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    merchant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store_id: Option<String>,
    secret: String,
}

/// Every tenant's inactivity window. Long, so that no cart the run keeps active is abandoned
/// during the run: the transitions a run expects are the completions of its checkout-then-order
/// journeys and the abandonments of the checkouts it sends dated further back than this.
pub const INACTIVITY_WINDOW: Duration = Duration::from_secs(6 * 3600);

/// The daemon's tenant registry (`tenants.file`) for `count` tenants, each with an inactivity
/// window of [`INACTIVITY_WINDOW`]. With `receiver` (a base URL such as
/// `http://127.0.0.1:9100`), every tenant subscribes `<receiver>/hooks/<tenant id>` to all
/// transitions.
pub fn registry_toml(count: usize, receiver: Option<&str>) -> Result<String, toml::ser::Error> {
    let tenant = (0..count)
        .map(Tenant)
        .map(|t| Entry {
            id: t.id(),
            inactivity_window: humantime::format_duration(INACTIVITY_WINDOW).to_string(),
            integration: vec![
                Integration {
                    provider: "shopify",
                    shop_domain: Some(t.shop_domain()),
                    merchant_id: None,
                    store_id: None,
                    secret: t.secret("shopify"),
                },
                Integration {
                    provider: "salla",
                    shop_domain: None,
                    merchant_id: Some(t.merchant_id().to_string()),
                    store_id: None,
                    secret: t.secret("salla"),
                },
                Integration {
                    provider: "zid",
                    shop_domain: None,
                    merchant_id: None,
                    store_id: Some(t.store_id().to_string()),
                    secret: t.secret("zid"),
                },
            ],
            endpoint: receiver
                .map(|base| Endpoint {
                    id: ENDPOINT_ID,
                    url: format!(
                        "{}{}{}",
                        base.trim_end_matches('/'),
                        crate::receiver::PATH,
                        t.id()
                    ),
                    secret: t.endpoint_secret(),
                })
                .into_iter()
                .collect(),
        })
        .collect();
    toml::to_string(&Registry { tenant })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_every_tenant_once() {
        let text = registry_toml(3, None).unwrap();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        let tenants = parsed["tenant"].as_array().unwrap();
        assert_eq!(tenants.len(), 3);
        assert_eq!(tenants[2]["id"].as_str(), Some("load-00002"));
        assert_eq!(
            tenants[1]["integration"][0]["shop_domain"].as_str(),
            Some("load-00001.myshopify.com")
        );
        assert!(tenants[1].get("endpoint").is_none());
        let window = tenants[0]["inactivity_window"].as_str().unwrap();
        assert_eq!(
            humantime::parse_duration(window).unwrap(),
            INACTIVITY_WINDOW
        );
    }

    #[test]
    fn with_a_receiver_every_tenant_subscribes_its_own_endpoint() {
        let text = registry_toml(2, Some("http://127.0.0.1:9100/")).unwrap();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        let endpoint = &parsed["tenant"][1]["endpoint"][0];
        assert_eq!(
            endpoint["url"].as_str(),
            Some("http://127.0.0.1:9100/hooks/load-00001")
        );
        assert_eq!(
            endpoint["secret"].as_str(),
            Some(Tenant(1).endpoint_secret().as_str())
        );
        assert_eq!(Tenant::parse("load-00001").map(|t| t.0), Some(1));
    }
}
