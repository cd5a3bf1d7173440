//! `cartstream tenants apply` against a real broker: the tenants topic it creates and writes,
//! read with a plain consumer — one record per tenant, integration and endpoint, no secret in
//! clear, hex or base64 — and what applying a file again, a changed secret and a removed tenant
//! write. Daemons with `tenants.source = "topic"` read it at start and put what is applied
//! later in force while they run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use cartstream::credentials::Vault;
use cartstream::tenants::{Records, Registry};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::support::{
    brokers, fixture, read_topic, schema, shopify_headers, unique_prefix, Http, Record, TestDaemon,
    TENANTS,
};

/// `tenants.sealing_key` of these tests (32 bytes, base64), given through this variable.
const SEALING_KEY: &str = "dGVuYW50cy1zZWFsaW5nLWtleS1mb3ItdGVzdHMtMzI=";
const SEALING_KEY_VARIABLE: &str = "TEST_TENANTS_SEALING_KEY";

/// The tests' registry with an endpoint (and its previous secret) for globex, so that every
/// kind of record is written.
fn registry_file() -> String {
    format!(
        r#"{TENANTS}
  [[tenant.endpoint]]
  id = "crm"
  url = "https://crm.globex.example/hooks"
  secret = "whsec_Z2xvYmV4LWNybS1zaWduaW5nLWtleS0wMDAwMDE="
  previous_secret = "whsec_Z2xvYmV4LWNybS1zaWduaW5nLWtleS1vbGQtMDAwMQ=="
"#
    )
}

/// A configuration naming a topic prefix of its own, and a registry file beside it.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    brokers: String,
    prefix: String,
    topic: String,
}

impl Setup {
    fn new(test: &str) -> Setup {
        let (brokers, prefix) = (brokers(), unique_prefix(test));
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cartstream.toml");
        std::fs::write(
            &config,
            format!(
                "[kafka]\nbrokers = {brokers:?}\ntopic_prefix = {prefix:?}\n[tenants]\nsealing_key = {{ env = \"{SEALING_KEY_VARIABLE}\" }}\n"
            ),
        )
        .unwrap();
        Setup {
            dir,
            config,
            brokers,
            topic: format!("{prefix}.tenants.v1"),
            prefix,
        }
    }

    /// Writes `text` as the registry file `name`.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `cartstream tenants apply FILE ARGS --config CONFIG`, with the sealing key in its
    /// environment when `key` says so.
    fn run(&self, file: &Path, args: &[&str], key: bool) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cartstream"));
        command
            .args(["tenants", "apply"])
            .arg(file)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove(SEALING_KEY_VARIABLE);
        if key {
            command.env(SEALING_KEY_VARIABLE, SEALING_KEY);
        }
        command.output().unwrap()
    }

    /// The standard output of a `tenants apply` that succeeds.
    fn apply(&self, file: &Path, args: &[&str]) -> String {
        let output = self.run(file, args, true);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    fn read(&self) -> Vec<Record> {
        read_topic(&self.brokers, &self.topic)
    }
}

/// A message's key as the JSON array it is.
fn key(record: &Record) -> Vec<String> {
    serde_json::from_slice(record.key.as_deref().expect("every record has a key")).unwrap()
}

/// The registry `records`, read as a consumer of the topic reads them, opened with the key.
fn registry(records: &[Record]) -> Registry {
    let mut read = Records::default();
    for record in records {
        let value = (!record.value.is_empty()).then_some(&record.value[..]);
        read.apply(record.key.as_deref().unwrap(), value).unwrap();
    }
    read.registry(&Vault::from_base64(SEALING_KEY).unwrap().into(), 0)
        .unwrap()
}

/// Each record a registry file makes, by kind and tenant (and an endpoint's id), counted: read
/// from the file itself, not from what the command writes.
fn entities(text: &str) -> BTreeMap<(String, String), usize> {
    let file: toml::Table = toml::from_str(text).unwrap();
    let mut entities: BTreeMap<(String, String), usize> = BTreeMap::new();
    for tenant in file["tenant"].as_array().unwrap() {
        let id = tenant["id"].as_str().unwrap().to_string();
        *entities.entry(("tenant".into(), id.clone())).or_default() += 1;
        for kind in ["integration", "endpoint"] {
            let tables = tenant.get(kind).and_then(|t| t.as_array());
            let count = tables.map_or(0, Vec::len);
            if count > 0 {
                *entities.entry((kind.into(), id.clone())).or_default() += count;
            }
        }
    }
    entities
}

