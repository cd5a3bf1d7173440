use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::providers;

fn parse(text: &str, env: &[(&str, &str)]) -> Result<Registry, Problems> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Registry::from_toml(text, Path::new("."), &env)
}

const TWO_TENANTS: &str = r#"
[[tenant]]
id = "acme"
inactivity_window = "30m"

  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "Acme.myshopify.com"
  secret = { env = "ACME_SHOPIFY" }
  previous_secret = "old-acme"

[[tenant]]
id = "globex"

  [[tenant.integration]]
  provider = "salla"
  merchant_id = "1234509876"
  secret = "globex-salla"

  [[tenant.integration]]
  provider = "standard"
  integration_key = "int_globex_standard_0001"
  secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"#;

#[test]
fn resolves_by_clue_and_by_key() {
    let registry = parse(TWO_TENANTS, &[("ACME_SHOPIFY", "acme-secret")]).unwrap();
    let acme = registry
        .resolve("shopify", None, Some("acme.myshopify.com"))
        .unwrap();
    assert_eq!(&*acme.tenant.id, "acme");
    assert_eq!(acme.tenant.inactivity_window, Duration::from_secs(1800));
    assert!(acme.keys.matches_token(b"acme-secret"));
    assert!(acme.keys.matches_token(b"old-acme"));

    let globex = registry.resolve("salla", None, Some("1234509876")).unwrap();
    assert_eq!(&*globex.tenant.id, "globex");
    assert_eq!(globex.tenant.inactivity_window, DEFAULT_INACTIVITY_WINDOW);

    let by_key = registry
        .resolve("standard", Some("int_globex_standard_0001"), None)
        .unwrap();
    assert_eq!(&*by_key.tenant.id, "globex");
}

#[test]
fn a_key_never_resolves_for_another_provider_or_clue() {
    let registry = parse(TWO_TENANTS, &[("ACME_SHOPIFY", "x")]).unwrap();
    assert!(registry
        .resolve("shopify", Some("int_globex_standard_0001"), None)
        .is_none());
    assert!(registry
        .resolve("salla", None, Some("acme.myshopify.com"))
        .is_none());
    assert!(registry
        .resolve("shopify", None, Some("unknown.myshopify.com"))
        .is_none());
    assert!(registry.resolve("shopify", None, None).is_none());
}

#[test]
fn every_problem_is_reported_at_once() {
    let broken = r#"
[[tenant]]
id = "bad id"
inactivity_window = "0s"

  [[tenant.integration]]
  provider = "nosuch"
  secret = "x"

  [[tenant.integration]]
  provider = "shopify"
  merchant_id = "1"
  secret = { env = "MISSING_VAR" }

  [[tenant.integration]]
  provider = "standard"
  integration_key = "short"
  secret = "whsec_***"

[[tenant]]
id = "bad id"
"#;
    let problems = parse(broken, &[]).unwrap_err();
    let text = problems.to_string();
    for expected in [
        "id must be 1-128 characters",
        "inactivity_window must be positive",
        "unknown provider",
        "`merchant_id` does not apply to provider shopify",
        "needs `shop_domain` or `integration_key`",
        "environment variable MISSING_VAR is not set",
        "integration_key must be at least 16 characters",
        "secret is not whsec_ followed by base64",
        "duplicate tenant id",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(problems.len() >= 9, "{text}");
}

#[test]
fn secrets_can_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shop.secret"), "from-file\n").unwrap();
    let text = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "acme.myshopify.com"
  secret = { file = "shop.secret" }
"#;
    let registry = Registry::from_toml(text, dir.path(), &HashMap::new()).unwrap();
    let acme = registry
        .resolve("shopify", None, Some("acme.myshopify.com"))
        .unwrap();
    assert!(acme.keys.matches_token(b"from-file"));
}

#[test]
fn duplicate_clues_are_refused() {
    let text = r#"
[[tenant]]
id = "a"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "same.myshopify.com"
  secret = "1"
[[tenant]]
id = "b"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "SAME.myshopify.com"
  secret = "2"
"#;
    let text = parse(text, &[]).unwrap_err().to_string();
    assert!(text.contains("already has this shop_domain"), "{text}");
}

