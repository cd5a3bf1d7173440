//! The consumer settings of a role that keeps state of its own and consumes its topic in a
//! group (the processor, the delivery worker): one builder for what both rely on.

use std::collections::BTreeMap;
use std::path::Path;

use rdkafka::config::ClientConfig;

use super::{consumer_config, static_instance_id, Config, SESSION_TIMEOUT_MS};
use crate::problems::Problems;

/// What every member sets itself, whatever the pass-through says: the brokers, the group id
/// and the commit settings.
const FORCED: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
];

/// A role's membership of its consumer group.
pub struct Member<'a> {
    /// `processor` or `delivery`: names the client and, with the state folder, the static
    /// member.
    pub role: &'static str,
    pub group_id: &'a str,
    pub state_dir: &'a Path,
    /// The topic it consumes (with the state folder, names the static member).
    pub topic: &'a str,
    /// The operator's pass-through properties (`<role>.consumer`).
    pub properties: &'a BTreeMap<String, String>,
    /// Whether librdkafka commits stored offsets in the background. Either way an offset is
    /// stored only by the role, once the record's effects are in its store.
    pub auto_commit: bool,
}

impl Member<'_> {
    /// The consumer's client configuration ([`consumer_config`]): shared defaults — the client
    /// id, reading from the earliest offset without a committed one, statistics every 5 s, static
    /// membership and its session timeout — then the role's `defaults`; the pass-through; then
    /// the group id, the commit settings and the role's `forced` settings, which the
    /// pass-through cannot change.
    pub fn client_config(
        &self,
        kafka: &Config,
        defaults: &[(&str, &str)],
        forced: &[(&str, &str)],
    ) -> ClientConfig {
        let client_id = format!("cartstream-{}", self.role);
        let instance_id = static_instance_id(self.role, self.state_dir, self.topic);
        let mut all_defaults = vec![
            ("client.id", client_id.as_str()),
            ("auto.offset.reset", "earliest"),
            ("statistics.interval.ms", "5000"),
            ("group.instance.id", instance_id.as_str()),
            ("session.timeout.ms", SESSION_TIMEOUT_MS),
        ];
        all_defaults.extend_from_slice(defaults);
        let mut all_forced = vec![
            ("group.id", self.group_id),
            (
                "enable.auto.commit",
                if self.auto_commit { "true" } else { "false" },
            ),
            ("enable.auto.offset.store", "false"),
        ];
        all_forced.extend_from_slice(forced);
        consumer_config(kafka, &all_defaults, self.properties, &all_forced)
    }
}

/// Reports every property of the pass-through table `section` that a member sets itself —
/// those of every member, and the role's `forced` settings as it gives them to
/// [`Member::client_config`] — and so cannot be overridden there.
pub fn refuse_forced(
    section: &str,
    properties: &BTreeMap<String, String>,
    forced: &[(&str, &str)],
    setter: &str,
    problems: &mut Problems,
) {
    let names: Vec<&str> = FORCED
        .iter()
        .copied()
        .chain(forced.iter().map(|(name, _)| *name))
        .collect();
    super::refuse_forced(section, properties, &names, setter, problems);
}

/// A member of a consumer group, as the group coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Owner {
    pub member_id: String,
    pub client_id: String,
    /// Where it connects from (`/10.0.3.7`).
    pub host: String,
}

/// The member of `group` that `partition` of `topic` is assigned to now, if any (a classic
/// consumer group whose members use the consumer protocol, as the roles do).
pub fn owner(
    config: &Config,
    group: &str,
    topic: &str,
    partition: i32,
    timeout: std::time::Duration,
) -> Result<Option<Owner>, rdkafka::error::KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = config.client_config().create()?;
    let groups = consumer.fetch_group_list(Some(group), timeout)?;
    let owner = groups
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members())
        .find(|member| {
            member
                .assignment()
                .and_then(|bytes| assigned(bytes, topic))
                .is_some_and(|partitions| partitions.contains(&partition))
        })
        .map(|member| Owner {
            member_id: member.id().to_string(),
            client_id: member.client_id().to_string(),
            host: member.client_host().to_string(),
        });
    Ok(owner)
}