/// Every secret of a registry file (`secret`, `previous_secret`), and the sealing key.
fn secrets(text: &str) -> Vec<String> {
    let file: toml::Table = toml::from_str(text).unwrap();
    let mut secrets = vec![SEALING_KEY.to_string()];
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
    secrets
}

/// Every form `secret` could be written in: itself, hex, and base64 in both alphabets — also
/// inside a longer encoded value, where its bytes start anywhere in a 3-byte group (only the
/// characters that depend on its bytes alone are looked for then). A `whsec_` secret's decoded
/// bytes, and a base64 key's, in the same forms.
fn forms(secret: &str) -> Vec<String> {
    let mut raw = vec![secret.as_bytes().to_vec()];
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    if let Ok(bytes) = STANDARD.decode(encoded) {
        raw.push(bytes);
    }
    let mut forms = vec![secret.to_string()];
    for bytes in raw {
        forms.push(hex::encode(&bytes));
        forms.push(hex::encode_upper(&bytes));
        for (padded, unpadded) in [(&STANDARD, &STANDARD_NO_PAD), (&URL_SAFE, &URL_SAFE_NO_PAD)] {
            forms.push(padded.encode(&bytes));
            for offset in 0..3 {
                let shifted = [&vec![0u8; offset][..], &bytes[..]].concat();
                let text = unpadded.encode(&shifted);
                let start = if offset == 0 { 0 } else { 4 };
                forms.push(text[start..shifted.len() / 3 * 4].to_string());
            }
        }
    }
    forms
}

/// Fails if any secret of `text`, in any of its [`forms`], is in a key or a value of `records`.
fn assert_no_secret(records: &[Record], text: &str) {
    for secret in secrets(text) {
        for form in forms(&secret) {
            for record in records {
                for (what, bytes) in [
                    ("key", record.key.as_deref().unwrap()),
                    ("value", &record.value[..]),
                ] {
                    assert!(
                        !String::from_utf8_lossy(bytes).contains(&form),
                        "a secret in a record's {what}, as {form:?}: {}",
                        String::from_utf8_lossy(bytes)
                    );
                }
            }
        }
    }
}

/// The topic's partitions and its settings, as the cluster describes them.
async fn topic_settings(brokers: &str, topic: &str) -> (usize, BTreeMap<String, String>) {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", brokers);
    let consumer: BaseConsumer = client.create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len();
    let admin: AdminClient<DefaultClientContext> = client.create().unwrap();
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    let settings = [
        "cleanup.policy",
        "min.compaction.lag.ms",
        "delete.retention.ms",
    ]
    .into_iter()
    .map(|name| {
        let value = resource.get(name).and_then(|e| e.value.clone());
        (name.to_string(), value.unwrap_or_default())
    })
    .collect();
    (partitions, settings)
}

