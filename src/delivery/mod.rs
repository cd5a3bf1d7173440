//! Outbound delivery (SPEC §6): a consumer group on `<prefix>.transitions.v1` that turns each
//! cart transition into one signed webhook per subscribed endpoint of its tenant, and never
//! loses one — every (transition, endpoint) pair ends with a recorded outcome on
//! `<prefix>.deliveries.v1` (and, when it gives up, on `<prefix>.deliveries.dlq.v1`).
//!
//! - [`signature`]: the two signature schemes, and helpers for receivers;
//! - [`client`]: the HTTP client — no redirects, a timeout, a capped response body, and
//!   destinations on private addresses refused after resolution unless allow-listed;
//! - [`store`]: pending deliveries in RocksDB (the retry schedule survives restarts and
//!   crashes), the outcome outbox, disabled endpoints;
//! - [`breaker`]: each endpoint's circuit breaker;
//! - [`policy`]: the delivery rules, pure — what an answer or an error leads to (delivered,
//!   retried when, dead-lettered why, endpoint disabled, superseded, expired), given `now`;
//! - [`worker`]: the loop — consume, store, attempt when due, perform the policy's decision, publish
//!   (with the loop's side of operator actions and the outbox publisher in files of their own);
//! - [`records`]: the webhook body of a transition, and the outcome and dead-letter records
//!   the worker writes (their types are `topics::outcome` and `topics::dead_letter`);
//! - [`handle`]: operator actions (list, retry, redrive, enable, test) from the admin port;
//! - [`redrive`]: dead letters read back from the dead-letter topic to be delivered again;
//! - [`replay`]: the transitions of a time range read back and sent to one endpoint again;
//! - [`remote`]: operator actions asked through any instance, carried to the worker they
//!   concern over `<prefix>.delivery-commands.v1`.

mod breaker;
pub mod client;
mod handle;
mod policy;
mod records;
pub mod redrive;
mod remote;
pub mod replay;
mod signature;
pub mod store;
mod test_send;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::problems::Problems;

pub use handle::{Error as HandleError, Handle, Listed, Tested};
pub use redrive::{Report as RedriveReport, Request as RedriveRequest};
pub use remote::{ask, Asked, Relay};
pub use signature::{sign, verify_signature, verify_standard, Secret, Signature};
pub use test_send::Tester;
pub use worker::{Delivery, Error};

/// Schema name of a record on `<prefix>.deliveries.dlq.v1`.
pub use crate::topics::dead_letter::SCHEMA as DEAD_LETTER_SCHEMA;
/// Schema name of an outcome record on `<prefix>.deliveries.v1`.
pub use crate::topics::outcome::SCHEMA as OUTCOME_SCHEMA;

/// The `[delivery]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The RocksDB database of pending deliveries lives in this folder.
    pub state_dir: PathBuf,
    pub group_id: String,
    /// `{prefix}-Signature` and `{prefix}-Event`.
    pub header_prefix: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Delay before each attempt: the first is usually `0s` (at once).
    #[serde(with = "schedule")]
    pub retry_schedule: Vec<Duration>,
    /// Each delay is moved by up to this fraction, either way, so retries spread out.
    pub jitter: f64,
    /// The longest `Retry-After` (on 429 and 503) that is honoured.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// How old (since the transition happened) a delivery may get before it is `expired`.
    pub deadlines: Deadlines,
    pub max_in_flight_requests: usize,
    pub max_in_flight_per_endpoint: usize,
    /// Consecutive failed attempts that open an endpoint's circuit.
    pub circuit_failures: u32,
    /// How long an open circuit stays open before one probe request is let through.
    #[serde(with = "humantime_serde")]
    pub circuit_open_for: Duration,
    pub max_response_body_bytes: usize,
    /// Networks (CIDR) that may be delivered to although private, loopback or link-local,
    /// e.g. `["127.0.0.0/8"]` for a receiver on the same machine.
    pub allow_private_networks: Vec<String>,
    /// Whether endpoints may be plain `http://` URLs for every tenant (a development setting;
    /// a tenant may allow it for its own endpoints).
    pub allow_plain_http: bool,
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// librdkafka consumer properties passed through unchanged.
    pub consumer: BTreeMap<String, String>,
}

/// `[delivery.deadlines]`: the age after which an undelivered transition is `expired`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadlines {
    #[serde(with = "humantime_serde")]
    pub abandoned_candidate: Duration,
    #[serde(with = "humantime_serde")]
    pub order_completed: Duration,
}

const HOUR: u64 = 3600;

