use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::providers;
use crate::topics::event::Bucket;

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
  previous_secret = "old-acme-shopify-secret"

[[tenant]]
id = "globex"

  [[tenant.integration]]
  provider = "salla"
  merchant_id = "1234509876"
  secret = "globex-salla-secret"

  [[tenant.integration]]
  provider = "standard"
  integration_key = "int_globex_standard_0001"
  secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"#;

#[test]
fn resolves_by_clue_and_by_key() {
    let registry = parse(TWO_TENANTS, &[("ACME_SHOPIFY", "acme-shopify-secret")]).unwrap();
    let acme = registry
        .resolve("shopify", None, Some("acme.myshopify.com"))
        .unwrap();
    assert_eq!(&*acme.tenant.id, "acme");
    assert_eq!(acme.tenant.inactivity_window, Duration::from_secs(1800));
    assert!(acme
        .keys
        .as_ref()
        .unwrap()
        .matches_token(b"acme-shopify-secret"));
    assert!(acme
        .keys
        .as_ref()
        .unwrap()
        .matches_token(b"old-acme-shopify-secret"));

    let globex = registry.resolve("salla", None, Some("1234509876")).unwrap();
    assert_eq!(&*globex.tenant.id, "globex");
    assert_eq!(globex.tenant.inactivity_window, DEFAULT_INACTIVITY_WINDOW);

    let by_key = registry
        .resolve("standard", Some("int_globex_standard_0001"), None)
        .unwrap();
    assert_eq!(&*by_key.tenant.id, "globex");
}

#[test]
fn a_sample_store_behind_a_key_resolves_only_as_a_test_of_that_integration() {
    let text = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "flexype"
  flexype_store = "store_acme"
  integration_key = "int_acme_flexype_0000001"
  secret = "acme-flexype-secret"

[[tenant]]
id = "globex"
  [[tenant.integration]]
  provider = "flexype"
  flexype_store = "store_globex"
  secret = "globex-flexype-secret"
"#;
    let registry = parse(text, &[]).unwrap();
    let key = Some("int_acme_flexype_0000001");
    let sample = registry.resolve_sample("flexype", key, Some("sample_store"));
    assert_eq!(sample.map(|i| &*i.tenant.id), Some("acme"));
    // A store some integration has is never a sample: another tenant's is a mismatch.
    assert!(registry
        .resolve_sample("flexype", key, Some("store_globex"))
        .is_none());
    assert!(registry
        .resolve_sample("flexype", None, Some("sample_store"))
        .is_none());
    assert!(registry
        .resolve_sample("shopery", key, Some("sample_store"))
        .is_none());
    assert!(registry.resolve_sample("flexype", key, None).is_none());
}

#[test]
fn a_key_never_resolves_for_another_provider_or_clue() {
    let registry = parse(TWO_TENANTS, &[("ACME_SHOPIFY", "acme-shopify-secret")]).unwrap();
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
  secret = "some-integration-secret"

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
    std::fs::write(dir.path().join("shop.secret"), "secret-from-a-file\n").unwrap();
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
    assert!(acme
        .keys
        .as_ref()
        .unwrap()
        .matches_token(b"secret-from-a-file"));
}

