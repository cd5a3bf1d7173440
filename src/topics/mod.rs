//! Every record that crosses Kafka, defined once: its Rust type, its encoder and decoder, its
//! schema name, and a test that holds it to `schemas/*.json`. The writer and the reader of a
//! topic share the type here, so a change to a record is a change the compiler follows.
//!
//! - [`inbound`]: the metadata of `<prefix>.inbound.v1` ↔ its Kafka headers (the ingress
//!   writes them, the processor reads them);
//! - [`event`]: a normalized event on `<prefix>.events.v1` (written by the processor), and
//!   the [`Event`](event::Event) shape every provider maps its payload into;
//! - [`transition`]: a cart transition on `<prefix>.transitions.v1` (written by `state`
//!   through the processor, read by delivery), with its phases;
//! - [`outcome`]: a delivery outcome on `<prefix>.deliveries.v1`;
//! - [`dead_letter`]: a given-up delivery on `<prefix>.deliveries.dlq.v1`, with its reasons;
//! - [`credentials`]: a secret a platform sent in a payload, sealed, on `<prefix>.credentials.v1`;
//! - [`command`]: an operator action on the delivery workers, a worker's claim on it or its
//!   answer, on `<prefix>.delivery-commands.v1`;
//! - [`status`]: what one instance's ingress saw of one integration, on the compacted
//!   `<prefix>.integration-status.v1`;
//! - [`registry`]: a tenant, integration or endpoint, its secrets sealed, on the compacted
//!   `<prefix>.tenants.v1`.
//!
//! Pure data: serde only — no rdkafka, no I/O — so `state` may use it and still know no broker.
//! The roles (ingress, processor, delivery) import `topics`, never each other. Metric labels
//! come from the enums' `as_str()`.

pub mod command;
pub mod credentials;
pub mod dead_letter;
pub mod event;
pub mod inbound;
pub mod outcome;
pub mod registry;
pub mod status;
pub mod transition;

/// A validator for `schemas/{name}`, with every schema of the folder available to its `$ref`s.
#[cfg(test)]
fn validator(name: &str) -> jsonschema::Validator {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let read = |path: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let mut registry = jsonschema::Registry::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        registry = registry
            .add(
                format!("https://cartstream.dev/schemas/{file}"),
                read(&path),
            )
            .unwrap();
    }
    jsonschema::options()
        .with_registry(&registry.prepare().unwrap())
        .build(&read(&dir.join(name)))
        .unwrap()
}

/// Panics unless `bytes` is JSON that `schemas/{name}` accepts.
#[cfg(test)]
fn assert_matches_schema(name: &str, bytes: &[u8]) {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    let validator = validator(name);
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{value}: {errors:?}");
}
