//! Signed webhook requests built from the real payloads in `tests/fixtures/providers`. Each
//! fixture is turned once into a template with placeholders for what must be unique per request
//! (ids, cart tokens, emails) or per tenant (shop domain, merchant id, store id); signing uses
//! the daemon's own `providers::*::sign`, so the generator cannot disagree with the verifier.
//! Event times are the time of sending, as a platform's would be: with the fixtures' own dates
//! (2008–2025) every cart would be past its inactivity window on arrival, and its transitions
//! too old to deliver. The exception is [`Kind::Abandonment`], dated just past the window on
//! purpose.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use cartstream::clock::Clock;
use cartstream::providers;
use serde_json::Value;

use crate::tenants::{Tenant, INACTIVITY_WINDOW};

/// One request as the generator sends it, and what the check expects of it.
#[derive(Debug, Clone)]
pub struct Request {
    pub provider: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// The delivery id the daemon will record: the Shopify webhook id, else the body hash.
    pub delivery_id: String,
}

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Single,
    Checkout,
    Order,
    /// A Shopify checkout last updated [`OVERDUE`] more than the tenant's inactivity window ago:
    /// its cart's timer is due on arrival, and the processor must abandon it once.
    Abandonment,
}

/// How long an abandonment's inactivity deadline has passed when it is sent: recent enough
/// that its transition is far from the delivery deadline.
const OVERDUE: Duration = Duration::from_secs(60);

pub struct Templates {
    shopify_checkout: String,
    shopify_order: String,
    salla_cart: String,
    zid_order: String,
}

const UNIQUE: &str = "@@UNIQUE@@";
const CART: &str = "@@CART@@";
const EMAIL: &str = "@@EMAIL@@";
const NUMBER: &str = "\"@@NUMBER@@\"";
const MERCHANT: &str = "\"@@MERCHANT@@\"";
const NOW: &str = "@@NOW@@";

