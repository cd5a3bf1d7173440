//! Every record that crosses Kafka, defined once: its Rust type, its encoder and decoder, its
//! schema name, and a test that holds it to `schemas/*.json`. The writer and the reader of a
//! topic share the type here, so a change to a record is a change the compiler follows.
//!
//! - [`inbound`]: the metadata of `<prefix>.inbound.v1` ↔ its Kafka headers (the ingress
//!   writes them, the processor reads them);
//! - [`event`]: a normalized event on `<prefix>.events.v1` (written by the processor);
//! - [`transition`]: a cart transition on `<prefix>.transitions.v1` (written by `state`
//!   through the processor, read by delivery), with its phases;
//! - [`outcome`]: a delivery outcome on `<prefix>.deliveries.v1`;
//! - [`dead_letter`]: a given-up delivery on `<prefix>.deliveries.dlq.v1`, with its reasons.
//!
//! Pure data: serde only — no rdkafka, no I/O — so `state` may use it and still know no broker.
//! The roles (ingress, processor, delivery) import `topics`, never each other. Metric labels
//! come from the enums' `as_str()`.

pub mod inbound;
