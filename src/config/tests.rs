use std::collections::HashMap;
use std::io::Write;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn documented_defaults_equal_the_code_defaults() {
    let loaded = Config::load(None, &HashMap::new()).unwrap();
    assert_eq!(loaded, Config::default());
}

#[test]
fn file_then_environment_override_the_defaults() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "[ingress]\nmax_body_bytes = 2048\nack_timeout = \"2s\"\n[kafka]\nbrokers = \"a:1\""
    )
    .unwrap();
    let config = Config::load(
        Some(file.path()),
        &env(&[
            ("CARTSTREAM__KAFKA__BROKERS", "b:2,c:3"),
            ("CARTSTREAM__INGRESS__MAINTENANCE", "true"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(config.ingress.max_body_bytes, 2048);
    assert_eq!(
        config.ingress.ack_timeout,
        std::time::Duration::from_secs(2)
    );
    assert_eq!(config.kafka.brokers, "b:2,c:3");
    assert!(config.ingress.maintenance);
    assert_eq!(config.admin, admin::Config::default());
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        r#"
[ingress]
max_body_bytes = "lots"
ack_timeout = "soon"
[kafka]
partitions = 0
topic_prefix = "bad prefix"
[kafka.producer]
acks = "1"
[telemetry]
log_format = "xml"
[nonsense]
x = 1
"#
    )
    .unwrap();
    let problems = Config::load(
        Some(file.path()),
        &env(&[("CARTSTREAM__ADMIN__LISTEN", "nowhere")]),
    )
    .unwrap_err();
    let text = problems.to_string();
    for expected in [
        "max_body_bytes",
        "ack_timeout",
        "kafka.partitions",
        "kafka.topic_prefix",
        "\"acks\": set by the daemon",
        "log_format",
        "unknown section `nonsense`",
        "listen",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn a_missing_file_is_one_clear_problem() {
    let problems = Config::load(
        Some(std::path::Path::new("/nonexistent/cartstream.toml")),
        &HashMap::new(),
    )
    .unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(problems.to_string().contains("not found"));
}

#[test]
fn kafka_client_secrets_come_from_the_environment_and_a_file_beside_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), "s3cret\n").unwrap();
    let path = dir.path().join("cartstream.toml");
    std::fs::write(
        &path,
        r#"
[kafka.client]
"security.protocol" = "SASL_SSL"
"sasl.username" = { env = "KAFKA_USER" }
"sasl.password" = { file = "password" }
"#,
    )
    .unwrap();
    let config = Config::load(Some(&path), &env(&[("KAFKA_USER", "cartstream")])).unwrap();
    let text = |key: &str| match &config.kafka.client[key] {
        kafka::Property::Text(text) => text.clone(),
        other => panic!("{key} not resolved: {other:?}"),
    };
    assert_eq!(text("security.protocol"), "SASL_SSL");
    assert_eq!(text("sasl.username"), "cartstream");
    assert_eq!(text("sasl.password"), "s3cret");
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "Debug masks the values"
    );
}

#[test]
fn kafka_client_problems_name_the_key() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        r#"
[kafka.client]
"sasl.password" = {{ env = "NOT_SET" }}
"ssl.key.password" = {{ file = "missing-file" }}
"group.id" = "mine"
"#
    )
    .unwrap();
    let problems = Config::load(Some(file.path()), &HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        problems
            .contains("kafka.client.\"sasl.password\": environment variable NOT_SET is not set"),
        "{problems}"
    );
    assert!(
        problems.contains("kafka.client.\"ssl.key.password\": cannot read"),
        "{problems}"
    );
    assert!(
        problems.contains("kafka.client.\"group.id\": not a connection property"),
        "{problems}"
    );
}

#[test]
fn relative_paths_in_the_file_are_relative_to_its_folder_and_others_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cartstream.toml");
    std::fs::write(
        &file,
        "[tenants]\nfile = \"tenants.toml\"\n[processor]\nstate_dir = \"../state/processor\"\n[delivery]\nstate_dir = \"/var/lib/cartstream/delivery\"\n",
    )
    .unwrap();
    let config = Config::load(Some(&file), &HashMap::new()).unwrap();
    assert_eq!(config.tenants.file, dir.path().join("tenants.toml"));
    assert_eq!(
        config.processor.state_dir,
        dir.path().join("../state/processor")
    );
    assert_eq!(
        config.delivery.state_dir,
        std::path::Path::new("/var/lib/cartstream/delivery")
    );

    // A value from the environment or the defaults is taken as it is.
    let config = Config::load(
        Some(&file),
        &env(&[("CARTSTREAM__TENANTS__FILE", "elsewhere/tenants.toml")]),
    )
    .unwrap();
    assert_eq!(
        config.tenants.file,
        std::path::Path::new("elsewhere/tenants.toml")
    );
    assert_eq!(
        Config::load(None, &HashMap::new()).unwrap().tenants.file,
        std::path::Path::new("config/tenants.example.toml")
    );
}

#[test]
fn an_escape_after_a_non_ascii_character_is_a_problem_not_a_panic() {
    // Found by the fuzz target `config`: figment 0.10 panicked reading this value.
    let problems =
        Config::load(None, &env(&[("CARTSTREAM__KAFKA__BROKERS", r#"["é\\n"]"#)])).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("CARTSTREAM__KAFKA__BROKERS: a backslash escape")),
        "{:?}",
        problems.iter().collect::<Vec<_>>()
    );
    // Without the escape, the same characters are read as they always were.
    let loaded = Config::load(None, &env(&[("CARTSTREAM__KAFKA__BROKERS", "é:9092")])).unwrap();
    assert_eq!(loaded.kafka.brokers, "é:9092");
}

#[test]
fn a_syntax_error_names_the_file_line_and_column_without_showing_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cartstream.toml");
    std::fs::write(
        &path,
        "[kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"hunter2-kafka-password\" is-the-password\n",
    )
    .unwrap();
    let problems = Config::load(Some(&path), &HashMap::new()).unwrap_err();
    let text = problems.to_string();
    let expected = format!(
        "config file {}: line 3, column 44: expected newline, `#`",
        path.display()
    );
    assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    assert!(!text.contains("hunter2"), "the line is shown in:\n{text}");
}