const CATALOGUE: &str = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "zid"
  store_id = " 1 "
  secret = "acme-zid"
  [[tenant.integration]]
  provider = "sprusify"
  store_id = "store_abc"
  secret = "acme-spru"
  [[tenant.integration]]
  provider = "shopimind"
  installation_id = "pg-1"
  secret = "acme-spm"
  [[tenant.integration]]
  provider = "flexype"
  flexype_store = "My-Store.myshopify.com"
  secret = "acme-flexype"
  [[tenant.integration]]
  provider = "easyorders"
  secret = "acme-easyorders"
  previous_secret = "acme-easyorders-old"
  [[tenant.integration]]
  provider = "vendera"
  integration_key = "int_acme_vendera_000001"
  secret = "acme-vendera"
  scheme = { auth = "hmac-hex", header = "X-Vendera-Signature", event_type_path = "event" }

[[tenant]]
id = "globex"
  [[tenant.integration]]
  provider = "easyorders"
  integration_key = "int_globex_easyorders_01"
  secret = "globex-easyorders"
  [[tenant.integration]]
  provider = "shopery"
  integration_key = "int_globex_shopery_0001"
  secret = "globex-shopery"
"#;

#[test]
fn every_provider_resolves_by_its_own_clue_field() {
    let registry = parse(CATALOGUE, &[]).unwrap();
    for (provider, clue) in [
        ("zid", "1"),
        ("sprusify", "store_abc"),
        ("shopimind", "pg-1"),
        ("flexype", "my-store.myshopify.com"),
    ] {
        let found = registry.resolve(provider, None, Some(clue));
        assert_eq!(
            found.map(|i| &*i.tenant.id),
            Some("acme"),
            "{provider} {clue}"
        );
    }
    // A store id is a clue of its own provider only.
    assert!(registry.resolve("sprusify", None, Some("1")).is_none());
    let vendera = registry
        .resolve("vendera", Some("int_acme_vendera_000001"), None)
        .unwrap();
    assert!(vendera.scheme.is_some());
    let shopery = registry
        .resolve("shopery", Some("int_globex_shopery_0001"), None)
        .unwrap();
    assert!(shopery.scheme.is_none());
}

#[test]
fn an_easyorders_secret_finds_its_integration_and_no_other() {
    let registry = parse(CATALOGUE, &[]).unwrap();
    let by_secret = |secret: &str| {
        registry
            .resolve(
                "easyorders",
                None,
                Some(&providers::secret_clue(secret.as_bytes())),
            )
            .map(|i| i.tenant.id.to_string())
    };
    assert_eq!(by_secret("acme-easyorders").as_deref(), Some("acme"));
    assert_eq!(by_secret("acme-easyorders-old").as_deref(), Some("acme"));
    assert_eq!(by_secret("globex-easyorders").as_deref(), Some("globex"));
    assert_eq!(by_secret("acme-zid"), None);
    assert_eq!(by_secret("nobody"), None);
    // With the integration key in the URL, the presented secret must be that integration's.
    let globex_key = Some("int_globex_easyorders_01");
    let acme_secret = providers::secret_clue(b"acme-easyorders");
    assert!(registry
        .resolve("easyorders", globex_key, Some(&acme_secret))
        .is_none());
    let globex_secret = providers::secret_clue(b"globex-easyorders");
    assert!(registry
        .resolve("easyorders", globex_key, Some(&globex_secret))
        .is_some());
}