impl Default for Config {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        Config {
            state_dir: PathBuf::from("data/delivery"),
            group_id: "cartstream-delivery".to_string(),
            header_prefix: "X-Cartstream".to_string(),
            timeout: Duration::from_secs(10),
            retry_schedule: vec![
                Duration::ZERO,
                minutes(1),
                minutes(5),
                minutes(15),
                minutes(60),
                minutes(6 * 60),
                minutes(24 * 60),
            ],
            jitter: 0.1,
            max_retry_after: Duration::from_secs(HOUR),
            deadlines: Deadlines {
                abandoned_candidate: Duration::from_secs(24 * HOUR),
                order_completed: Duration::from_secs(72 * HOUR),
            },
            max_in_flight_requests: 256,
            max_in_flight_per_endpoint: 8,
            circuit_failures: 5,
            circuit_open_for: Duration::from_secs(30),
            max_response_body_bytes: 64 * 1024,
            allow_private_networks: Vec::new(),
            allow_plain_http: false,
            tick: Duration::from_millis(250),
            publish_timeout: Duration::from_secs(10),
            consumer: BTreeMap::new(),
        }
    }
}

/// Most attempts a schedule may have.
pub const MAX_ATTEMPTS: usize = 20;

impl Config {
    pub fn validate(&self, problems: &mut Problems) {
        if self.group_id.trim().is_empty() {
            problems.push("delivery.group_id: must not be empty");
        }
        if self.state_dir.as_os_str().is_empty() {
            problems.push("delivery.state_dir: must name a folder");
        }
        let prefix_ok = !self.header_prefix.is_empty()
            && http::HeaderName::try_from(format!("{}-Signature", self.header_prefix)).is_ok();
        if !prefix_ok {
            problems.push("delivery.header_prefix: must be a valid header name, e.g. X-Cartstream");
        }
        if self.retry_schedule.is_empty() || self.retry_schedule.len() > MAX_ATTEMPTS {
            problems.push(format!(
                "delivery.retry_schedule: must list 1 to {MAX_ATTEMPTS} delays"
            ));
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            problems.push("delivery.jitter: must be between 0 and 0.5");
        }
        for (key, value) in [
            ("timeout", self.timeout),
            ("tick", self.tick),
            ("publish_timeout", self.publish_timeout),
            ("circuit_open_for", self.circuit_open_for),
            (
                "deadlines.abandoned_candidate",
                self.deadlines.abandoned_candidate,
            ),
            ("deadlines.order_completed", self.deadlines.order_completed),
        ] {
            if value.is_zero() {
                problems.push(format!("delivery.{key}: must be longer than 0s"));
            }
        }
        for (key, value) in [
            ("max_in_flight_requests", self.max_in_flight_requests),
            (
                "max_in_flight_per_endpoint",
                self.max_in_flight_per_endpoint,
            ),
            ("circuit_failures", self.circuit_failures as usize),
        ] {
            if value == 0 {
                problems.push(format!("delivery.{key}: must be at least 1"));
            }
        }
        for network in &self.allow_private_networks {
            if network.parse::<IpNet>().is_err() {
                problems.push(format!(
                    "delivery.allow_private_networks: {network:?} is not a network such as 127.0.0.0/8"
                ));
            }
        }
        crate::kafka::group::refuse_forced(
            "delivery.consumer",
            &self.consumer,
            &[],
            "the delivery worker",
            problems,
        );
    }

    /// Endpoints that would send transitions — customers' names, e-mails, phones — over plain
    /// HTTP without an explicit allowance: `delivery.allow_plain_http`, or the tenant's
    /// `allow_plain_http`.
    pub fn check_endpoints(&self, registry: &crate::tenants::Registry, problems: &mut Problems) {
        if self.allow_plain_http {
            return;
        }
        for endpoint in registry.endpoints() {
            if endpoint.url.scheme_str() == Some("http") && !endpoint.tenant.allow_plain_http {
                problems.push(format!(
                    "tenant {} endpoint {}: plain http:// sends customer data in clear; use https://, or set allow_plain_http = true on the tenant (or delivery.allow_plain_http for development)",
                    endpoint.tenant.id, endpoint.id
                ));
            }
        }
    }

    /// The allow-listed networks; invalid entries were refused by [`Config::validate`].
    pub fn allowed_networks(&self) -> Vec<IpNet> {
        self.allow_private_networks
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    }
}

/// A list of humantime durations (`["0s", "1m"]`).
mod schedule {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(delays: &[Duration], serializer: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = delays
            .iter()
            .map(|d| humantime::format_duration(*d).to_string())
            .collect();
        text.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| humantime::parse_duration(text).map_err(serde::de::Error::custom))
            .collect()
    }
}
