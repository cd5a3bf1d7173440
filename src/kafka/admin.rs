//! Topic creation at start-up (`kafka.create_topics`).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::BaseConsumer;
use rdkafka::types::RDKafkaErrorCode;

use super::{Config, Connection, Error};

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates every topic in `topics` that does not exist yet, with the configured partitions
/// and replication factor, and room for records of `max_message_bytes`
/// ([`super::max_message_bytes`]; a broker's default is about 1 MiB). Existing topics
/// are left as they are. Those in `compacted` keep the latest record per key.
pub async fn ensure_topics(
    config: &Config,
    topics: &[&str],
    compacted: &[&str],
    max_message_bytes: usize,
) -> Result<(), Error> {
    let max_message_bytes = max_message_bytes.to_string();
    let new_topics = new_topics(config, topics, compacted, &max_message_bytes);
    create(config, &new_topics).await
}

/// Creates `topic` unless it exists, with one partition (so that its records are read in the
/// order they were written), the configured replication factor and `settings`.
pub(super) async fn ensure_single_partition(
    config: &Config,
    topic: &str,
    settings: &[(&str, &str)],
) -> Result<(), Error> {
    let new_topic = settings.iter().fold(
        NewTopic::new(topic, 1, TopicReplication::Fixed(config.replication_factor)),
        |new_topic, (key, value)| new_topic.set(key, value),
    );
    create(config, &[new_topic]).await
}

/// Creates each of `new_topics` that does not exist yet; an existing one is left as it is.
pub(super) async fn create(config: &Config, new_topics: &[NewTopic<'_>]) -> Result<(), Error> {
    let connection = Connection::default();
    let admin: AdminClient<Connection> = config
        .client_config()
        .create_with_context(connection.clone())
        .map_err(Error::Client)?;
    let options = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));
    // A cluster that refuses the credentials never answers: say so as soon as librdkafka
    // reports it, not after the timeout. The admin client leaves its own error events unread;
    // a plain client of the same connection, polled here, reports the refusal.
    let probe: BaseConsumer<Connection> = config
        .client_config()
        .create_with_context(connection.clone())
        .map_err(Error::Client)?;
    let refused = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Serves the probe's events; a refusal among them reaches `connection`.
            let _ = probe.poll(Duration::ZERO);
            if let Some(refusal) = connection.refused() {
                return refusal;
            }
        }
    };
    let results = tokio::select! {
        results = tokio::time::timeout(ADMIN_TIMEOUT, admin.create_topics(new_topics, &options)) => results
            .map_err(|_| Error::Timeout(ADMIN_TIMEOUT))?
            .map_err(Error::Client)?,
        refusal = refused => return Err(Error::Refused(refusal)),
    };
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(Error::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

/// What to create: every topic with the configured partitions and replication factor, room
/// for `max_message_bytes`, and those in `compacted` compacted.
fn new_topics<'a>(
    config: &Config,
    topics: &[&'a str],
    compacted: &[&str],
    max_message_bytes: &'a str,
) -> Vec<NewTopic<'a>> {
    topics
        .iter()
        .map(|name| {
            let topic = NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
            .set("max.message.bytes", max_message_bytes);
            match compacted.contains(name) {
                true => topic.set("cleanup.policy", "compact"),
                false => topic,
            }
        })
        .collect()
}
