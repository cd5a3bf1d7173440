//! Registry files as records of the tenants topic, and back: with no broker, the messages a
//! plan would write are read back as a consumer of the topic reads them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::tenants::{Endpoint, Integration};

/// The README's registry.
/// The clock of these tests (Unix milliseconds).
const NOW: i64 = 1_796_000_000_000;

const EXAMPLE: &str = include_str!("../../../config/tenants.example.toml");

fn vault() -> Vault {
    Vault::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap()
}

fn other_vault() -> Vault {
    Vault::from_base64("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=").unwrap()
}

/// The registry every integration test's daemon loads (`TENANTS` in `tests/it/support.rs`).
fn it_tenants() -> &'static str {
    let support = include_str!("../../../tests/it/support.rs");
    let start = "pub const TENANTS: &str = r#\"";
    let from = support
        .find(start)
        .expect("tests/it/support.rs defines TENANTS")
        + start.len();
    let len = support[from..].find("\"#;").expect("TENANTS ends");
    &support[from..from + len]
}

fn records(text: &str) -> Records {
    Records::from_toml(text, Path::new("."), &HashMap::new(), &vault()).unwrap()
}

fn registry(text: &str) -> Registry {
    Registry::from_toml(text, Path::new("."), &HashMap::new()).unwrap()
}

/// `records` written by `tenants apply` to an empty topic, and read back.
fn through_the_topic(records: &Records) -> Records {
    let mut read = Records::default();
    for (key, value) in plan(&Records::default(), records, &vault().into())
        .unwrap()
        .messages()
    {
        read.apply(key.as_bytes(), value.as_deref()).unwrap();
    }
    read
}

/// Every inline secret of a registry file.
fn secrets_in(text: &str) -> Vec<String> {
    let file: toml::Table = toml::from_str(text).unwrap();
    let mut secrets = Vec::new();
    for tenant in file["tenant"].as_array().unwrap() {
        for kind in ["integration", "endpoint"] {
            for table in tenant
                .get(kind)
                .and_then(|t| t.as_array())
                .into_iter()
                .flatten()
            {
                for field in ["secret", "previous_secret"] {
                    if let Some(secret) = table.get(field).and_then(|s| s.as_str()) {
                        secrets.push(secret.to_string());
                    }
                }
            }
        }
    }
    assert!(!secrets.is_empty());
    secrets
}

/// Everything the ingress uses of the integration a delivery resolves to: its tenant, its
/// provider, what finds it, its keys (by what they sign and digest), its scheme and event.
fn integration_print(integration: &Integration) -> String {
    let keys: Vec<_> = integration
        .keys
        .iter()
        .flat_map(crate::providers::Keys::iter)
        .map(|key| {
            (
                hex::encode(key.sign(&[b"a delivery"])),
                key.secret_digest().map(hex::encode),
            )
        })
        .collect();
    format!(
        "{} {} {:?} {:?} {keys:?} {:?} {:?}",
        integration.tenant.id,
        integration.provider.slug(),
        integration.clue,
        integration.key,
        integration.scheme,
        integration.event
    )
}

/// A tenant's endpoints, by id, with what delivery uses of each.
fn endpoint_prints(registry: &Registry, tenant: &str) -> Vec<String> {
    let print = |endpoint: &Endpoint| {
        let secrets: Vec<_> = endpoint
            .secrets
            .iter()
            .map(|secret| {
                (
                    hex::encode(secret.plain().sign(&[b"a transition"])),
                    hex::encode(secret.standard().sign(&[b"a transition"])),
                )
            })
            .collect();
        format!(
            "{} {} {secrets:?} {:?} {:?}",
            endpoint.id, endpoint.url, endpoint.events, endpoint.retry_schedule
        )
    };
    let mut prints: Vec<String> = registry.endpoints_of(tenant).iter().map(print).collect();
    prints.sort();
    prints
}

fn tenant_prints(registry: &Registry) -> Vec<String> {
    let mut prints: Vec<String> = registry
        .tenants()
        .iter()
        .map(|t| format!("{} {:?} {}", t.id, t.inactivity_window, t.allow_plain_http))
        .collect();
    prints.sort();
    prints
}

fn integration_key(tenant: &str, id: &str) -> Key {
    Key::Integration {
        tenant: tenant.to_string(),
        id: id.to_string(),
    }
}