/// The partitions of `topic` in a member's assignment, as the consumer protocol encodes it
/// (`ConsumerProtocolAssignment`: a version, then each topic's name and partitions, then user
/// data); `None` when the bytes are not one.
fn assigned(bytes: &[u8], topic: &str) -> Option<Vec<i32>> {
    fn take<'b>(bytes: &mut &'b [u8], n: usize) -> Option<&'b [u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        *bytes = rest;
        Some(head)
    }
    fn int16(bytes: &mut &[u8]) -> Option<i16> {
        Some(i16::from_be_bytes(take(bytes, 2)?.try_into().ok()?))
    }
    fn int32(bytes: &mut &[u8]) -> Option<i32> {
        Some(i32::from_be_bytes(take(bytes, 4)?.try_into().ok()?))
    }
    let mut rest = bytes;
    let _version = int16(&mut rest)?;
    let topics = int32(&mut rest)?;
    let mut found = Vec::new();
    for _ in 0..topics.max(0) {
        let length = int16(&mut rest)?;
        let name = take(&mut rest, usize::try_from(length).ok()?)?;
        let count = int32(&mut rest)?;
        let mut partitions = Vec::new();
        for _ in 0..count.max(0) {
            partitions.push(int32(&mut rest)?);
        }
        if name == topic.as_bytes() {
            found.extend(partitions);
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An assignment as the consumer protocol writes it.
    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut bytes = 1i16.to_be_bytes().to_vec();
        bytes.extend((topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            bytes.extend((name.len() as i16).to_be_bytes());
            bytes.extend(name.as_bytes());
            bytes.extend((partitions.len() as i32).to_be_bytes());
            for partition in *partitions {
                bytes.extend(partition.to_be_bytes());
            }
        }
        bytes.extend((-1i32).to_be_bytes());
        bytes
    }

    #[test]
    fn a_members_assignment_names_its_partitions_of_each_topic() {
        let bytes = assignment(&[("cs.inbound.v1", &[0, 2, 5]), ("other", &[1])]);
        assert_eq!(assigned(&bytes, "cs.inbound.v1"), Some(vec![0, 2, 5]));
        assert_eq!(assigned(&bytes, "other"), Some(vec![1]));
        assert_eq!(assigned(&bytes, "absent"), Some(vec![]));
        assert_eq!(assigned(&assignment(&[]), "cs.inbound.v1"), Some(vec![]));
        for cut in 1..bytes.len() - 4 {
            assert_eq!(assigned(&bytes[..cut], "other"), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_member_sets_the_shared_settings_and_keeps_its_forced_ones() {
        let properties = BTreeMap::from([
            ("fetch.max.bytes".to_string(), "1000".to_string()),
            ("auto.offset.reset".to_string(), "latest".to_string()),
            ("enable.partition.eof".to_string(), "false".to_string()),
        ]);
        let member = Member {
            role: "processor",
            group_id: "cartstream-processor",
            state_dir: Path::new("/var/lib/cartstream"),
            topic: "cartstream.inbound.v1",
            properties: &properties,
            auto_commit: false,
        };
        let kafka = Config::default();
        let client = member.client_config(&kafka, &[], &[("enable.partition.eof", "true")]);
        for (key, value) in [
            ("client.id", "cartstream-processor"),
            ("group.id", "cartstream-processor"),
            ("session.timeout.ms", SESSION_TIMEOUT_MS),
            ("statistics.interval.ms", "5000"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "latest"),
            ("fetch.max.bytes", "1000"),
            ("bootstrap.servers", kafka.brokers.as_str()),
        ] {
            assert_eq!(client.get(key), Some(value), "{key}");
        }
        assert_eq!(
            client.get("group.instance.id"),
            Some(static_instance_id("processor", member.state_dir, member.topic).as_str())
        );
        let delivery = Member {
            role: "delivery",
            auto_commit: true,
            ..member
        };
        let client = delivery.client_config(&kafka, &[], &[]);
        assert_eq!(client.get("client.id"), Some("cartstream-delivery"));
        assert_eq!(client.get("enable.auto.commit"), Some("true"));
    }

    #[test]
    fn what_the_pass_through_may_not_set_is_what_a_member_overrides() {
        let kafka = Config::default();
        for key in FORCED {
            let properties = BTreeMap::from([(key.to_string(), "from-the-table".to_string())]);
            let member = Member {
                role: "delivery",
                group_id: "cartstream-delivery",
                state_dir: Path::new("/var/lib/cartstream"),
                topic: "cartstream.transitions.v1",
                properties: &properties,
                auto_commit: true,
            };
            let client = member.client_config(&kafka, &[], &[]);
            assert_ne!(client.get(key), Some("from-the-table"), "{key}");
            let mut problems = Problems::default();
            refuse_forced(
                "delivery.consumer",
                &properties,
                &[],
                "the delivery worker",
                &mut problems,
            );
            assert_eq!(problems.len(), 1, "{key}");
        }
    }
}