#[test]
fn duplicate_clues_are_refused() {
    let text = r#"
[[tenant]]
id = "a"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "same.myshopify.com"
  secret = "store-a-shopify-secret"
[[tenant]]
id = "b"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "SAME.myshopify.com"
  secret = "store-b-shopify-secret"
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
  secret = "acme-zid-user:acme-zid-pass"
  [[tenant.integration]]
  provider = "sprusify"
  store_id = "store_abc"
  secret = "acme-sprusify-secret"
  [[tenant.integration]]
  provider = "shopimind"
  installation_id = "pg-1"
  secret = "acme-shopimind-secret"
  [[tenant.integration]]
  provider = "flexype"
  flexype_store = "My-Store.myshopify.com"
  secret = "acme-flexype-secret"
  [[tenant.integration]]
  provider = "easyorders"
  secret = "acme-easyorders-secret"
  previous_secret = "acme-easyorders-old"
  [[tenant.integration]]
  provider = "vendera"
  integration_key = "int_acme_vendera_000001"
  secret = "acme-vendera-secret"
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
  secret = "globex-shopery-secret"
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
    assert_eq!(by_secret("acme-easyorders-secret").as_deref(), Some("acme"));
    assert_eq!(by_secret("acme-easyorders-old").as_deref(), Some("acme"));
    assert_eq!(by_secret("globex-easyorders").as_deref(), Some("globex"));
    assert_eq!(by_secret("acme-zid-user:acme-zid-pass"), None);
    assert_eq!(by_secret("nobody"), None);
    // With the integration key in the URL, the presented secret must be that integration's.
    let globex_key = Some("int_globex_easyorders_01");
    let acme_secret = providers::secret_clue(b"acme-easyorders-secret");
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
    for secret in [
        "acme-easyorders-secret",
        "acme-vendera-secret",
        "globex-shopery-secret",
    ] {
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
  secret = "some-integration-secret"
  [[tenant.integration]]
  provider = "easyorders"
  installation_id = "1"
  secret = "same-easyorders-secret"
  [[tenant.integration]]
  provider = "easyorders"
  secret = "same-easyorders-secret"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "a.myshopify.com"
  secret = "some-integration-secret"
  scheme = { auth = "token", header = "x-secret" }
  [[tenant.integration]]
  provider = "vendera"
  integration_key = "int_a_vendera_0000001"
  secret = "some-integration-secret"
  scheme = { auth = "hmac-hex", header = "bad header", delivery_id_path = "" }
  [[tenant.integration]]
  provider = "sprusify"
  secret = "some-integration-secret"
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
    assert!(
        !text.contains("same-easyorders"),
        "secrets are never reported: {text}"
    );
}

#[test]
fn a_vendera_integration_without_a_scheme_loads_but_has_none() {
    let text = r#"
[[tenant]]
id = "a"
  [[tenant.integration]]
  provider = "vendera"
  integration_key = "int_a_vendera_0000001"
  secret = "some-integration-secret"
"#;
    let registry = parse(text, &[]).unwrap();
    let vendera = registry
        .resolve("vendera", Some("int_a_vendera_0000001"), None)
        .unwrap();
    assert!(vendera.scheme.is_none());
    assert_eq!(registry.warnings().len(), 1);
    assert!(
        registry.warnings()[0]
            .ends_with("has no `scheme`: every delivery is refused (401) until one is configured"),
        "{:?}",
        registry.warnings()
    );
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
  secret = "acme-orders-hook-secret"
  events = ["order_completed"]
  retry_schedule = ["0s", "30s", "10m"]
"#;
    let registry = parse(text, &[("ACME_HOOK", "acme-crm-hook-secret")]).unwrap();
    let crm = &registry.endpoints()[0];
    assert_eq!(crm.url.host(), Some("hooks.acme.example"));
    assert_eq!(crm.secrets.len(), 2);
    assert_eq!(
        crm.events,
        [Bucket::AbandonedCandidate, Bucket::OrderCompleted]
    );
    assert_eq!(crm.retry_schedule, None);
    let abandoned: Vec<&str> = registry
        .endpoints_for("acme", Bucket::AbandonedCandidate)
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(abandoned, ["crm"]);
    let orders: Vec<&str> = registry
        .endpoints_for("acme", Bucket::OrderCompleted)
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
        .endpoints_for("globex", Bucket::OrderCompleted)
        .next()
        .is_none());
    assert!(!format!("{registry:?}").contains("acme-crm-hook-secret"));
}