fn integration_mut<'r>(records: &'r mut Records, key: &Key) -> &'r mut topic::Integration {
    match &mut records.0.get_mut(key).unwrap().entity {
        Entity::Integration(integration) => integration,
        other => panic!("{key} is {other:?}"),
    }
}

#[test]
fn the_example_files_records_resolve_every_delivery_as_the_file_does() {
    let env = HashMap::new();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tenants.example.toml");
    for (from_file, records) in [
        (
            Registry::load(&path, &env).unwrap(),
            Records::load(&path, &env, &vault()).unwrap(),
        ),
        (registry(it_tenants()), records(it_tenants())),
    ] {
        let read = through_the_topic(&records);
        assert_eq!(read, records);
        let from_records = read.registry(&vault().into(), NOW).unwrap();

        assert_eq!(tenant_prints(&from_records), tenant_prints(&from_file));
        assert_eq!(
            from_records.integrations().len(),
            from_file.integrations().len()
        );
        for integration in from_file.integrations() {
            let provider = integration.provider.slug();
            let (key, clue) = (integration.key.as_deref(), integration.clue.as_deref());
            assert!(from_file.resolve(provider, key, clue).is_some());
            for (key, clue) in [(key, clue), (None, clue), (key, None)] {
                assert_eq!(
                    from_records
                        .resolve(provider, key, clue)
                        .map(integration_print),
                    from_file
                        .resolve(provider, key, clue)
                        .map(integration_print),
                    "{provider} {key:?} {clue:?}"
                );
            }
        }
        assert_eq!(from_records.endpoints().len(), from_file.endpoints().len());
        for tenant in from_file.tenants() {
            assert_eq!(
                endpoint_prints(&from_records, &tenant.id),
                endpoint_prints(&from_file, &tenant.id)
            );
        }
        assert_eq!(from_records.warnings().len(), from_file.warnings().len());
    }
}

#[test]
fn a_plan_of_a_file_against_its_own_records_is_empty() {
    for text in [EXAMPLE, it_tenants()] {
        let (first, second) = (records(text), records(text));
        assert_ne!(first, second, "each import seals anew");
        let same = plan(&first, &second, &vault().into()).unwrap();
        assert!(same.is_empty());
        assert_eq!(same.to_string(), "no changes");
        let applied = through_the_topic(&first);
        assert!(plan(&applied, &second, &vault().into()).unwrap().is_empty());
    }
}

#[test]
fn changing_one_secret_plans_one_update_naming_the_field_but_not_the_value() {
    let current = records(EXAMPLE);
    let changed = EXAMPLE.replace("souq-vendera-dev-secret", "souq-vendera-next-secret");
    let update = plan(&current, &records(&changed), &vault().into()).unwrap();
    assert_eq!(
        update.to_string(),
        "update [\"integration\",\"souq\",\"vendera:integration_key=int_souq_vendera_7d41a0c2\"]: secret\n\
         0 to create, 1 to update, 0 to delete"
    );
    let mut topic = current;
    for (key, value) in update.messages() {
        topic.apply(key.as_bytes(), value.as_deref()).unwrap();
    }
    let registry = topic.registry(&vault().into(), NOW).unwrap();
    let vendera = registry
        .resolve("vendera", Some("int_souq_vendera_7d41a0c2"), None)
        .unwrap();
    assert!(vendera
        .keys
        .as_ref()
        .unwrap()
        .matches_token(b"souq-vendera-next-secret"));
    assert!(!vendera
        .keys
        .as_ref()
        .unwrap()
        .matches_token(b"souq-vendera-dev-secret"));
}

#[test]
fn changing_settings_plans_updates_naming_each_field() {
    let current = records(EXAMPLE);
    let changed = EXAMPLE
        .replace("inactivity_window = \"30m\"", "inactivity_window = \"45m\"")
        .replace(
            "url = \"http://127.0.0.1:9000/hooks\"",
            "url = \"http://127.0.0.1:9001/hooks\"\n  previous_secret = \"acme-crm-old-signing-key\"",
        );
    assert_eq!(
        plan(&current, &records(&changed), &vault().into())
            .unwrap()
            .to_string(),
        "update [\"tenant\",\"souq\"]: inactivity_window_ms\n\
         update [\"endpoint\",\"acme\",\"crm\"]: previous_secret, url\n\
         0 to create, 2 to update, 0 to delete"
    );
}