#[tokio::test]
async fn applying_a_registry_file_writes_one_sealed_record_per_entity_and_applying_it_again_writes_nothing(
) {
    let setup = Setup::new("tenants-apply");
    let text = registry_file();
    let file = setup.file("tenants.toml", &text);

    let out = setup.apply(&file, &[]);
    assert!(
        out.contains("8 to create, 0 to update, 0 to delete"),
        "{out}"
    );
    assert!(out.contains("applied: 8 records written"), "{out}");

    let (partitions, settings) = topic_settings(&setup.brokers, &setup.topic).await;
    assert_eq!(partitions, 1);
    assert_eq!(settings["cleanup.policy"], "compact");
    assert_eq!(settings["min.compaction.lag.ms"], "3600000");
    assert_eq!(settings["delete.retention.ms"], "604800000");

    let records = setup.read();
    let mut written: BTreeMap<(String, String), usize> = BTreeMap::new();
    let validator = schema("tenants.v1.json");
    for record in &records {
        let key = key(record);
        let value: Value = serde_json::from_slice(&record.value).unwrap();
        assert!(validator.is_valid(&value), "{value}");
        assert_eq!(value["kind"], key[0], "{value}");
        assert_eq!(value["schema"], "cartstream.tenants.v1");
        *written.entry((key[0].clone(), key[1].clone())).or_default() += 1;
    }
    assert_eq!(written, entities(&text));
    let distinct: std::collections::BTreeSet<_> = records.iter().map(key).collect();
    assert_eq!(distinct.len(), records.len(), "a key written twice");
    assert_no_secret(&records, &text);
    let read_back = registry(&records);
    let from_file = Registry::from_toml(&text, Path::new("."), &Default::default()).unwrap();
    assert_eq!(read_back.tenants().len(), from_file.tenants().len());
    assert_eq!(
        read_back.integrations().len(),
        from_file.integrations().len()
    );
    assert_eq!(read_back.endpoints().len(), from_file.endpoints().len());

    let out = setup.apply(&file, &["--dry-run"]);
    assert!(out.contains("no changes"), "{out}");
    assert_eq!(setup.read().len(), records.len(), "a dry run wrote");
    let out = setup.apply(&file, &[]);
    assert!(out.contains("no changes"), "{out}");
    assert!(!out.contains("applied"), "{out}");
    assert_eq!(
        setup.read().len(),
        records.len(),
        "the same file wrote again"
    );
}

