//! cartstream: a stream processor for commerce webhooks.
//!
//! One webhook's path through the crate:
//!
//! - [`ingress`] accepts `POST /api/webhooks/{provider}` (hyper, HTTP/1.1 and h2c), bounds
//!   in-flight work and body size, and reads the body once into `Bytes`;
//! - [`providers`] (pure: headers and bytes in, verdict out) finds the tenant clue, and after
//!   [`tenants`] resolved the integration, verifies the signature with that integration's keys;
//! - [`kafka`] produces the untouched body to `<prefix>.inbound.v1` with the metadata in headers,
//!   and the ingress answers 200 only after the broker's acknowledgement.
//!
//! Downstream, the [`processor`] role consumes the inbound topic as a consumer group, normalizes
//! each delivery with its provider, and hands it to [`state`], which keeps one partition's carts
//! in RocksDB: the cart state machine of SPEC §4.3, durable timers, correlation aliases,
//! de-duplication, and an outbox — each input's effects and its consumed offset in one atomic
//! write batch. The processor publishes the outbox to `<prefix>.events.v1` and
//! `<prefix>.transitions.v1` and removes what Kafka acknowledged.
//!
//! Every record that crosses Kafka is defined once in [`topics`] (pure data: type, encoder,
//! decoder, schema name), shared by the role that writes it and the role that reads it.
//!
//! Around them: [`config`] (layered loading, every problem at once — each a line of
//! [`problems`], a leaf every section can use), [`telemetry`] (logs, and
//! the only place metric names exist), [`admin`] (the operator port), [`health`], [`server`]
//! (the accept loop both ports share), [`clock`] (the injectable wall clock) and [`app`]
//! (wiring and ordered shutdown; nothing else imports it).

pub mod admin;
pub mod app;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod delivery;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod ingress;
pub mod kafka;
pub mod platforms;
pub mod problems;
pub mod processor;
pub mod providers;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tenants;
pub mod topics;
pub mod volume;