#[test]
fn removing_a_tenant_plans_the_tombstones_of_it_its_integrations_and_endpoints() {
    let mut file: toml::Table = toml::from_str(EXAMPLE).unwrap();
    file["tenant"]
        .as_array_mut()
        .unwrap()
        .retain(|tenant| tenant["id"].as_str() != Some("acme"));
    let without_acme = toml::to_string(&file).unwrap();
    let mut topic = records(EXAMPLE);
    let removal = plan(&topic, &records(&without_acme), &vault().into()).unwrap();
    let messages: Vec<_> = removal.messages().collect();
    let tombstone = |key: &str| (key.to_string(), None);
    assert_eq!(
        messages,
        [
            tombstone(r#"["endpoint","acme","crm"]"#),
            tombstone(
                r#"["integration","acme","standard:integration_key=int_acme_standard_5f2c9e1b"]"#
            ),
            tombstone(r#"["integration","acme","shopify:shop_domain=acme-demo.myshopify.com"]"#),
            tombstone(r#"["tenant","acme"]"#),
        ]
    );
    assert!(removal
        .to_string()
        .ends_with("0 to create, 0 to update, 4 to delete"));
    for (key, value) in messages {
        topic.apply(key.as_bytes(), value.as_deref()).unwrap();
    }
    let registry = topic.registry(&vault().into(), NOW).unwrap();
    assert!(registry.tenant("acme").is_none());
    assert!(registry
        .resolve("shopify", None, Some("acme-demo.myshopify.com"))
        .is_none());
    assert!(registry.endpoints_of("acme").is_empty());
    let souq = registry.resolve("salla", None, Some("1234509876")).unwrap();
    assert_eq!(&*souq.tenant.id, "souq");
}

#[test]
fn records_sealed_with_another_key_fail_naming_each_record_and_field_but_no_secret() {
    let problems = records(EXAMPLE)
        .registry(&other_vault().into(), NOW)
        .unwrap_err()
        .to_string();
    let (ours, theirs) = (
        vault().key_id().to_string(),
        other_vault().key_id().to_string(),
    );
    let sealed_with_ours = |record: &str, field: &str| {
        format!("record {record}: {field}: sealed with key {ours}, not this key ({theirs})")
    };
    let expected: Vec<String> = [
        (
            r#"["integration","acme","shopify:shop_domain=acme-demo.myshopify.com"]"#,
            "secret",
        ),
        (
            r#"["integration","acme","shopify:shop_domain=acme-demo.myshopify.com"]"#,
            "previous_secret",
        ),
        (
            r#"["integration","acme","standard:integration_key=int_acme_standard_5f2c9e1b"]"#,
            "secret",
        ),
        (r#"["integration","souq","easyorders"]"#, "secret"),
        (
            r#"["integration","souq","salla:merchant_id=1234509876"]"#,
            "secret",
        ),
        (
            r#"["integration","souq","vendera:integration_key=int_souq_vendera_7d41a0c2"]"#,
            "secret",
        ),
        (r#"["endpoint","acme","crm"]"#, "secret"),
    ]
    .iter()
    .map(|(record, field)| sealed_with_ours(record, field))
    .collect();
    assert_eq!(problems, expected.join("\n"));
    for secret in secrets_in(EXAMPLE) {
        assert!(!problems.contains(&secret));
    }
}

#[test]
fn a_sealed_secret_copied_into_another_records_field_does_not_open() {
    let mut records = records(EXAMPLE);
    let salla = integration_key("souq", "salla:merchant_id=1234509876");
    let easyorders = integration_key("souq", "easyorders");
    let shopify = integration_key("acme", "shopify:shop_domain=acme-demo.myshopify.com");
    let stolen = integration_mut(&mut records, &salla).secret.clone();
    integration_mut(&mut records, &easyorders).secret = stolen;
    // The previous secret put in place of the current one, in its own record.
    let acme = integration_mut(&mut records, &shopify);
    acme.secret = acme.previous_secret.clone();
    let moved = "the sealed value is damaged or was moved from another record";
    assert_eq!(
        records
            .registry(&vault().into(), NOW)
            .unwrap_err()
            .to_string(),
        format!(
            "record {shopify}: secret: {moved}\n\
             record {easyorders}: secret: {moved}"
        )
    );
    // A whole record filed under another key is not read at all.
    let value = records.0[&salla].encode();
    assert_eq!(
        records.apply(easyorders.encode().as_bytes(), Some(&value)),
        Err(Unreadable::Misfiled {
            key: easyorders.clone(),
            found: salla
        })
    );
    assert!(!records.0.contains_key(&easyorders));
}

#[test]
fn the_records_and_the_plan_of_a_file_hold_no_secret_in_clear() {
    for text in [EXAMPLE, it_tenants()] {
        let creation = plan(&Records::default(), &records(text), &vault().into()).unwrap();
        let shown = creation.to_string();
        let messages: Vec<_> = creation.messages().collect();
        assert_eq!(messages.len(), records(text).0.len());
        for secret in secrets_in(text) {
            assert!(!shown.contains(&secret), "{shown}");
            for (key, value) in &messages {
                let value = String::from_utf8(value.clone().unwrap()).unwrap();
                assert!(
                    !key.contains(&secret) && !value.contains(&secret),
                    "{value}"
                );
            }
        }
    }
}

#[test]
fn records_are_held_to_the_validation_of_the_file() {
    let mut records = records(EXAMPLE);
    // Souq takes acme's shop domain, and a window of zero; globex has endpoints but no record.
    let taken = integration_key("souq", "shopify:shop_domain=acme-demo.myshopify.com");
    let shop = topic::Integration {
        tenant: "souq".to_string(),
        id: "shopify:shop_domain=acme-demo.myshopify.com".to_string(),
        provider: "shopify".to_string(),
        shop_domain: Some("acme-demo.myshopify.com".to_string()),
        merchant_id: None,
        store_id: None,
        installation_id: None,
        flexype_store: None,
        integration_key: None,
        secret: Some(seal(&vault(), &taken, "secret", "souq-shopify-dev-secret")),
        previous_secret: None,
        previous_secret_expires_at_ms: None,
        scheme: None,
        event: None,
        access_token: None,
        installation: None,
    };
    records
        .0
        .insert(taken.clone(), Record::new(Entity::Integration(shop)));
    let souq = Key::Tenant {
        tenant: "souq".to_string(),
    };
    match &mut records.0.get_mut(&souq).unwrap().entity {
        Entity::Tenant(tenant) => tenant.inactivity_window_ms = Some(0),
        other => panic!("{other:?}"),
    }
    let mut orphan = records.0[&Key::Endpoint {
        tenant: "acme".to_string(),
        id: "crm".to_string(),
    }]
        .clone();
    let Entity::Endpoint(endpoint) = &mut orphan.entity else {
        panic!("{orphan:?}")
    };
    endpoint.tenant = "globex".to_string();
    // Sealed for its new key: the one it was sealed for would not open here.
    let globex = Key::Endpoint {
        tenant: "globex".to_string(),
        id: "crm".to_string(),
    };
    endpoint.secret = seal(&vault(), &globex, "secret", "globex-crm-signing-secret");
    records.0.insert(orphan.key(), orphan);

    // The orphan is left out (below), not a problem.
    assert_eq!(
        records
            .registry(&vault().into(), NOW)
            .unwrap_err()
            .to_string(),
        format!(
            "record {souq}: inactivity_window must be positive\n\
             record {taken}: another integration of shopify already has this shop_domain"
        )
    );
    // The file says the same of itself, where it says it.
    let file = EXAMPLE.replace("\"30m\"", "\"0s\"");
    assert_eq!(
        Registry::from_toml(&file, Path::new("."), &HashMap::new())
            .unwrap_err()
            .to_string(),
        "tenant[1] (souq): inactivity_window must be positive"
    );
}

#[test]
fn a_file_the_registry_refuses_is_refused_with_the_same_problems() {
    let broken = r#"
[[tenant]]
id = "bad id"
  [[tenant.integration]]
  provider = "nosuch"
  secret = "some-integration-secret"

  [[tenant.integration]]
  provider = "shopify"
  secret = { env = "MISSING_VAR" }
"#;
    for text in [broken, "[[tenant]\nid = 1"] {
        let refused = Records::from_toml(text, Path::new("."), &HashMap::new(), &vault());
        let problems = Registry::from_toml(text, Path::new("."), &HashMap::new()).unwrap_err();
        assert!(!problems.is_empty());
        assert_eq!(refused.unwrap_err(), problems);
    }
}

#[test]
fn a_secret_given_by_reference_is_sealed_by_its_value_and_compared_by_it() {
    let text = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "Acme.myshopify.com"
  secret = { env = "ACME_SHOPIFY" }
"#;
    let import = |value: &str| {
        let env = HashMap::from([("ACME_SHOPIFY".to_string(), value.to_string())]);
        Records::from_toml(text, Path::new("."), &env, &vault()).unwrap()
    };
    let records = import("acme-shopify-secret-from-env");
    let registry = through_the_topic(&records)
        .registry(&vault().into(), NOW)
        .unwrap();
    let acme = registry
        .resolve("shopify", None, Some("acme.myshopify.com"))
        .unwrap();
    assert!(acme
        .keys
        .as_ref()
        .unwrap()
        .matches_token(b"acme-shopify-secret-from-env"));
    let same = plan(
        &records,
        &import("acme-shopify-secret-from-env"),
        &vault().into(),
    )
    .unwrap();
    assert!(same.is_empty());
    assert_eq!(
        plan(
            &records,
            &import("acme-shopify-rotated-secret"),
            &vault().into()
        )
        .unwrap()
        .to_string(),
        "update [\"integration\",\"acme\",\"shopify:shop_domain=acme.myshopify.com\"]: secret\n\
         0 to create, 1 to update, 0 to delete"
    );
}

#[test]
fn a_secret_sealed_with_another_key_is_planned_to_be_sealed_again() {
    let sealed_elsewhere =
        Records::from_toml(EXAMPLE, Path::new("."), &HashMap::new(), &other_vault()).unwrap();
    let resealing = plan(&sealed_elsewhere, &records(EXAMPLE), &vault().into())
        .unwrap()
        .to_string();
    assert!(resealing.contains(
        "update [\"integration\",\"acme\",\"shopify:shop_domain=acme-demo.myshopify.com\"]: \
         previous_secret (not readable with this key: sealed again), \
         secret (not readable with this key: sealed again)\n"
    ));
    assert!(resealing.ends_with("0 to create, 6 to update, 0 to delete"));
}

#[test]
fn imported_integrations_are_named_by_their_clue_their_key_or_their_place() {
    let text = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "easyorders"
  secret = "acme-easyorders-secret-1"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "integration_key=int_acme_shopify_00001"
  secret = "acme-shopify-secret-0001"
  [[tenant.integration]]
  provider = "shopify"
  integration_key = "int_acme_shopify_00001"
  secret = "acme-shopify-secret-0002"
  [[tenant.integration]]
  provider = "easyorders"
  secret = "acme-easyorders-secret-2"
"#;
    let ids: Vec<String> = records(text)
        .0
        .keys()
        .filter_map(|key| match key {
            Key::Integration { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        ids,
        [
            "easyorders",
            "easyorders#2",
            "shopify:integration_key=int_acme_shopify_00001",
            "shopify:shop_domain=integration_key=int_acme_shopify_00001",
        ]
    );
}

#[test]
fn the_latest_record_of_a_key_counts_and_a_tombstone_removes_it() {
    let tenant = |window_ms| {
        Record::new(Entity::Tenant(topic::Tenant {
            id: "acme".to_string(),
            inactivity_window_ms: Some(window_ms),
            allow_plain_http: false,
            publishable_key: None,
            allowed_origins: Vec::new(),
            disabled: false,
        }))
        .encode()
    };
    let key = br#"["tenant","acme"]"#;
    let window = |records: &Records| {
        let registry = records.registry(&vault().into(), NOW).unwrap();
        registry.tenant("acme").map(|t| t.inactivity_window)
    };
    let mut topic = Records::default();
    topic.apply(key, Some(&tenant(60_000))).unwrap();
    topic.apply(key, Some(&tenant(120_000))).unwrap();
    assert_eq!(window(&topic), Some(Duration::from_secs(120)));
    topic.apply(key, None).unwrap();
    assert_eq!(window(&topic), None);

    assert_eq!(
        topic.apply(br#"[ "tenant", "acme" ]"#, Some(&tenant(60_000))),
        Err(Unreadable::Key(r#"[ "tenant", "acme" ]"#.to_string()))
    );
    topic.apply(key, Some(&tenant(60_000))).unwrap();
    // A secret written in clear by mistake is not repeated in the error, and the key's
    // record is gone, as compaction will leave it.
    let wrong = br#"{"schema":"cartstream.tenants.v1","kind":"tenant","id":"acme","inactivity_window_ms":"in-clear-secret","allow_plain_http":false}"#;
    let error = topic.apply(key, Some(wrong)).unwrap_err();
    assert!(matches!(error, Unreadable::Value { .. }), "{error}");
    assert!(!error.to_string().contains("in-clear-secret"), "{error}");
    assert_eq!(window(&topic), None);
}

/// Every record of `records` with `plan`'s messages written over it, as the topic reads.
fn after(records: &Records, plan: &Plan) -> Records {
    let mut read = through_the_topic(records);
    for (key, value) in plan.messages() {
        read.apply(key.as_bytes(), value.as_deref()).unwrap();
    }
    read
}

/// The key ids every secret of `records` is sealed under.
fn key_ids(records: &Records) -> BTreeSet<String> {
    records
        .0
        .values()
        .flat_map(|record| record.secrets())
        .filter_map(|(_, sealed)| Some(sealed?.key_id.clone()))
        .collect()
}

#[test]
fn rekeying_seals_every_secret_under_the_current_key_and_a_second_rekey_changes_nothing() {
    let old = Records::from_toml(EXAMPLE, Path::new("."), &HashMap::new(), &other_vault()).unwrap();
    let keys = Keyring::new(vault(), vec![other_vault()]);
    // Both keys open the old records: a deployment keeps serving while the key is replaced.
    let before = old.registry(&keys, NOW).unwrap();
    let prints = |registry: &Registry| {
        let mut integrations: Vec<String> = registry
            .integrations()
            .iter()
            .map(integration_print)
            .collect();
        integrations.sort();
        (integrations, endpoint_prints(registry, "acme"))
    };
    assert_eq!(prints(&before), prints(&registry(EXAMPLE)));

    let plan = old.rekey(&keys).unwrap();
    let text = plan.to_string();
    let old_id = other_vault().key_id().to_string();
    assert!(
        text.ends_with("0 to create, 6 to update, 0 to delete"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "update [\"endpoint\",\"acme\",\"crm\"]: secret (sealed under {old_id}: sealed again)\n"
        )),
        "{text}"
    );
    let rekeyed = after(&old, &plan);
    assert_eq!(
        key_ids(&rekeyed),
        BTreeSet::from([vault().key_id().to_string()])
    );
    // The current key alone now opens everything, to the same registry.
    let opened = rekeyed.registry(&vault().into(), NOW).unwrap();
    assert_eq!(prints(&opened), prints(&before));
    assert!(rekeyed.rekey(&keys).unwrap().is_empty());
    assert!(!text.contains("secret-"), "a value in the plan: {text}");
}

#[test]
fn rekeying_without_the_key_a_secret_was_sealed_under_plans_nothing_and_names_each_secret() {
    let old = Records::from_toml(EXAMPLE, Path::new("."), &HashMap::new(), &other_vault()).unwrap();
    let problems = old.rekey(&vault().into()).unwrap_err();
    let listed: Vec<&str> = problems.iter().collect();
    assert_eq!(listed.len(), 7, "{listed:?}");
    assert!(listed.iter().all(|p| p.starts_with("record [")
        && p.contains(&format!("sealed with key {}", other_vault().key_id()))));
    for secret in secrets_in(EXAMPLE) {
        assert!(!problems.to_string().contains(&secret), "{secret} shown");
    }
}

#[test]
fn a_rotated_secret_keeps_the_one_it_replaces_as_previous_sealed_for_that_field() {
    let records = records(it_tenants());
    let key = Key::Integration {
        tenant: "globex".into(),
        id: "salla:merchant_id=1305146709".into(),
    };
    let keys: Keyring = vault().into();
    let rotated = rotate(
        records.get(&key).unwrap(),
        "globex-salla-rotated-0001",
        &keys,
        None,
    )
    .unwrap();
    let [(_, Some(secret)), (_, Some(previous)), (_, None)] = rotated.secrets()[..] else {
        panic!("both secrets are set: {rotated:?}");
    };
    assert_eq!(
        open(&keys, &key, "secret", secret).unwrap(),
        "globex-salla-rotated-0001"
    );
    assert_eq!(
        open(&keys, &key, "previous_secret", previous).unwrap(),
        "globex-salla-secret"
    );
    // Each is bound to its field: the previous one does not open as the current one.
    assert!(open(&keys, &key, "secret", previous).is_err());
    let tenant = records
        .get(&Key::Tenant {
            tenant: "acme".into(),
        })
        .unwrap();
    assert!(rotate(tenant, "x", &keys, None).is_err());
}

#[test]
fn a_previous_secret_verifies_and_signs_until_its_grace_period_ends_then_only_the_current_one() {
    let mut records = records(EXAMPLE);
    let keys: Keyring = vault().into();
    let shop = Key::Integration {
        tenant: "acme".into(),
        id: "shopify:shop_domain=acme-demo.myshopify.com".into(),
    };
    let crm = Key::Endpoint {
        tenant: "acme".into(),
        id: "crm".into(),
    };
    let until = NOW + 60_000;
    for (key, secret) in [
        (&shop, "acme-shopify-rotated-0001"),
        (&crm, "whsec_YWNtZS1jcm0tcm90YXRlZC1zaWduaW5nLWtleS0x"),
    ] {
        let rotated = rotate(records.get(key).unwrap(), secret, &keys, Some(until)).unwrap();
        records.0.insert(key.clone(), rotated);
    }
    let counts = |records: &Records, now_ms: i64| {
        let registry = records.registry(&keys, now_ms).unwrap();
        let integration = registry
            .integrations()
            .iter()
            .find(|i| i.provider.slug() == "shopify" && &*i.tenant.id == "acme")
            .unwrap();
        let endpoint = registry.endpoint("acme", "crm").unwrap();
        (
            integration.keys.as_ref().unwrap().iter().count(),
            endpoint.secrets.len(),
        )
    };
    assert_eq!(
        counts(&records, NOW),
        (2, 2),
        "both during the grace period"
    );
    assert_eq!(
        counts(&records, until - 1),
        (2, 2),
        "both until its last millisecond"
    );
    assert_eq!(
        counts(&records, until),
        (1, 1),
        "only the current one once it ends"
    );
    assert_eq!(records.next_expiry(NOW), Some(until));
    assert_eq!(records.next_expiry(until), None, "nothing ends after that");
    // Without an end, the previous secret stays until the next rotation.
    let forever = rotate(
        records.get(&shop).unwrap(),
        "acme-shopify-rotated-0002",
        &keys,
        None,
    )
    .unwrap();
    records.0.insert(shop, forever);
    assert_eq!(counts(&records, until + 365 * 86_400_000).0, 2);
}

#[test]
fn an_endpoint_whose_tenant_has_no_record_is_left_out_with_a_warning() {
    let mut records = records(EXAMPLE);
    let acme_crm = Key::Endpoint {
        tenant: "acme".to_string(),
        id: "crm".to_string(),
    };
    let mut orphan = records.0[&acme_crm].clone();
    let Entity::Endpoint(endpoint) = &mut orphan.entity else {
        panic!("{orphan:?}")
    };
    endpoint.tenant = "gone".to_string();
    let gone = Key::Endpoint {
        tenant: "gone".to_string(),
        id: "crm".to_string(),
    };
    endpoint.secret = seal(&vault(), &gone, "secret", "gone-crm-signing-secret-000");
    records.0.insert(gone, orphan);
    let registry = records.registry(&vault().into(), NOW).unwrap();
    assert!(registry.tenant("gone").is_none());
    assert_eq!(registry.endpoints().len(), 1, "acme's own endpoint stays");
    assert!(
        registry.warnings().contains(
            &"record [\"endpoint\",\"gone\",\"crm\"]: left out: its tenant \"gone\" has no record"
                .to_string()
        ),
        "{:?}",
        registry.warnings()
    );
}

#[test]
fn a_file_applied_leaves_the_api_keys_but_those_limited_to_a_tenant_it_removes() {
    let mut current = records(EXAMPLE);
    let api_key = |id: &str, tenant: Option<&str>| {
        let record = Record::new(Entity::ApiKey(topic::ApiKey {
            id: id.to_string(),
            name: None,
            scopes: vec!["read".to_string()],
            tenant: tenant.map(str::to_string),
            sha256: "ab".repeat(32),
            created_at_ms: NOW,
        }));
        (record.key(), record)
    };
    for (key, record) in [
        api_key("key_every", None),
        api_key("key_acme", Some("acme")),
        api_key("key_souq", Some("souq")),
    ] {
        current.0.insert(key, record);
    }
    assert!(
        plan(&current, &records(EXAMPLE), &vault().into())
            .unwrap()
            .is_empty(),
        "the file's own records, and every key left as it is"
    );
    let without_souq = &EXAMPLE[..EXAMPLE.find("[[tenant]]\nid = \"souq\"").unwrap()];
    let deleted: Vec<String> = plan(&current, &records(without_souq), &vault().into())
        .unwrap()
        .messages()
        .filter(|(_, value)| value.is_none())
        .map(|(key, _)| key)
        .collect();
    assert!(
        deleted.contains(&r#"["api_key","key_souq"]"#.to_string()),
        "{deleted:?}"
    );
    assert!(
        deleted.contains(&r#"["tenant","souq"]"#.to_string()),
        "{deleted:?}"
    );
    assert!(
        !deleted
            .iter()
            .any(|key| key.contains("key_every") || key.contains("key_acme")),
        "{deleted:?}"
    );
    // The registry the ingress and the delivery worker serve has no keys in it, and a key
    // limited to a tenant goes with the tenant.
    let registry = current.registry(&vault().into(), NOW).unwrap();
    assert!(registry.warnings().is_empty(), "{:?}", registry.warnings());
    assert!(current.keys_of("souq").contains(&Key::ApiKey {
        id: "key_souq".to_string()
    }));
}

#[test]
fn an_integration_signed_by_its_platform_app_goes_through_the_topic_with_no_secret() {
    const APP_SIGNED: &str = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "acme.myshopify.com"
"#;
    let old =
        Records::from_toml(APP_SIGNED, Path::new("."), &HashMap::new(), &other_vault()).unwrap();
    let read = through_the_topic(&old);
    let key = integration_key("acme", "shopify:shop_domain=acme.myshopify.com");
    let record = read.get(&key).unwrap();
    assert_eq!(
        record.secrets(),
        [
            ("secret", None),
            ("previous_secret", None),
            ("access_token", None)
        ]
    );
    let registry = read.registry(&vault().into(), NOW).unwrap();
    let acme = registry
        .resolve("shopify", None, Some("acme.myshopify.com"))
        .unwrap();
    assert!(acme.keys.is_none());
    // Nothing to seal again, and nothing to rotate: the app's secrets are in the configuration.
    assert!(old.rekey(&vault().into()).unwrap().is_empty());
    let refused = rotate(record, "a-secret-of-its-own-0001", &vault().into(), None);
    assert_eq!(
        refused.unwrap_err(),
        format!("record {key}: has no secret to rotate")
    );
}

#[test]
fn applying_the_file_again_keeps_what_the_platforms_gave_an_integration() {
    let mut current = records(it_tenants());
    let key = integration_key("globex", "salla:merchant_id=1305146709");
    let lifecycle = topic::Installation {
        phase: topic::Phase::Active,
        changed_at: 1_796_000_000,
        config_at: Some(1_796_000_000),
    };
    let token = seal(&vault(), &key, "access_token", "ory_at_the-stores-token");
    let given = integration_mut(&mut current, &key);
    given.access_token = Some(token.clone());
    given.installation = Some(lifecycle);
    // The file says nothing of them: applying it changes nothing.
    let plan = plan(&current, &records(it_tenants()), &vault().into()).unwrap();
    assert!(plan.is_empty(), "{plan}");
    // A change the file makes keeps them too.
    let changed = it_tenants().replace("globex-salla-secret", "globex-salla-secret-rotated");
    let plan = plan_of(&current, &records(&changed));
    assert!(plan.to_string().contains("secret"), "{plan}");
    let applied = after(&current, &plan);
    let kept = match &applied.get(&key).unwrap().entity {
        Entity::Integration(i) => i.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(kept.access_token, Some(token));
    assert_eq!(kept.installation, Some(lifecycle));
}

fn plan_of(current: &Records, desired: &Records) -> Plan {
    plan(current, desired, &vault().into()).unwrap()
}

#[test]
fn applying_a_file_leaves_a_store_connected_through_oauth_while_its_tenant_stays() {
    let mut current = records(it_tenants());
    let key = integration_key("globex", "salla:merchant_id=1305146709");
    let token = seal(&vault(), &key, "access_token", "ory_at_the-stores-token");
    integration_mut(&mut current, &key).access_token = Some(token);
    // A file without that integration: it stays, connected by its merchant.
    let mut without = records(it_tenants());
    without.0.remove(&key);
    assert!(!plan_of(&current, &without).to_string().contains("salla"));
    // A file without its tenant: it goes with it.
    let tenant = Key::Tenant {
        tenant: "globex".to_string(),
    };
    let mut without_tenant = without.clone();
    without_tenant.0.retain(|k, _| k.tenant() != Some("globex"));
    assert!(!without_tenant.0.contains_key(&tenant));
    let plan = plan_of(&current, &without_tenant).to_string();
    assert!(
        plan.contains("delete [\"integration\",\"globex\",\"salla:merchant_id=1305146709\"]"),
        "{plan}"
    );
}