#[test]
fn the_registry_debug_output_shows_no_secret() {
    let registry = parse(CATALOGUE, &[]).unwrap();
    let debug = format!("{registry:?}");
    for secret in ["acme-easyorders", "acme-vendera", "globex-shopery"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn catalogue_fields_are_validated() {
    let broken = r#"
[[tenant]]
id = "a"
  [[tenant.integration]]
  provider = "shopery"
  store_id = "1"
  secret = "x"
  [[tenant.integration]]
  provider = "easyorders"
  installation_id = "1"
  secret = "same"
  [[tenant.integration]]
  provider = "easyorders"
  secret = "same"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "a.myshopify.com"
  secret = "x"
  scheme = { auth = "token", header = "x-secret" }
  [[tenant.integration]]
  provider = "vendera"
  integration_key = "int_a_vendera_0000001"
  secret = "x"
  scheme = { auth = "hmac-hex", header = "bad header", delivery_id_path = "" }
  [[tenant.integration]]
  provider = "sprusify"
  secret = "x"
"#;
    let text = parse(broken, &[]).unwrap_err().to_string();
    for expected in [
        "`store_id` does not apply to provider shopery",
        "needs `integration_key` (deliveries from shopery carry no tenant clue)",
        "`installation_id` does not apply to provider easyorders",
        "another integration of easyorders already has this secret",
        "`scheme` does not apply to provider shopify",
        "scheme.header is not a valid HTTP header name",
        "scheme.delivery_id_path must be",
        "needs `store_id` or `integration_key`",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("same"), "secrets are never reported: {text}");
}

#[test]
fn a_vendera_integration_without_a_scheme_loads_but_has_none() {
    let text = r#"
[[tenant]]
id = "a"
  [[tenant.integration]]
  provider = "vendera"
  integration_key = "int_a_vendera_0000001"
  secret = "x"
"#;
    let registry = parse(text, &[]).unwrap();
    let vendera = registry
        .resolve("vendera", Some("int_a_vendera_0000001"), None)
        .unwrap();
    assert!(vendera.scheme.is_none());
}

#[test]
fn endpoints_load_with_their_subscriptions_and_schedules() {
    let text = r#"
[[tenant]]
id = "acme"
  [[tenant.endpoint]]
  id = "crm"
  url = "https://hooks.acme.example/cartstream"
  secret = { env = "ACME_HOOK" }
  previous_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

  [[tenant.endpoint]]
  id = "orders-only"
  url = "http://10.0.0.7:8080/in"
  secret = "orders-secret"
  events = ["order_completed"]
  retry_schedule = ["0s", "30s", "10m"]
"#;
    let registry = parse(text, &[("ACME_HOOK", "hook-secret")]).unwrap();
    let crm = &registry.endpoints()[0];
    assert_eq!(crm.url.host(), Some("hooks.acme.example"));
    assert_eq!(crm.secrets.len(), 2);
    assert_eq!(
        crm.events,
        [
            providers::Bucket::AbandonedCandidate,
            providers::Bucket::OrderCompleted
        ]
    );
    assert_eq!(crm.retry_schedule, None);
    let abandoned: Vec<&str> = registry
        .endpoints_for("acme", providers::Bucket::AbandonedCandidate)
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(abandoned, ["crm"]);
    let orders: Vec<&str> = registry
        .endpoints_for("acme", providers::Bucket::OrderCompleted)
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(orders, ["crm", "orders-only"]);
    assert_eq!(
        registry.endpoints()[1].retry_schedule,
        Some(vec![
            Duration::ZERO,
            Duration::from_secs(30),
            Duration::from_secs(600)
        ])
    );
    assert!(registry
        .endpoints_for("globex", providers::Bucket::OrderCompleted)
        .next()
        .is_none());
    assert!(!format!("{registry:?}").contains("hook-secret"));
}

#[test]
fn every_endpoint_problem_is_reported_at_once() {
    let text = r#"
[[tenant]]
id = "acme"
  [[tenant.endpoint]]
  id = "a"
  url = "ftp://files.example/in"
  secret = { env = "MISSING" }
  events = ["abandoned_candidate", "shipped"]
  retry_schedule = []

  [[tenant.endpoint]]
  id = "a"
  url = "https://ok.example/"
  secret = "s"
  retry_schedule = ["soon"]

  [[tenant.endpoint]]
  id = "b"
  url = "https://ok.example/"
  secret = "s2"
  events = []
"#;
    let problems = parse(text, &[]).unwrap_err();
    let text = problems.iter().collect::<Vec<_>>().join("\n");
    for expected in [
        "url must be an absolute http:// or https:// URL",
        "environment variable MISSING is not set",
        "unknown event `shipped`",
        "retry_schedule must list 1 to 20 delays",
        "retry_schedule: `soon`",
        "events must name at least one event",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn an_address_spelled_another_way_is_refused_with_its_canonical_form() {
    for (host, canonical) in [
        ("2130706433", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[0:0:0:0:0:ffff:7f00:1]", "::ffff:127.0.0.1"),
    ] {
        let text = format!(
            "[[tenant]]\nid = \"acme\"\n  [[tenant.endpoint]]\n  id = \"a\"\n  url = \"http://{host}:8080/in\"\n  secret = \"s\"\n"
        );
        let problems = parse(&text, &[]).unwrap_err();
        let text = problems.iter().collect::<Vec<_>>().join("\n");
        assert!(
            text.contains(&format!("spelled another way; write {canonical}")),
            "{host}: {text}"
        );
    }
    for url in [
        "http://127.0.0.1:8080/in",
        "http://[::1]:8080/in",
        "https://hooks.acme.example/in",
    ] {
        let text = format!(
            "[[tenant]]\nid = \"acme\"\n  [[tenant.endpoint]]\n  id = \"a\"\n  url = \"{url}\"\n  secret = \"s\"\n"
        );
        assert!(parse(&text, &[]).is_ok(), "{url}");
    }
}