#[test]
fn a_changed_secret_is_one_update_and_a_removed_tenant_is_its_tombstones() {
    let setup = Setup::new("tenants-apply-changes");
    let text = registry_file();
    setup.apply(&setup.file("tenants.toml", &text), &[]);
    let before = setup.read().len();

    let rotated = text.replace("globex-salla-secret", "globex-salla-rotated-secret");
    assert_ne!(rotated, text);
    let file = setup.file("rotated.toml", &rotated);
    let out = setup.apply(&file, &["--dry-run"]);
    assert!(
        out.contains("0 to create, 1 to update, 0 to delete"),
        "{out}"
    );
    let update = out.lines().find(|l| l.starts_with("update ")).unwrap();
    assert!(update.contains(r#""integration","globex","salla"#), "{out}");
    assert!(update.ends_with(": secret"), "{out}");
    assert_eq!(setup.read().len(), before, "a dry run wrote");
    let out = setup.apply(&file, &[]);
    assert!(out.contains("applied: 1 records written"), "{out}");
    let records = setup.read();
    assert_eq!(records.len(), before + 1);
    let written = &records[before];
    assert_eq!(&key(written)[..2], ["integration", "globex"]);
    assert!(key(written)[2].starts_with("salla"), "{:?}", key(written));
    assert_no_secret(&records, &rotated);
    assert_eq!(registry(&records).integrations().len(), 5);

    let globex = rotated.find("[[tenant]]\nid = \"globex\"").unwrap();
    let without_globex = &rotated[..globex];
    let out = setup.apply(&setup.file("acme.toml", without_globex), &[]);
    assert!(
        out.contains("0 to create, 0 to update, 5 to delete"),
        "{out}"
    );
    let records = setup.read();
    let tombstones = &records[before + 1..];
    assert_eq!(tombstones.len(), 5);
    for tombstone in tombstones {
        assert!(tombstone.value.is_empty(), "{:?}", key(tombstone));
        assert_eq!(key(tombstone)[1], "globex");
    }
    assert_eq!(
        key(&tombstones[4]),
        ["tenant", "globex"],
        "the tenant goes last"
    );
    let left = registry(&records);
    assert_eq!(left.tenants().len(), 1);
    assert!(left.tenant("globex").is_none());
    assert_eq!(left.integrations().len(), 2);
}

#[test]
fn without_its_sealing_key_the_command_refuses_to_run() {
    let setup = Setup::new("tenants-apply-no-key");
    let output = setup.run(&setup.file("tenants.toml", &registry_file()), &[], false);
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tenants.sealing_key"), "{stderr}");
}

/// A daemon of the deployment `setup` names, its tenants read from the tenants topic.
async fn daemon_on_topic(setup: &Setup, name: &str) -> anyhow::Result<TestDaemon> {
    TestDaemon::builder(name)
        .brokers(&setup.brokers)
        .topic_prefix(&setup.prefix)
        .tenants_from_topic(SEALING_KEY)
        .try_start()
        .await
}

/// The status `daemon` answers a Shopify checkout from `shop` signed with `secret`.
async fn shopify_status(
    http: &Http,
    daemon: &TestDaemon,
    secret: &str,
    shop: &str,
    id: &str,
) -> http::StatusCode {
    let body = fixture("shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json");
    let headers = shopify_headers(secret, shop, &body, id);
    http.post(&daemon.url("/api/webhooks/shopify"), &headers, body)
        .await
        .status
}

/// Asks `daemon` every 50 ms until it answers `want` (after `at most` of trying, a failure);
/// how long that took.
async fn until_answered(
    http: &Http,
    daemon: &TestDaemon,
    (secret, shop): (&str, &str),
    want: http::StatusCode,
    at_most: std::time::Duration,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    for attempt in 0.. {
        let id = format!("until-{}-{attempt}", want.as_u16());
        let status = shopify_status(http, daemon, secret, shop, &id).await;
        if status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < at_most,
            "{shop} signed with {secret:?}: still {status} after {at_most:?}, not {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_applied_to_the_topic_is_in_force_on_every_running_daemon_without_a_restart() {
    use http::StatusCode;
    let setup = Setup::new("tenants-live");
    let text = registry_file();
    setup.apply(&setup.file("tenants.toml", &text), &[]);
    let daemons = [
        daemon_on_topic(&setup, "tenants-live-a").await.unwrap(),
        daemon_on_topic(&setup, "tenants-live-b").await.unwrap(),
    ];
    let http = Http::http1();
    let (acme, globex) = ("acme.myshopify.com", "globex.myshopify.com");
    for (n, daemon) in daemons.iter().enumerate() {
        for (secret, shop) in [
            ("acme-shopify-secret", acme),
            ("globex-shopify-secret", globex),
        ] {
            let status = shopify_status(&http, daemon, secret, shop, &format!("before-{n}")).await;
            assert_eq!(status, StatusCode::OK, "{shop} on daemon {n}");
        }
    }

    // Acme's secret rotated, globex gone: one apply, read by both daemons.
    let rotated = "acme-shopify-rotated-secret-0001";
    let changed = text.replace("acme-shopify-secret", rotated);
    let changed = &changed[..changed.find("[[tenant]]\nid = \"globex\"").unwrap()];
    let out = setup.apply(&setup.file("changed.toml", changed), &[]);
    assert!(
        out.contains("0 to create, 1 to update, 5 to delete"),
        "{out}"
    );
    let at_most = std::time::Duration::from_secs(15);
    for (n, daemon) in daemons.iter().enumerate() {
        let took = until_answered(&http, daemon, (rotated, acme), StatusCode::OK, at_most).await;
        let gone = until_answered(
            &http,
            daemon,
            ("globex-shopify-secret", globex),
            StatusCode::UNAUTHORIZED,
            at_most,
        )
        .await;
        println!("daemon {n}: the rotated secret accepted {took:?} and globex refused {gone:?} after the apply");
        // Once in force, the old secret no longer verifies and the new one stays accepted.
        let old = shopify_status(
            &http,
            daemon,
            "acme-shopify-secret",
            acme,
            &format!("old-{n}"),
        )
        .await;
        assert_eq!(
            old,
            StatusCode::UNAUTHORIZED,
            "the replaced secret on daemon {n}"
        );
        let new = shopify_status(&http, daemon, rotated, acme, &format!("after-{n}")).await;
        assert_eq!(new, StatusCode::OK, "the new secret on daemon {n}");
    }
    let inbound = read_topic(&setup.brokers, &format!("{}.inbound.v1", setup.prefix));
    let tenants: BTreeMap<String, usize> = inbound.iter().fold(BTreeMap::new(), |mut n, r| {
        *n.entry(r.headers["cartstream-tenant"].clone()).or_default() += 1;
        n
    });
    assert!(
        tenants["acme"] >= 4 && tenants["globex"] == 2,
        "{tenants:?}"
    );
    for daemon in daemons {
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_refuses_to_start_while_the_topic_holds_a_record_that_is_not_a_registry_record() {
    let setup = Setup::new("tenants-unreadable");
    setup.apply(&setup.file("tenants.toml", &registry_file()), &[]);
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &setup.brokers)
        .create()
        .unwrap();
    let send = |value: Option<&str>| {
        let mut record = rdkafka::producer::BaseRecord::<str, str>::to(&setup.topic)
            .key(r#"["tenant","initech"]"#);
        if let Some(value) = value {
            record = record.payload(value);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
        rdkafka::producer::Producer::flush(&producer, std::time::Duration::from_secs(10)).unwrap();
    };
    send(Some("{\"not\": \"a registry record\"}"));
    let refused = daemon_on_topic(&setup, "tenants-unreadable-a").await.err();
    let why = format!("{:#}", refused.expect("the daemon refuses to start"));
    assert!(
        why.contains("not a registry record") && why.contains("initech"),
        "{why}"
    );

    // A tombstone for the key: the topic holds only registry records again.
    send(None);
    let daemon = daemon_on_topic(&setup, "tenants-unreadable-b")
        .await
        .unwrap();
    let http = Http::http1();
    let status = shopify_status(
        &http,
        &daemon,
        "acme-shopify-secret",
        "acme.myshopify.com",
        "ok",
    )
    .await;
    assert_eq!(status, http::StatusCode::OK);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_before_its_tenants_topic_exists_follows_it_once_created() {
    let setup = Setup::new("tenants-later");
    // The deployment's other topics, made by a daemon with its tenants from a file.
    TestDaemon::builder("tenants-later-topics")
        .brokers(&setup.brokers)
        .topic_prefix(&setup.prefix)
        .start()
        .await
        .stop()
        .await;
    let daemon = TestDaemon::builder("tenants-later")
        .brokers(&setup.brokers)
        .topic_prefix(&setup.prefix)
        .tenants_from_topic(SEALING_KEY)
        .config(|c| c.kafka.create_topics = false)
        .start()
        .await;
    let http = Http::http1();
    let acme = ("acme-shopify-secret", "acme.myshopify.com");
    let unknown = shopify_status(&http, &daemon, acme.0, acme.1, "before").await;
    assert_eq!(unknown, http::StatusCode::UNAUTHORIZED);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &setup.brokers)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(&setup.topic), std::time::Duration::from_secs(10))
        .unwrap();
    assert!(
        metadata.topics()[0].error().is_some(),
        "the daemon did not create {}",
        setup.topic
    );
    setup.apply(&setup.file("tenants.toml", &registry_file()), &[]);
    let at_most = std::time::Duration::from_secs(15);
    let took = until_answered(&http, &daemon, acme, http::StatusCode::OK, at_most).await;
    println!("the topic created and written; acme accepted after {took:?}");
    daemon.stop().await;
}

/// `cartstream tenants ARGS --config CONFIG`, with the first sealing key in its environment.
fn tenants_command(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cartstream"))
        .arg("tenants")
        .args(args)
        .arg("--config")
        .arg(config)
        .env(SEALING_KEY_VARIABLE, SEALING_KEY)
        .output()
        .unwrap()
}

/// The key ids the latest record of each key seals its secrets under.
fn sealing_key_ids(records: &[Record]) -> std::collections::BTreeSet<String> {
    let mut latest: BTreeMap<Vec<u8>, &[u8]> = BTreeMap::new();
    for record in records {
        latest.insert(record.key.clone().unwrap(), &record.value);
    }
    let mut ids = std::collections::BTreeSet::new();
    for value in latest.values().filter(|v| !v.is_empty()) {
        let value: Value = serde_json::from_slice(value).unwrap();
        for field in ["secret", "previous_secret"] {
            if let Some(id) = value[field]["key_id"].as_str() {
                ids.insert(id.to_string());
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_seals_the_topic_under_a_new_key_while_daemons_with_both_keys_serve() {
    use http::StatusCode;
    const NEW_KEY: &str = "bmV3LXRlbmFudHMtc2VhbGluZy1rZXktZm9yLXRlc3Q=";
    let setup = Setup::new("tenants-rekey");
    setup.apply(&setup.file("tenants.toml", &registry_file()), &[]);
    let (old_id, new_id) = (
        Vault::from_base64(SEALING_KEY)
            .unwrap()
            .key_id()
            .to_string(),
        Vault::from_base64(NEW_KEY).unwrap().key_id().to_string(),
    );
    assert_eq!(sealing_key_ids(&setup.read()), [old_id.clone()].into());

    // Every instance gets the new key, keeping the old one to open what is sealed under it.
    let both = setup.dir.path().join("both-keys.toml");
    std::fs::write(
        &both,
        format!(
            "[kafka]\nbrokers = {:?}\ntopic_prefix = {:?}\n[tenants]\nsealing_key = {NEW_KEY:?}\nprevious_sealing_keys = [{{ env = \"{SEALING_KEY_VARIABLE}\" }}]\n",
            setup.brokers, setup.prefix
        ),
    )
    .unwrap();
    let daemon = TestDaemon::builder("tenants-rekey-both")
        .brokers(&setup.brokers)
        .topic_prefix(&setup.prefix)
        .tenants_from_topic(NEW_KEY)
        .config(|c| {
            c.tenants.previous_sealing_keys =
                vec![cartstream::kafka::Property::Text(SEALING_KEY.to_string())]
        })
        .start()
        .await;
    let http = Http::http1();
    let acme = ("acme-shopify-secret", "acme.myshopify.com");
    assert_eq!(
        shopify_status(&http, &daemon, acme.0, acme.1, "both-1").await,
        StatusCode::OK
    );

    let before = setup.read().len();
    let dry = tenants_command(&both, &["rekey", "--dry-run"]);
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success() && out.contains("0 to create, 6 to update, 0 to delete"),
        "{dry:?}"
    );
    assert!(
        out.contains(&format!("secret (sealed under {old_id}: sealed again)")),
        "{out}"
    );
    assert_eq!(setup.read().len(), before, "a dry run wrote");
    let run = tenants_command(&both, &["rekey"]);
    assert!(run.status.success(), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("applied: 6 records written"),
        "{run:?}"
    );
    let records = setup.read();
    assert_eq!(sealing_key_ids(&records), [new_id.clone()].into());
    assert_no_secret(&records, &registry_file());
    let again = tenants_command(&both, &["rekey"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("no changes"),
        "{again:?}"
    );

    // The daemon with both keys follows what is sealed under the new one: a rotated secret.
    let rotated = registry_file().replace(acme.0, "acme-shopify-rotated-after-rekey");
    let file = setup.file("rotated.toml", &rotated);
    let applied = tenants_command(&both, &["apply", file.to_str().unwrap()]);
    assert!(applied.status.success(), "{applied:?}");
    let in_force = std::time::Duration::from_secs(15);
    let new_secret = ("acme-shopify-rotated-after-rekey", acme.1);
    until_answered(&http, &daemon, new_secret, StatusCode::OK, in_force).await;
    daemon.stop().await;

    // The old key alone no longer opens the topic; the new key alone does.
    let refused = daemon_on_topic(&setup, "tenants-rekey-old").await.err();
    let why = format!("{:#}", refused.expect("the old key alone opens nothing"));
    assert!(why.contains(&format!("sealed with key {new_id}")), "{why}");
    let new_only = TestDaemon::builder("tenants-rekey-new")
        .brokers(&setup.brokers)
        .topic_prefix(&setup.prefix)
        .tenants_from_topic(NEW_KEY)
        .start()
        .await;
    assert_eq!(
        shopify_status(&http, &new_only, new_secret.0, acme.1, "new-1").await,
        StatusCode::OK
    );
    new_only.stop().await;
}