#[test]
fn endpoints_are_found_by_their_tenant_and_id_only() {
    let text = r#"
[[tenant]]
id = "acme"
  [[tenant.endpoint]]
  id = "crm"
  url = "https://hooks.acme.example/cartstream"
  secret = "acme-crm-hook-secret"

[[tenant]]
id = "globex"

[[tenant]]
id = "initech"
  [[tenant.endpoint]]
  id = "crm"
  url = "https://hooks.initech.example/in"
  secret = "initech-crm-hook-secret"
  events = ["order_completed"]

  [[tenant.endpoint]]
  id = "bi"
  url = "https://bi.initech.example/in"
  secret = "initech-bi-hook-secret"
"#;
    let registry = parse(text, &[]).unwrap();
    let host = |tenant: &str, id: &str| {
        registry
            .endpoint(tenant, id)
            .map(|e| (e.tenant.id.to_string(), e.url.host().unwrap().to_string()))
    };
    assert_eq!(
        host("acme", "crm"),
        Some(("acme".into(), "hooks.acme.example".into()))
    );
    assert_eq!(
        host("initech", "crm"),
        Some(("initech".into(), "hooks.initech.example".into()))
    );
    assert_eq!(host("acme", "bi"), None);
    assert_eq!(host("globex", "crm"), None);
    assert_eq!(host("nobody", "crm"), None);
    assert!(registry.endpoints_of("globex").is_empty());
    let ids = |tenant: &str, bucket: Bucket| -> Vec<String> {
        registry
            .endpoints_for(tenant, bucket)
            .map(|e| format!("{}/{}", e.tenant.id, e.id))
            .collect()
    };
    assert_eq!(ids("initech", Bucket::AbandonedCandidate), ["initech/bi"]);
    assert_eq!(
        ids("initech", Bucket::OrderCompleted),
        ["initech/crm", "initech/bi"]
    );
    assert_eq!(ids("acme", Bucket::OrderCompleted), ["acme/crm"]);
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
  secret = "endpoint-a-signing-secret"
  retry_schedule = ["soon"]

  [[tenant.endpoint]]
  id = "b"
  url = "https://ok.example/"
  secret = "endpoint-b-signing-secret"
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
            "[[tenant]]\nid = \"acme\"\n  [[tenant.endpoint]]\n  id = \"a\"\n  url = \"http://{host}:8080/in\"\n  secret = \"endpoint-signing-secret\"\n"
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
            "[[tenant]]\nid = \"acme\"\n  [[tenant.endpoint]]\n  id = \"a\"\n  url = \"{url}\"\n  secret = \"endpoint-signing-secret\"\n"
        );
        assert!(parse(&text, &[]).is_ok(), "{url}");
    }
}

#[test]
fn secrets_shorter_than_the_minimum_are_refused_without_being_shown() {
    let text = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "acme.myshopify.com"
  secret = "hunter2-short"
  previous_secret = "acme-shopify-old-secret"

  [[tenant.integration]]
  provider = "standard"
  integration_key = "int_acme_standard_0000001"
  secret = "whsec_c2hvcnQta2V5"

  [[tenant.endpoint]]
  id = "crm"
  url = "https://hooks.acme.example/in"
  secret = "tiny-secret"
"#;
    let problems = parse(text, &[]).unwrap_err();
    let text = problems.iter().collect::<Vec<_>>().join("\n");
    for expected in [
        "integration[0] (shopify): secret: 13 bytes long; at least 16 are required",
        // The key of a whsec_ secret is what follows it, decoded: "short-key".
        "integration[1] (standard): secret: 9 bytes long; at least 16 are required",
        "endpoint[0] (crm): secret: 11 bytes long; at least 16 are required",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(problems.len(), 3, "{text}");
    for secret in ["hunter2", "c2hvcnQta2V5", "tiny-secret\""] {
        assert!(!text.contains(secret), "{secret} shown in:\n{text}");
    }
}

#[test]
fn integrations_sharing_a_secret_load_with_a_warning_naming_both() {
    let text = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "acme.myshopify.com"
  secret = "one-app-secret-for-all-shops"

[[tenant]]
id = "globex"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "globex.myshopify.com"
  secret = "globex-own-shopify-secret"
  previous_secret = "one-app-secret-for-all-shops"

  [[tenant.integration]]
  provider = "salla"
  merchant_id = "1234509876"
  secret = "globex-salla-secret"
"#;
    let registry = parse(text, &[]).unwrap();
    let warnings = registry.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("tenant[1] (globex) integration[0] (shopify): shares its secret with tenant[0] (acme) integration[0] (shopify)"),
        "{warnings:?}"
    );
    assert!(!warnings[0].contains("one-app-secret"), "{warnings:?}");
    assert!(
        parse(TWO_TENANTS, &[("ACME_SHOPIFY", "acme-shopify-secret")])
            .unwrap()
            .warnings()
            .is_empty()
    );
}

