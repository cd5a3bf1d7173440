//! The rules of OAuth connect, without I/O: the signed install link and `state`, and what a
//! platform's callback must be before its code is exchanged (time passed in).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::providers::Key;

/// How long an install link, and the `state` of the consent it starts, stay usable.
pub const GRANT_TTL: Duration = Duration::from_secs(10 * 60);

/// What a link or a state is for: one is never taken for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// The install link the admin API hands out (`/api/oauth/{provider}/install?link=…`).
    Link,
    /// The `state` sent to the platform's consent screen and back to the callback.
    State,
}

/// What the deployment vouches for in a link or a state: a store of `provider` to be connected
/// to `tenant` before `expires_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub purpose: Purpose,
    pub tenant: String,
    pub provider: String,
    /// The store (Shopify's shop domain), where the platform's consent screen is the store's.
    pub shop: Option<String>,
    /// Random: makes each grant one of its kind, and a state single-use.
    pub nonce: String,
    pub expires_at_ms: i64,
}

/// Why a link or a state is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("is not one this deployment issued")]
    Forged,
    #[error("has expired: start again from the admin API")]
    Expired,
}

impl Grant {
    /// A grant of `purpose` expiring [`GRANT_TTL`] after `now_ms`, with a fresh nonce.
    pub fn new(
        purpose: Purpose,
        tenant: &str,
        provider: &str,
        shop: Option<&str>,
        now_ms: i64,
    ) -> Grant {
        Grant {
            purpose,
            tenant: tenant.to_string(),
            provider: provider.to_string(),
            shop: shop.map(str::to_string),
            nonce: random_token(16),
            expires_at_ms: now_ms + GRANT_TTL.as_millis() as i64,
        }
    }

    /// The grant as text for a URL: its JSON and its HMAC under `key`, each base64url.
    pub fn sign(&self, key: &Key) -> String {
        let json = serde_json::to_vec(self).expect("a grant always serializes");
        let tag = key.sign(&[&json]);
        format!("{}.{}", BASE64URL.encode(&json), BASE64URL.encode(tag))
    }

    /// The grant `text` carries, if `key` signed it for `purpose` and it is unexpired at
    /// `now_ms`.
    pub fn open(key: &Key, text: &str, purpose: Purpose, now_ms: i64) -> Result<Grant, Refused> {
        let (json, tag) = text.split_once('.').ok_or(Refused::Forged)?;
        let json = BASE64URL.decode(json).map_err(|_| Refused::Forged)?;
        let tag = BASE64URL.decode(tag).map_err(|_| Refused::Forged)?;
        if !key.verify(&[&json], &tag) {
            return Err(Refused::Forged);
        }
        let grant: Grant = serde_json::from_slice(&json).map_err(|_| Refused::Forged)?;
        if grant.purpose != purpose {
            return Err(Refused::Forged);
        }
        if grant.expires_at_ms <= now_ms {
            return Err(Refused::Expired);
        }
        Ok(grant)
    }
}

/// `n` random bytes, hex.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    hex::encode(bytes)
}

/// A Shopify shop domain as Shopify names shops (`acme-store.myshopify.com`), lower-cased; why
/// not. Only such a host is asked for a token, so a forged callback cannot send the app's
/// secret elsewhere.
pub fn shopify_shop(given: &str) -> Result<String, &'static str> {
    let shop = given.to_ascii_lowercase();
    let name = shop
        .strip_suffix(".myshopify.com")
        .ok_or("must be a shop domain such as acme.myshopify.com")?;
    let valid = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= 60
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid
        .then_some(shop)
        .ok_or("must be a shop domain such as acme.myshopify.com")
}