impl Templates {
    pub fn load(fixtures: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| -> anyhow::Result<Value> {
            let path = fixtures.join(name);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the fixture {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        };
        let mut checkout = read("shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json")?;
        checkout["token"] = UNIQUE.into();
        checkout["cart_token"] = CART.into();
        checkout["email"] = EMAIL.into();
        checkout["customer"]["email"] = EMAIL.into();
        checkout["created_at"] = NOW.into();
        checkout["updated_at"] = NOW.into();
        let mut order = read("shopify/derived_orders_create_body_from_sdkjs_2024-04.json")?;
        order["id"] = NUMBER.trim_matches('"').into();
        order["token"] = UNIQUE.into();
        order["cart_token"] = CART.into();
        order["checkout_token"] = CART.into();
        order["email"] = EMAIL.into();
        order["contact_email"] = EMAIL.into();
        order["customer"]["email"] = EMAIL.into();
        for field in ["created_at", "updated_at", "processed_at"] {
            order[field] = NOW.into();
        }
        let mut cart = read("salla/docs_abandoned_cart.json")?;
        cart["merchant"] = MERCHANT.trim_matches('"').into();
        cart["data"]["id"] = NUMBER.trim_matches('"').into();
        cart["created_at"] = NOW.into();
        let mut zid = read("zid/derived_order_object_from_sdk_fixture.json")?;
        // The order object of Zid's API carries no event name; its webhooks add one.
        zid["event"] = "order.create".into();
        zid["store_id"] = MERCHANT.trim_matches('"').into();
        zid["id"] = NUMBER.trim_matches('"').into();
        Ok(Self {
            shopify_checkout: serde_json::to_string(&checkout)?,
            shopify_order: serde_json::to_string(&order)?,
            salla_cart: serde_json::to_string(&cart)?,
            zid_order: serde_json::to_string(&zid)?,
        })
    }

    /// A request of `kind` for `tenant`. `unique` makes the ids in it unique within the run and
    /// `run` across runs; a journey's checkout and order share `unique`. With `valid` false the
    /// signature is made with a secret the tenant does not have.
    pub fn request(
        &self,
        provider: &str,
        kind: Kind,
        tenant: Tenant,
        run: &str,
        unique: u64,
        valid: bool,
    ) -> Request {
        let token = token(run, unique);
        let cart = cart_token(run, unique);
        let email = format!("buyer-{token}@load.example.com");
        // Numbers in JSON bodies: distinct per operation, and per run through the run id's hash.
        let number = (run_number(run) << 28) | (unique & 0x0fff_ffff);
        let age = match kind {
            Kind::Abandonment => INACTIVITY_WINDOW + OVERDUE,
            _ => Duration::ZERO,
        };
        let now = UNIX_EPOCH + Duration::from_millis(Clock::System.now_millis().max(0) as u64);
        let now = humantime::format_rfc3339_seconds(now - age).to_string();
        let secret = if valid {
            tenant.secret(provider)
        } else {
            format!("not-the-secret-of-{}", tenant.id())
        };
        let fill = |template: &str, merchant: u64| -> Bytes {
            Bytes::from(
                template
                    .replace(UNIQUE, &token)
                    .replace(CART, &cart)
                    .replace(EMAIL, &email)
                    .replace(NOW, &now)
                    .replace(NUMBER, &number.to_string())
                    .replace(MERCHANT, &merchant.to_string()),
            )
        };
        let content_type = ("content-type", "application/json".to_string());
        match (provider, kind) {
            ("shopify", _) => {
                let (template, topic) = if kind == Kind::Order {
                    (&self.shopify_order, "orders/create")
                } else {
                    (&self.shopify_checkout, "checkouts/create")
                };
                let body = fill(template, 0);
                let delivery_id =
                    format!("{token}-{}", if kind == Kind::Order { "o" } else { "c" });
                let headers = vec![
                    content_type,
                    ("x-shopify-topic", topic.to_string()),
                    ("x-shopify-shop-domain", tenant.shop_domain()),
                    ("x-shopify-webhook-id", delivery_id.clone()),
                    (
                        "x-shopify-hmac-sha256",
                        providers::shopify::sign(secret.as_bytes(), &body),
                    ),
                ];
                Request {
                    provider: "shopify",
                    headers,
                    delivery_id,
                    body,
                }
            }
            ("salla", _) => {
                let body = fill(&self.salla_cart, tenant.merchant_id());
                let headers = vec![
                    content_type,
                    ("x-salla-security-strategy", "Signature".to_string()),
                    (
                        "x-salla-signature",
                        providers::salla::sign(secret.as_bytes(), &body),
                    ),
                ];
                Request {
                    provider: "salla",
                    headers,
                    delivery_id: providers::body_hash_id(&body),
                    body,
                }
            }
            _ => {
                let body = fill(&self.zid_order, tenant.store_id());
                let headers = vec![
                    content_type,
                    (
                        "x-zid-signature",
                        providers::zid::sign(secret.as_bytes(), &body),
                    ),
                ];
                Request {
                    provider: "zid",
                    headers,
                    delivery_id: providers::body_hash_id(&body),
                    body,
                }
            }
        }
    }
}

fn token(run: &str, unique: u64) -> String {
    format!("{run}{unique:012x}")
}

/// The cart token of operation `unique`'s requests (a journey's checkout and order share it).
pub fn cart_token(run: &str, unique: u64) -> String {
    format!("cart-{}", token(run, unique))
}

fn run_number(run: &str) -> u64 {
    run.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 1000
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates() -> Templates {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/providers");
        Templates::load(&fixtures).unwrap()
    }

    #[test]
    fn requests_differ_per_operation_and_keep_no_placeholder() {
        let t = templates();
        for provider in ["shopify", "salla", "zid"] {
            let a = t.request(provider, Kind::Single, Tenant(1), "r1", 1, true);
            let b = t.request(provider, Kind::Single, Tenant(1), "r1", 2, true);
            assert_ne!(a.delivery_id, b.delivery_id, "{provider}");
            let text = std::str::from_utf8(&a.body).unwrap();
            assert!(!text.contains("@@"), "{provider}: {text}");
            serde_json::from_str::<Value>(text).unwrap();
        }
    }

    #[test]
    fn a_journey_shares_its_cart_token() {
        let t = templates();
        let checkout = t.request("shopify", Kind::Checkout, Tenant(3), "r", 9, true);
        let order = t.request("shopify", Kind::Order, Tenant(3), "r", 9, true);
        let cart = |r: &Request| {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            v["cart_token"].as_str().unwrap().to_string()
        };
        assert_eq!(cart(&checkout), cart(&order));
        assert_ne!(checkout.delivery_id, order.delivery_id);
    }

    #[test]
    fn an_abandonment_is_a_checkout_dated_past_the_inactivity_window() {
        let t = templates();
        let updated = |r: &Request| {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            let at = v["updated_at"].as_str().unwrap().to_string();
            humantime::parse_rfc3339(&at).unwrap()
        };
        let abandoned = t.request("shopify", Kind::Abandonment, Tenant(2), "r", 5, true);
        let checkout = t.request("shopify", Kind::Checkout, Tenant(2), "r", 6, true);
        let age = updated(&checkout)
            .duration_since(updated(&abandoned))
            .unwrap();
        // Both are dated by the clock when made, to the second.
        assert!(
            age >= INACTIVITY_WINDOW + OVERDUE - Duration::from_secs(1)
                && age <= INACTIVITY_WINDOW + OVERDUE + Duration::from_secs(1),
            "{age:?}"
        );
        let topic = abandoned
            .headers
            .iter()
            .find(|(h, _)| *h == "x-shopify-topic");
        assert_eq!(topic.map(|(_, v)| v.as_str()), Some("checkouts/create"));
    }

    #[test]
    fn salla_bodies_name_the_tenants_merchant() {
        let r = templates().request("salla", Kind::Single, Tenant(4), "r", 1, true);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["merchant"].as_u64(), Some(Tenant(4).merchant_id()));
    }
}
