//! The integrations' status topic, `<prefix>.integration-status.v1`
//! ([`crate::topics::status`]): created compacted with one partition, its records dropped after
//! thirty days, read whole by the admin API. What the records say is the business of
//! [`crate::tenants`]; this module creates the topic (reads go through [`super::history`]).

use super::Config;

/// The settings the topic is created with, besides its one partition: the latest view of each
/// integration per instance is kept, and a view nobody renewed for thirty days is dropped (an
/// instance writes a record per start, and instances come and go).
pub const TOPIC_SETTINGS: &[(&str, &str)] = &[
    ("cleanup.policy", "compact,delete"),
    ("retention.ms", "2592000000"),
];

/// Creates the topic unless it exists: one partition, the configured replication factor, and
/// [`TOPIC_SETTINGS`]. An existing topic is left as it is.
pub async fn ensure_topic(config: &Config) -> Result<(), super::Error> {
    let topic = config.topics().status;
    super::admin::ensure_single_partition(config, &topic, TOPIC_SETTINGS).await
}