#[test]
fn a_syntax_error_names_the_file_line_and_column_without_showing_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.toml");
    std::fs::write(
        &path,
        r#"[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "acme.myshopify.com"
  secret = "shpss_hunter2-shopify-secret
"#,
    )
    .unwrap();
    let problems = Registry::load(&path, &HashMap::new()).unwrap_err();
    let text = problems.to_string();
    let expected = format!(
        "{}: line 6, column 41: invalid basic string",
        path.display()
    );
    assert_eq!(problems.len(), 1, "{text}");
    assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    assert!(!text.contains("hunter2"), "the line is shown in:\n{text}");
}

#[test]
fn a_value_of_the_wrong_type_is_named_by_its_line_without_being_shown() {
    let text = r#"
[[tenant]]
id = "acme"
allow_plain_http = "hunter2-not-a-boolean"
"#;
    let problems = parse(text, &[]).unwrap_err();
    let text = problems.iter().collect::<Vec<_>>().join("\n");
    assert!(
        text.starts_with("line 4, column 20: invalid type: a string, expected a boolean"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "the value is shown in:\n{text}");
}

#[test]
fn a_sealing_key_is_read_from_the_environment_and_a_bad_one_is_a_problem_without_showing_it() {
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let mut config = Config {
        sealing_key: Some(crate::kafka::Property::Env {
            env: "SEALING_KEY".to_string(),
        }),
        ..Config::default()
    };
    let env = HashMap::from([("SEALING_KEY".to_string(), key.to_string())]);
    let mut problems = Problems::default();
    config.resolve_sealing_key(&env, Path::new("."), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        config.keyring().map(|k| k.current().key_id().to_string()),
        Some(Vault::from_base64(key).unwrap().key_id().to_string())
    );
    for (text, why) in [("c2hvcnQ=", "not 5 bytes"), ("secret words", "not base64")] {
        let mut config = Config {
            sealing_key: Some(crate::kafka::Property::Text(text.to_string())),
            ..Config::default()
        };
        let mut problems = Problems::default();
        config.resolve_sealing_key(&HashMap::new(), Path::new("."), &mut problems);
        let listed: Vec<&str> = problems.iter().collect();
        assert!(
            listed.len() == 1
                && listed[0].starts_with("tenants.sealing_key: ")
                && listed[0].contains(why)
                && !listed[0].contains(text),
            "{listed:?}"
        );
        assert!(config.keyring().is_none());
    }
}

#[test]
fn reading_tenants_from_the_topic_needs_a_sealing_key() {
    let mut config = Config {
        source: Source::Topic,
        ..Config::default()
    };
    let mut problems = Problems::default();
    config.resolve_sealing_key(&HashMap::new(), Path::new("."), &mut problems);
    let listed: Vec<&str> = problems.iter().collect();
    assert!(
        listed.len() == 1 && listed[0].starts_with("tenants.sealing_key: must be set"),
        "{listed:?}"
    );
    let mut file = Config::default();
    let mut problems = Problems::default();
    file.resolve_sealing_key(&HashMap::new(), Path::new("."), &mut problems);
    assert!(
        problems.is_empty(),
        "a file needs no sealing key: {problems:?}"
    );
}

#[test]
fn previous_sealing_keys_are_checked_and_open_but_never_seal() {
    let (current, old) = (
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",
    );
    let text = |key: &str| Some(crate::kafka::Property::Text(key.to_string()));
    let mut config = Config {
        sealing_key: text(current),
        previous_sealing_keys: vec![text(old).unwrap()],
        ..Config::default()
    };
    let mut problems = Problems::default();
    config.resolve_sealing_key(&HashMap::new(), Path::new("."), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let keys = config.keyring().unwrap();
    let (current, old) = (
        Vault::from_base64(current).unwrap(),
        Vault::from_base64(old).unwrap(),
    );
    assert_eq!(keys.current().key_id(), current.key_id());
    assert_eq!(keys.find(old.key_id()).unwrap().key_id(), old.key_id());

    let mut config = Config {
        sealing_key: None,
        previous_sealing_keys: vec![text("bm90IGEga2V5").unwrap()],
        ..Config::default()
    };
    let mut problems = Problems::default();
    config.resolve_sealing_key(&HashMap::new(), Path::new("."), &mut problems);
    let listed: Vec<&str> = problems.iter().collect();
    assert_eq!(
        listed,
        [
            "tenants.previous_sealing_keys[0]: must be 32 bytes in base64 (`openssl rand -base64 32`), not 9 bytes",
            "tenants.previous_sealing_keys: set without tenants.sealing_key"
        ]
    );
}

#[test]
fn a_publishable_key_names_its_tenant_and_origins_are_kept_as_browsers_send_them() {
    let text = r#"
[[tenant]]
id = "acme"
publishable_key = "pk_live_0123456789abcdef"
allowed_origins = ["https://Acme.example/", "http://localhost:3000", "https://acme.example:443"]

[[tenant]]
id = "globex"
"#;
    let registry = parse(text, &[]).unwrap();
    let acme = registry
        .tenant_by_publishable_key("pk_live_0123456789abcdef")
        .unwrap();
    assert_eq!(&*acme.id, "acme");
    assert_eq!(
        acme.allowed_origins,
        ["https://acme.example", "http://localhost:3000"]
    );
    assert!(registry.origin_allowed_by_any("https://acme.example"));
    assert!(!registry.origin_allowed_by_any("https://globex.example"));
    assert!(registry
        .tenant_by_publishable_key("pk_live_0123456789abcdeF")
        .is_none());
    assert_eq!(registry.tenant("globex").unwrap().publishable_key, None);
}

#[test]
fn bad_publishable_keys_and_origins_are_refused_with_the_reason() {
    let text = r#"
[[tenant]]
id = "acme"
publishable_key = "sk_0123456789abcdef"
allowed_origins = ["https://acme.example/cart", "acme.example", "ftp://acme.example", "https://u@acme.example", "*"]

[[tenant]]
id = "globex"
publishable_key = "pk_0123456789abcdef"

[[tenant]]
id = "initech"
publishable_key = "pk_0123456789abcdef"

[[tenant]]
id = "umbrella"
publishable_key = "pk_short"
"#;
    let text = parse(text, &[]).unwrap_err().to_string();
    for expected in [
        "publishable_key: must start with \"pk_\"",
        "\"https://acme.example/cart\": must be a scheme, a host and an optional port",
        "\"acme.example\": must be",
        "\"ftp://acme.example\": must be",
        "\"https://u@acme.example\": must be",
        "\"*\": must be",
        "publishable_key: another tenant has the same key",
        "publishable_key: must be \"pk_\" and 16 to 128",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn origins_are_what_the_documents_pattern_says_and_taken_as_browsers_send_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |file: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(root.join(file)).unwrap()).unwrap()
    };
    let api = read("docs/openapi.json");
    let topic = read("schemas/tenants.v1.json");
    let documented = [
        &api["components"]["schemas"]["NewTenant"]["properties"]["allowed_origins"]["items"],
        &api["components"]["schemas"]["TenantChange"]["properties"]["allowed_origins"]["items"],
        &api["components"]["schemas"]["Tenant"]["properties"]["allowed_origins"]["items"],
        &topic["$defs"]["tenant"]["properties"]["allowed_origins"]["items"],
    ];
    for items in documented {
        assert_eq!(items["pattern"], ORIGIN_PATTERN);
    }
    for (given, taken) in [
        ("https://shop.example", "https://shop.example"),
        ("https://Shop.Example/", "https://shop.example"),
        ("https://shop.example:443", "https://shop.example"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        (
            "https://a-b.c1.example:65535",
            "https://a-b.c1.example:65535",
        ),
    ] {
        assert_eq!(origin(given).as_deref(), Ok(taken), "{given}");
    }
    for refused in [
        "",
        "*",
        "null",
        "shop.example",
        " https://shop.example",
        "HTTPS://shop.example",
        "https://shop.example/cart",
        "https://shop.example?x",
        "https://u@shop.example",
        "ftp://shop.example",
        "https://1.2.3.4.5",
        "https://shop.example:65536",
        "https://xn--zz.example",
        "https://-shop.example",
        "http://[::1]:3000",
        "https://shop.example//",
    ] {
        assert!(origin(refused).is_err(), "{refused:?}");
    }
}

#[test]
fn a_tenant_is_enabled_unless_its_file_says_otherwise() {
    let text = r#"
[[tenant]]
id = "acme"
enabled = false

[[tenant]]
id = "globex"
"#;
    let registry = parse(text, &[]).unwrap();
    assert!(registry.tenant("acme").unwrap().disabled);
    assert!(!registry.tenant("globex").unwrap().disabled);
}

#[test]
fn an_integration_without_a_secret_is_signed_by_its_platform_app_and_found_by_its_shop() {
    let registry = parse(
        r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "Acme.myshopify.com"
  integration_key = "int_acme_shopify_app_01"
"#,
        &[],
    )
    .unwrap();
    let acme = registry
        .resolve("shopify", None, Some("acme.myshopify.com"))
        .unwrap();
    assert!(acme.keys.is_none());
    // The shop is checked even when the URL names the integration: the app's secret is every
    // shop's, so a delivery another shop received must not pass for acme's.
    let by_key = Some("int_acme_shopify_app_01");
    assert!(registry
        .resolve("shopify", by_key, Some("acme.myshopify.com"))
        .is_some());
    assert!(registry
        .resolve("shopify", by_key, Some("globex.myshopify.com"))
        .is_none());
}

#[test]
fn an_integration_without_a_secret_needs_an_app_that_signs_and_a_shop_of_its_own() {
    let problems = parse(
        r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopify"
  integration_key = "int_acme_shopify_app_01"
  [[tenant.integration]]
  provider = "zid"
  store_id = "12345"
  [[tenant.integration]]
  provider = "salla"
  merchant_id = "1234509876"
  previous_secret = "the-previous-salla-secret"

[[tenant]]
id = "globex"
  [[tenant.integration]]
  provider = "salla"
  merchant_id = "1234509876"
"#,
        &[],
    )
    .unwrap_err();
    let problems: Vec<&str> = problems.iter().collect();
    assert_eq!(
        problems,
        [
            "tenant[0] (acme) integration[0] (shopify): needs `shop_domain`: without `secret` it is signed with the shopify app's secret, which every shop of the app shares",
            "tenant[0] (acme) integration[1] (zid): needs `secret` (zid has no platform app that signs its shops' deliveries)",
            "tenant[0] (acme) integration[2] (salla): `previous_secret` without `secret` (the salla app's secrets are rotated in [platforms.salla])",
            "tenant[1] (globex) integration[0] (salla): another integration of salla already has this merchant_id",
        ]
    );
}