/// Whether Shopify signed a callback's query: its `hmac` is the hex HMAC-SHA256, under the
/// app's client secret, of every other parameter sorted by name and written `name=value`,
/// joined by `&`.
pub fn shopify_query_authentic(query: &[(String, String)], client_secret: &[u8]) -> bool {
    let Some(hmac) = query.iter().find(|(name, _)| name == "hmac") else {
        return false;
    };
    let Ok(tag) = hex::decode(&hmac.1) else {
        return false;
    };
    let mut rest: Vec<&(String, String)> = query
        .iter()
        .filter(|(name, _)| name != "hmac" && name != "signature")
        .collect();
    rest.sort();
    let message = rest
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    Key::new(client_secret).verify(&[message.as_bytes()], &tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000;

    fn key() -> Key {
        Key::new(b"the deployment's state key")
    }

    #[test]
    fn a_signed_grant_opens_until_it_expires_and_only_for_its_purpose() {
        let grant = Grant::new(
            Purpose::State,
            "acme",
            "shopify",
            Some("acme.myshopify.com"),
            NOW,
        );
        let text = grant.sign(&key());
        assert_eq!(
            Grant::open(&key(), &text, Purpose::State, NOW),
            Ok(grant.clone())
        );
        let last = grant.expires_at_ms - 1;
        assert!(Grant::open(&key(), &text, Purpose::State, last).is_ok());
        assert_eq!(
            Grant::open(&key(), &text, Purpose::State, grant.expires_at_ms),
            Err(Refused::Expired)
        );
        // A state is not a link, and another key's grant is no grant.
        assert_eq!(
            Grant::open(&key(), &text, Purpose::Link, NOW),
            Err(Refused::Forged)
        );
        let other = Key::new(b"another deployment's key");
        assert_eq!(
            Grant::open(&other, &text, Purpose::State, NOW),
            Err(Refused::Forged)
        );
    }

    #[test]
    fn a_changed_grant_or_text_that_is_no_grant_is_forged() {
        let grant = Grant::new(
            Purpose::Link,
            "acme",
            "shopify",
            Some("acme.myshopify.com"),
            NOW,
        );
        let text = grant.sign(&key());
        let (_, tag) = text.split_once('.').unwrap();
        let mut changed = grant.clone();
        changed.tenant = "globex".to_string();
        let json = BASE64URL.encode(serde_json::to_vec(&changed).unwrap());
        for text in [
            format!("{json}.{tag}"),
            "x".into(),
            "a.b".into(),
            String::new(),
        ] {
            assert_eq!(
                Grant::open(&key(), &text, Purpose::Link, NOW),
                Err(Refused::Forged),
                "{text}"
            );
        }
    }

    #[test]
    fn each_grant_has_a_nonce_of_its_own() {
        let a = Grant::new(Purpose::State, "acme", "shopify", None, NOW);
        let b = Grant::new(Purpose::State, "acme", "shopify", None, NOW);
        assert_ne!(a.nonce, b.nonce);
        assert_eq!(a.nonce.len(), 32);
    }

    #[test]
    fn only_a_shop_domain_of_shopify_is_a_shop() {
        assert_eq!(
            shopify_shop("Acme-Store.myshopify.com").as_deref(),
            Ok("acme-store.myshopify.com")
        );
        for not_a_shop in [
            "acme.example.com",
            "myshopify.com",
            ".myshopify.com",
            "-acme.myshopify.com",
            "acme.myshopify.com.evil.example",
            "evil.example/.myshopify.com",
            "acme_store.myshopify.com",
            "a.b.myshopify.com",
        ] {
            assert!(shopify_shop(not_a_shop).is_err(), "{not_a_shop}");
        }
    }

    /// The parameters of Shopify's documented example ("Verify the installation request"),
    /// given out of order as a query may be, signed here with the secret `hush`.
    #[test]
    fn a_callback_query_is_authentic_when_its_hmac_covers_every_other_parameter_sorted() {
        let query = |hmac: &str| -> Vec<(String, String)> {
            [
                ("shop", "some-shop.myshopify.com"),
                ("code", "0907a61c0c8d55e99db179b68161bc00"),
                ("timestamp", "1337178173"),
                ("state", "0.6784241404160823"),
                ("hmac", hmac),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        };
        let message = "code=0907a61c0c8d55e99db179b68161bc00&shop=some-shop.myshopify.com&state=0.6784241404160823&timestamp=1337178173";
        let hmac = hex::encode(Key::new(b"hush").sign(&[message.as_bytes()]));
        assert!(shopify_query_authentic(&query(&hmac), b"hush"));
        assert!(!shopify_query_authentic(&query(&hmac), b"another secret"));
        assert!(!shopify_query_authentic(&query("not hex"), b"hush"));
        let mut changed = query(&hmac);
        changed[0].1 = "other-shop.myshopify.com".to_string();
        assert!(!shopify_query_authentic(&changed, b"hush"));
        let without: Vec<_> = query(&hmac)
            .into_iter()
            .filter(|(k, _)| k != "hmac")
            .collect();
        assert!(!shopify_query_authentic(&without, b"hush"));
    }
}
